//! Times the convolution kernels on the `cnn` benchmark's two layers at batch 256 (3×3 windows;
//! conv1 28×28×1 → 32, conv2 28×28×32 → 64 with stride 2, SAME padding): the forward pass, the
//! input and filter gradients, and for comparison the same products as one GEMM each over patches
//! made beforehand, so the cost of building patches and scattering them back shows.
//!
//! `cargo run --release -p ferroflow-cpu --example conv_micro [-- THREADS]` (default 2)
use ferroflow_cpu::conv::*;
use ferroflow_cpu::gemm::{gemm, MatRef};
use ferroflow_cpu::{Context, CpuConfig, Workers};
use std::time::Instant;

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(2);
    let workers = Workers::new(threads).unwrap();
    let config = CpuConfig::default();
    let shapes: [(&str, usize, usize, usize, usize, usize); 2] =
        [("conv1", 256, 28, 1, 32, 1), ("conv2", 256, 28, 32, 64, 2)];
    for (name, n, hw, c, o, s) in shapes {
        let out = hw / s;
        let pad_total = ((out - 1) * s + 3).saturating_sub(hw);
        let g = Window2d {
            batch: n,
            in_h: hw,
            in_w: hw,
            channels: c,
            k_h: 3,
            k_w: 3,
            stride_h: s,
            stride_w: s,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: pad_total / 2,
            pad_left: pad_total / 2,
            out_h: out,
            out_w: out,
        };
        let x: Vec<f32> = (0..n * hw * hw * c).map(|i| (i % 7) as f32).collect();
        let w: Vec<f32> = (0..9 * c * o).map(|i| (i % 5) as f32).collect();
        let dy: Vec<f32> = (0..n * out * out * o).map(|i| (i % 3) as f32).collect();
        workers.install(|| {
            let ctx = Context::new(&config, threads).with_workspaces(workers.workspaces());
            let mut y = Vec::new();
            let time = |f: &mut dyn FnMut()| -> f64 { f(); let t = Instant::now(); for _ in 0..10 { f(); } t.elapsed().as_secs_f64() / 10.0 * 1e3 };
            let fwd = time(&mut || conv2d(&ctx, &g, &x, &w, o, &mut y).unwrap());
            let bpi = time(&mut || conv2d_backprop_input(&ctx, &g, &dy, &w, o, &mut y).unwrap());
            let bpf = time(&mut || conv2d_backprop_filter(&ctx, &g, &x, &dy, o, &mut y).unwrap());
            // the whole product in one gemm, patches pre-made
            let rows = n * out * out; let k = 9 * c;
            let p: Vec<f32> = (0..rows * k).map(|i| (i % 11) as f32).collect();
            let mut c_ = vec![0f32; rows * o];
            let gm = time(&mut || gemm(&ctx, &mut c_, MatRef::row_major(&p, rows, k, false), MatRef::row_major(&w, k, o, false), false).unwrap());
            let mut dp = vec![0f32; rows * k];
            let gmi = time(&mut || gemm(&ctx, &mut dp, MatRef::row_major(&dy, rows, o, false), MatRef::row_major(&w, k, o, true), false).unwrap());
            let mut dw = vec![0f32; k * o];
            let gmf = time(&mut || gemm(&ctx, &mut dw, MatRef::row_major(&p, rows, k, true), MatRef::row_major(&dy, rows, o, false), false).unwrap());
            let gf = 2.0 * (rows * k * o) as f64 / 1e6;
            println!("{name}: fwd {fwd:.2} ms ({:.0} GF/s) bpi {bpi:.2} bpf {bpf:.2}; one gemm fwd {gm:.2} ({:.0} GF/s) in {gmi:.2} filt {gmf:.2}", gf / fwd, gf / gm);
        });
    }
}
