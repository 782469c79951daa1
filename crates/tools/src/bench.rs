//! `ferroflow bench`: the benchmark models of bench/README.md (`book`, `deep`, `deep_bn`, `cnn`)
//! built with the public API exactly as the TensorFlow reference script builds them, trained on a
//! fixed random batch; one JSON line per model and batch in the reference format.

use crate::{Result, ToolError};
use ferroflow::nn::health::{Monitor, MonitorOptions};
use ferroflow::nn::layers::{dense_with, Activation, DenseOptions};
use ferroflow::nn::{clip_by_global_norm, losses, DistributedOptimizer, Optimizer};
use ferroflow::prelude::*;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Instant;

/// A built benchmark model.
pub struct BenchModel {
    pub graph: Graph,
    pub x: Tensor,
    pub y: Tensor,
    pub train: Operation,
    pub loss: Tensor,
    /// Floating-point operations of one training step at batch 1 (matmuls only: 6·in·out per layer).
    pub flop_per_example: f64,
}

fn dense(
    g: &Graph,
    h: Tensor,
    units: usize,
    name: &str,
    act: Option<Activation>,
    bias: bool,
) -> Result<Tensor> {
    Ok(dense_with(
        g,
        h,
        units,
        DenseOptions {
            activation: act,
            use_bias: bias,
            kernel_initializer: Some(Initializer::variance_scaling(
                2.0,
                ferroflow::nn::FanMode::FanIn,
                ferroflow::nn::VsDistribution::TruncatedNormal,
            )),
            name: Some(name.into()),
            ..Default::default()
        },
    )?)
}

/// How a model trains as one rank of a data-parallel job (with a communicator in its session).
#[derive(Clone, Debug)]
pub struct Distribution {
    /// The gradients are averaged over the ranks in buffers of up to this many bytes.
    pub fusion_threshold: usize,
    /// Batch normalization with the statistics of the global batch (synchronized over the ranks:
    /// two more all-reduces per layer) rather than of each rank's shard.
    pub sync_batch_norm: bool,
    /// The gradients' all-reduces overlap the backward pass (`DistributedOptimizer::overlap`).
    pub overlap: bool,
}

impl Default for Distribution {
    fn default() -> Self {
        Distribution {
            fusion_threshold: ferroflow::nn::DEFAULT_FUSION_THRESHOLD,
            sync_batch_norm: false,
            overlap: true,
        }
    }
}

/// TF's `tf.nn.moments` + `tf.nn.batch_normalization` with the two moving-average updates in UPDATE_OPS,
/// exactly as the reference script writes it; with `sync`, the moments of the global batch.
fn batch_norm(
    g: &Graph,
    z: Tensor,
    name: &str,
    (momentum, eps): (f64, f64),
    sync: bool,
) -> Result<Tensor> {
    let n = g
        .shape(z)?
        .dims()
        .and_then(|d| d.get(1).copied().flatten())
        .unwrap_or(0);
    let (gamma, beta, mm, mv) = {
        let _vs = g.variable_scope(name)?;
        let v = |n2: &str, init: Initializer, trainable: bool| {
            g.get_variable_with(
                n2,
                &[n],
                g.dtype(z)?,
                VarOptions {
                    initializer: Some(init),
                    trainable,
                    collections: None,
                },
            )
        };
        (
            v("gamma", Initializer::Ones, true)?,
            v("beta", Initializer::Zeros, true)?,
            v("moving_mean", Initializer::Zeros, false)?,
            v("moving_variance", Initializer::Ones, false)?,
        )
    };
    let (mean, var) = if sync {
        g.global_moments(z)?
    } else {
        g.moments(z, &[0], false)?
    };
    let decay = g.scalar_like(z, 1.0 - momentum)?;
    let u1 = g.assign_sub(mm, g.mul(decay, g.sub(mm.value(), mean)?)?)?;
    let u2 = g.assign_sub(mv, g.mul(decay, g.sub(mv.value(), var)?)?)?;
    g.add_to_collection(keys::UPDATE_OPS, u1.op());
    g.add_to_collection(keys::UPDATE_OPS, u2.op());
    Ok(g.batch_normalization(z, mean, var, Some(beta.value()), Some(gamma.value()), eps)?)
}

