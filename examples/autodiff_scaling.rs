//! Benchmark: deriving the gradients of a deep MLP and compiling its training plan, for 250 to 1,000
//! layers, to show that gradient derivation is linear in graph size.
//! Run: `cargo run --release --example autodiff_scaling`

use ferroflow::prelude::*;
use std::time::Instant;

/// How long deriving the gradients and planning takes for 250 to 1,000 layers.
#[derive(clap::Parser)]
#[command(version)]
struct Args {}

fn main() -> Result<()> {
    let Args {} = clap::Parser::parse();
    println!(
        "{:>7} {:>8} {:>14} {:>14}",
        "layers", "nodes", "gradients", "compile plan"
    );
    for layers in [250, 500, 1000] {
        let g = Graph::new();
        let x = g.placeholder(DType::F32, [None, Some(8)])?;
        let mut h = x;
        let mut vars = Vec::new();
        for i in 0..layers {
            let _vs = g.variable_scope(&format!("layer{i}"))?;
            let w = g.get_variable("kernel", &[8, 8], DType::F32)?;
            let b = g.get_variable("bias", &[8], DType::F32)?;
            h = g.relu(g.add(g.matmul(h, w)?, b)?)?;
            vars.push(w.value());
            vars.push(b.value());
        }
        let loss = g.reduce_mean(h, None, false)?;
        let t0 = Instant::now();
        let grads = g.gradients(&[loss], &vars)?;
        let t_grad = t0.elapsed();
        let fetches: Vec<Tensor> = grads.into_iter().flatten().collect();
        let sess = Session::new(&g);
        sess.run_targets(&[g.global_variables_initializer()?], &[])?;
        let t1 = Instant::now();
        // The first run compiles the plan (pruning, ordering, CSE, folding, liveness) and runs it once.
        sess.run(
            &fetches,
            &[feed(x, Value::from_f32(&[1, 8], vec![0.5; 8])?)],
            &[],
        )?;
        let t_plan = t1.elapsed();
        println!(
            "{:>7} {:>8} {:>13.1}ms {:>13.1}ms",
            layers,
            g.len(),
            t_grad.as_secs_f64() * 1e3,
            t_plan.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