/// The `cnn` model: the MNIST CNN of the demo (`demos::cnn::logits`: conv 32 3×3 ReLU SAME → conv 64
/// 3×3 stride 2 ReLU SAME → max pool 2 → flatten → dense 64 ReLU → dropout 0.5 → 10 logits) in
/// training mode, Adam(1e-3); kernels He-initialized as the dense models'. FLOPs count 6 per
/// multiply-add of every product, as the dense models'.
fn cnn(g: &Graph, x: Tensor, y: Tensor) -> Result<(Tensor, Operation, f64)> {
    let he = Initializer::variance_scaling(
        2.0,
        ferroflow::nn::FanMode::FanIn,
        ferroflow::nn::VsDistribution::TruncatedNormal,
    );
    let logits = crate::demos::cnn::logits(g, x, true, Some(he))?;
    let loss = g.reduce_mean(
        g.sparse_softmax_cross_entropy_with_logits(y, logits)?,
        None,
        false,
    )?;
    let train = Optimizer::adam(0.001).minimize(g, loss, None, None)?;
    let macs = 28 * 28 * 9 * 32 + 14 * 14 * 9 * 32 * 64 + 7 * 7 * 64 * 64 + 64 * 10;
    Ok((loss, train, 6.0 * macs as f64))
}

/// Builds a benchmark model by name.
pub fn build(model: &str) -> Result<BenchModel> {
    build_with(model, None, DType::F32)
}

/// Builds a benchmark model by name, as one rank of a data-parallel job with `distribution` (the
/// `cnn` model trains on one process only), in float32 as the reference scripts or in float64 (the
/// same computation with a rounding error small enough to compare runs that sum in other orders).
pub fn build_with(
    model: &str,
    distribution: Option<&Distribution>,
    dtype: DType,
) -> Result<BenchModel> {
    let g = Graph::new();
    g.set_random_seed(42);
    let x = g.named("X").placeholder(dtype, [None, Some(784)])?;
    let y = g.named("y").placeholder(DType::I64, [None])?;
    if model == "cnn" {
        if distribution.is_some() || dtype != DType::F32 {
            return Err(ToolError::Usage(
                "the cnn benchmark trains on one process only, in float32".into(),
            ));
        }
        let (loss, train, flop_per_example) = cnn(&g, x, y)?;
        return Ok(BenchModel {
            graph: g,
            x,
            y,
            train,
            loss,
            flop_per_example,
        });
    }
    let (layers, act, width) = match model {
        "book" => (5, Activation::Elu, 100),
        "deep" | "deep_bn" => (12, Activation::Relu, 300),
        other => {
            return Err(ToolError::Usage(format!(
                "unknown benchmark model '{other}' (book, deep, deep_bn, cnn)"
            )))
        }
    };
    let mut h = x;
    let mut flop = 0.0;
    let mut n_in = 784;
    for i in 1..=layers {
        let name = format!("hidden{i}");
        h = if model == "deep_bn" {
            let z = dense(&g, h, width, &name, None, false)?;
            let sync = distribution.is_some_and(|d| d.sync_batch_norm);
            g.unary_op(
                act,
                batch_norm(&g, z, &format!("bn{i}"), (0.9, 1e-3), sync)?,
            )?
        } else {
            dense(&g, h, width, &name, Some(act), true)?
        };
        flop += 6.0 * (n_in * width) as f64;
        n_in = width;
    }
    let logits = dense(&g, h, 10, "outputs", None, true)?;
    flop += 6.0 * (n_in * 10) as f64;
    let loss = g.reduce_mean(
        g.sparse_softmax_cross_entropy_with_logits(y, logits)?,
        None,
        false,
    )?;
    let _ = losses::accuracy;
    let distributed = |opt: Optimizer| {
        distribution.map(|d| {
            DistributedOptimizer::new(opt)
                .fusion_threshold(d.fusion_threshold)
                .overlap(d.overlap)
        })
    };
    let train = if model == "book" {
        let opt = Optimizer::adam(0.001);
        match distributed(opt.clone()) {
            Some(d) => d.minimize(&g, loss, None, None)?,
            None => opt.minimize(&g, loss, None, None)?,
        }
    } else {
        let opt = Optimizer::momentum(0.01, 0.9, false);
        let gv = match distributed(opt.clone()) {
            Some(d) => d.compute_gradients(&g, loss, None)?,
            None => opt.compute_gradients(&g, loss, None)?,
        };
        let grads: Vec<Option<Tensor>> = gv.iter().map(|p| p.0).collect();
        let (clipped, _) = clip_by_global_norm(&g, &grads, 5.0)?;
        let gv2: Vec<(Option<Tensor>, Variable)> =
            clipped.into_iter().zip(gv.iter().map(|p| p.1)).collect();
        let updates: Vec<Operation> = g.get_collection(keys::UPDATE_OPS, None)?;
        let _c = g.control_dependencies(&updates)?;
        opt.apply_gradients(&g, &gv2, None)?
    };
    Ok(BenchModel {
        graph: g,
        x,
        y,
        train,
        loss,
        flop_per_example: flop,
    })
}

/// One benchmark result.
#[derive(Clone, Debug)]
pub struct BenchResult {
    pub model: String,
    pub batch: usize,
    pub threads: usize,
    pub steps_per_s: f64,
    pub gflops: f64,
}

impl BenchResult {
    /// The reference JSON line (plus `gflops`).
    pub fn json(&self) -> String {
        format!(
            "{{\"engine\": \"ferroflow {}\", \"model\": \"{}\", \"batch\": {}, \"threads\": {}, \"steps_per_s\": {:.2}, \"samples_per_s\": {:.1}, \"gflops\": {:.1}}}",
            env!("CARGO_PKG_VERSION"),
            self.model,
            self.batch,
            self.threads,
            self.steps_per_s,
            self.steps_per_s * self.batch as f64,
            self.gflops
        )
    }
}

/// Trains `model` at `batch` for 20 warm-up steps and then `seconds` of counted steps, with the
/// default options and `threads` threads.
pub fn run(model: &str, batch: usize, threads: usize, seconds: f64) -> Result<BenchResult> {
    let options = SessionOptions::with_threads(threads);
    run_profiled(model, batch, &options, seconds).map(|(r, _)| r)
}

/// Applies a benchmark setting `key=value` to session options: `fuse_products=0|1`,
/// `adapt_threads=0|1`, or a field of the [`ferroflow::core::CpuConfig`] (`gemm_own=0`,
/// `pair_max_macs=4194304`, `simd=avx2`, ...).
pub fn apply_setting(options: &mut SessionOptions, setting: &str) -> Result<()> {
    let bad = |e: String| ToolError::Usage(format!("bench setting {setting:?}: {e}"));
    let flag = |v: &str| match v.trim() {
        "0" | "false" | "off" => Ok(false),
        "1" | "true" | "on" => Ok(true),
        _ => Err(bad("expected 0 or 1".into())),
    };
    match setting.split_once('=') {
        Some(("fuse_products", v)) => options.fuse_products = flag(v)?,
        Some(("adapt_threads", v)) => options.adapt_threads = flag(v)?,
        _ => return options.cpu.apply(setting).map_err(|e| bad(e.to_string())),
    }
    Ok(())
}

/// A model built, its session initialized, its batch made and 20 training steps run.
struct Warm {
    m: BenchModel,
    sess: Session,
    feeds: [(Tensor, Value); 2],
}

impl Warm {
    fn new(model: &str, batch: usize, options: &SessionOptions) -> Result<Warm> {
        let m = build(model)?;
        let sess = Session::with_options(&m.graph, options.clone());
        sess.run_targets(&[m.graph.global_variables_initializer()?], &[])?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let xs: Vec<f32> = (0..batch * 784).map(|_| rng.gen::<f32>()).collect();
        let ys: Vec<i64> = (0..batch).map(|_| rng.gen_range(0..10)).collect();
        let feeds = [
            feed(m.x, Value::from_f32(&[batch, 784], xs)?),
            feed(m.y, Value::from_i64(&[batch], ys)?),
        ];
        let warm = Warm { m, sess, feeds };
        for _ in 0..20 {
            warm.step()?;
        }
        Ok(warm)
    }

    fn step(&self) -> Result<()> {
        Ok(self.sess.run_targets(&[self.m.train], &self.feeds)?)
    }
}

/// [`run`] with explicit session options, and the session's per-op-type profile of the counted
/// steps (empty unless `options.profile`).
pub fn run_profiled(
    model: &str,
    batch: usize,
    options: &SessionOptions,
    seconds: f64,
) -> Result<(BenchResult, Vec<ferroflow::core::OpProfile>)> {
    let threads = options.threads;
    let w = Warm::new(model, batch, options)?;
    w.sess.reset_profile();
    let t0 = Instant::now();
    let mut n = 0usize;
    while t0.elapsed().as_secs_f64() < seconds || n == 0 {
        w.step()?;
        n += 1;
    }
    let sps = n as f64 / t0.elapsed().as_secs_f64();
    Ok((
        BenchResult {
            model: model.into(),
            batch,
            threads,
            steps_per_s: sps,
            gflops: sps * w.m.flop_per_example * batch as f64 / 1e9,
        },
        w.sess.profile(),
    ))
}

/// Steps per setting between switches in [`run_ab`]; the first after each switch is not counted.
pub const AB_RUN: usize = 4;

/// The two rates of an A/B run: steps/s with the switch as it was and with the setting.
#[derive(Clone, Debug)]
pub struct AbResult {
    pub base_steps_per_s: f64,
    pub base_steps: usize,
    pub setting_steps_per_s: f64,
    pub setting_steps: usize,
}

impl AbResult {
    /// Steps/s with the setting over steps/s without it.
    pub fn ratio(&self) -> f64 {
        self.setting_steps_per_s / self.base_steps_per_s
    }
}

/// Trains `model` at `batch` (after the same warm-up as [`run`]) for `seconds` in two sessions, one
/// with `base` and one with `setting`, switching between them every [`AB_RUN`] steps, and times each
/// one's steps apart (not the first after a switch, which may still pay for the other's state). Both
/// meet the same minutes of a drifting machine, so their ratio holds still where separate runs do not
/// (docs/performance.md). The two sessions share their worker threads.
pub fn run_ab(
    model: &str,
    batch: usize,
    base: &SessionOptions,
    setting: &SessionOptions,
    seconds: f64,
) -> Result<AbResult> {
    let workers = shared_workers(base)?;
    let with = |o: &SessionOptions| SessionOptions {
        workers: workers.clone(),
        ..o.clone()
    };
    let w = [
        Warm::new(model, batch, &with(base))?,
        Warm::new(model, batch, &with(setting))?,
    ];
    alternate([&mut || w[0].step(), &mut || w[1].step()], seconds)
}

/// Runs the two step functions in turns of [`AB_RUN`] for `seconds`, timing each apart (not the
/// first step after a switch).
fn alternate(step: [&mut dyn FnMut() -> Result<()>; 2], seconds: f64) -> Result<AbResult> {
    let (mut time, mut steps) = ([0f64; 2], [0usize; 2]);
    let t0 = Instant::now();
    let mut i = 0usize;
    loop {
        let which = (i / AB_RUN) % 2;
        if t0.elapsed().as_secs_f64() >= seconds && steps[1] > 0 {
            break;
        }
        let t = Instant::now();
        step[which]()?;
        if !i.is_multiple_of(AB_RUN) {
            time[which] += t.elapsed().as_secs_f64();
            steps[which] += 1;
        }
        i += 1;
    }
    Ok(AbResult {
        base_steps_per_s: steps[0] as f64 / time[0],
        base_steps: steps[0],
        setting_steps_per_s: steps[1] as f64 / time[1],
        setting_steps: steps[1],
    })
}

/// The cost of the training-health monitor: like [`run_ab`], a session that trains plainly against
/// one whose graph also holds a [`Monitor`] and which runs [`Monitor::train_step`] (the probes
/// fetched with the step, the kernels copied before and after it) every `every`-th step.
pub fn run_health_ab(
    model: &str,
    batch: usize,
    options: &SessionOptions,
    every: usize,
    seconds: f64,
) -> Result<AbResult> {
    let workers = shared_workers(options)?;
    let opts = SessionOptions {
        workers,
        ..options.clone()
    };
    let plain = Warm::new(model, batch, &opts)?;
    let watched = Warm::new(model, batch, &opts)?;
    let monitor = Monitor::new(&watched.m.graph, watched.m.loss, MonitorOptions::default())?;
    let mut n = 0usize;
    let mut monitored = || -> Result<()> {
        n += 1;
        if n.is_multiple_of(every.max(1)) {
            monitor.train_step(&watched.sess, watched.m.train, n as i64, &watched.feeds)?;
            Ok(())
        } else {
            watched.step()
        }
    };
    alternate([&mut || plain.step(), &mut monitored], seconds)
}

/// Worker threads for sessions made one after another on this thread (the first pool built on a
/// thread is the one it joins; see [`SessionOptions::workers`]): `options.workers` when set, else new
/// ones when `options.threads` is more than one.
pub fn shared_workers(
    options: &SessionOptions,
) -> Result<Option<Arc<ferroflow::core::cpu::Workers>>> {
    if options.workers.is_some() || options.threads < 2 {
        return Ok(options.workers.clone());
    }
    ferroflow::core::cpu::Workers::new(options.threads)
        .map(|w| Some(Arc::new(w)))
        .map_err(|e| ToolError::Core(e.into()))
}

/// Measures the single-precision matmul rate of this machine (2048×2048, the kernel the session uses).
pub fn matmul_peak_gflops(options: &SessionOptions) -> Result<f64> {
    let n = 1024;
    let g = Graph::new();
    let a = g.random_uniform(&[n, n], 0.0, 1.0, DType::F32, Some(1))?;
    let b = g.random_uniform(&[n, n], 0.0, 1.0, DType::F32, Some(2))?;
    let sess = Session::with_options(&g, options.clone());
    let (av, bv) = (sess.run_one(a, &[])?, sess.run_one(b, &[])?);
    let pa = g.placeholder(DType::F32, [Some(n), Some(n)])?;
    let pb = g.placeholder(DType::F32, [Some(n), Some(n)])?;
    let c = g.matmul(pa, pb)?;
    let feeds = [feed(pa, av), feed(pb, bv)];
    sess.run_one(c, &feeds)?;
    let t0 = Instant::now();
    let reps = 10;
    for _ in 0..reps {
        sess.run_one(c, &feeds)?;
    }
    Ok(2.0 * (n as f64).powi(3) * reps as f64 / t0.elapsed().as_secs_f64() / 1e9)
}

/// Per-node cost of `Session::run` on a chain of `nodes` scalar additions (plan cached, passes off so
/// nothing is folded away): microseconds per node.
pub fn dispatch_overhead_us(nodes: usize) -> Result<f64> {
    let g = Graph::new();
    let x = g.placeholder(DType::F32, Shape::scalar())?;
    let one = g.constant(1.0f32)?;
    let mut h = x;
    for _ in 0..nodes {
        h = g.add(h, one)?;
    }
    let sess = Session::with_options(
        &g,
        SessionOptions {
            optimize: false,
            threads: 1,
            ..SessionOptions::default()
        },
    );
    let feeds = [feed(x, 0.0f32)];
    sess.run_one(h, &feeds)?;
    let reps = 50;
    let t0 = Instant::now();
    for _ in 0..reps {
        sess.run_one(h, &feeds)?;
    }
    Ok(t0.elapsed().as_secs_f64() * 1e6 / (reps * nodes) as f64)
}
