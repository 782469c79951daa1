//! The `ferroflow` command-line tool: `inspect` checkpoints, list a meta-graph's ops (`graph`), and run
//! the benchmarks (`bench`).

use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage:
  ferroflow inspect CKPT_PREFIX [--scope REGEX]   list variables: name, dtype, shape, mean/std/min/max
                                                  (ferroflow or TensorFlow V2 checkpoints)
  ferroflow graph META [--dot [--hide-gradients]] list the ops of a meta-graph, or print it as Graphviz DOT
  ferroflow bench [--threads N] [--models book,deep,deep_bn] [--batches 32,256,2048] [--seconds S] [--peak] [--dispatch] [--profile]
                  [--set KEY=VALUE]... [--ab KEY=VALUE] [--no-huge-pages]
                                                  --set changes a setting (a CpuConfig field, or
                                                  fuse_products); --ab alternates sessions without and
                                                  with a setting every 4 steps and prints both rates";

fn arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.windows(2)
        .find(|w| w[0] == flag)
        .map(|w| w[1].as_str())
}

fn inspect(prefix: &str, scope: Option<&str>) -> Result<(), String> {
    let re = scope
        .map(ferroflow::ScopeRegex::new)
        .transpose()
        .map_err(|e| e.to_string())?;
    // Our format or TensorFlow's, whichever the prefix names.
    let mut ckpt = ferroflow::io::AnyCheckpoint::open(prefix).map_err(|e| e.to_string())?;
    let rows = ckpt.entries().map_err(|e| e.to_string())?;
    say(&format!(
        "{:<40} {:<8} {:<16} {:>12} {:>12} {:>12} {:>12}",
        "name", "dtype", "shape", "mean", "std", "min", "max"
    ))?;
    for (name, dtype, shape) in rows {
        if re.as_ref().is_some_and(|re| !re.matches(&name)) {
            continue;
        }
        let d = ckpt
            .read(&name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{name} vanished"))?
            .to_f64_vec();
        let n = d.len().max(1) as f64;
        let mean = d.iter().sum::<f64>() / n;
        let std = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        let min = d.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = d.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        say(&format!(
            "{name:<40} {:<8} {:<16} {mean:>12.6} {std:>12.6} {min:>12.6} {max:>12.6}",
            dtype.to_string(),
            format!("{shape:?}")
        ))?;
    }
    Ok(())
}

fn graph(meta: &str, dot: bool, hide_gradients: bool) -> Result<(), String> {
    let (g, _) = ferroflow::io::import_meta_graph(Path::new(meta)).map_err(|e| e.to_string())?;
    if dot {
        return say(g.to_dot(hide_gradients).trim_end());
    }
    for op in g.operations() {
        let inputs: Vec<String> = g
            .inputs(op)
            .map_err(|e| e.to_string())?
            .iter()
            .map(|t| g.tensor_name(*t))
            .collect();
        let shape = g
            .shape(ferroflow::Tensor::from_index(op.index()))
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "-".into());
        println!(
            "{:<48} {:<22} {:<14} {}",
            g.op_name(op),
            g.op_type(op),
            shape,
            inputs.join(", ")
        );
    }
    Ok(())
}

/// Prints a line; a closed pipe (`| head`) is an error, not a panic.
fn say(line: &str) -> Result<(), String> {
    use std::io::Write;
    writeln!(std::io::stdout(), "{line}").map_err(|e| format!("cannot write to stdout: {e}"))
}

fn bench(args: &[String]) -> Result<(), String> {
    let threads: usize = arg(args, "--threads")
        .unwrap_or("2")
        .parse()
        .map_err(|_| "--threads takes a number")?;
    let models = arg(args, "--models").unwrap_or("book,deep,deep_bn");
    let batches = arg(args, "--batches").unwrap_or("32,256,2048");
    let seconds: f64 = arg(args, "--seconds")
        .unwrap_or("3")
        .parse()
        .map_err(|_| "--seconds takes a number")?;
    if args.iter().any(|a| a == "--dispatch") {
        let us = ferroflow_tools::bench::dispatch_overhead_us(5000).map_err(|e| e.to_string())?;
        say(&format!(
            "# dispatch: {us:.3} us per node (chain of 5000 scalar adds)"
        ))?;
    }
    let mut options = ferroflow::SessionOptions::with_threads(threads);
    for (flag, value) in args.iter().zip(args.iter().skip(1)) {
        if flag == "--set" {
            ferroflow_tools::bench::apply_setting(&mut options, value)
                .map_err(|e| e.to_string())?;
        }
    }
    if args.iter().any(|a| a == "--no-huge-pages") {
        ALLOC.set_advise(false);
    }
    // One pool of worker threads for every session of the run.
    options.workers =
        ferroflow_tools::bench::shared_workers(&options).map_err(|e| e.to_string())?;
    if args.iter().any(|a| a == "--peak") {
        let p = ferroflow_tools::bench::matmul_peak_gflops(&options).map_err(|e| e.to_string())?;
        say(&format!(
            "# matmul peak (1024x1024 f32, {threads} threads): {p:.1} GFLOP/s"
        ))?;
    }
    let ab = match arg(args, "--ab") {
        Some(setting) => {
            let mut with = options.clone();
            ferroflow_tools::bench::apply_setting(&mut with, setting).map_err(|e| e.to_string())?;
            Some(with)
        }
        None => None,
    };
    for model in models.split(',') {
        for b in batches.split(',') {
            let batch: usize = b.parse().map_err(|_| format!("bad batch size {b}"))?;
            if let Some(setting) = &ab {
                let r = ferroflow_tools::bench::run_ab(model, batch, &options, setting, seconds)
                    .map_err(|e| e.to_string())?;
                say(&format!(
                    "# A/B {model}/{batch} {}: {:.2} steps/s ({} steps) as it was, {:.2} ({} steps) with the setting: ratio {:.3}",
                    arg(args, "--ab").unwrap_or_default(),
                    r.base_steps_per_s,
                    r.base_steps,
                    r.setting_steps_per_s,
                    r.setting_steps,
                    r.ratio()
                ))?;
                continue;
            }
            let profiled = ferroflow::SessionOptions {
                profile: args.iter().any(|a| a == "--profile"),
                ..options.clone()
            };
            let (r, ops) = ferroflow_tools::bench::run_profiled(model, batch, &profiled, seconds)
                .map_err(|e| e.to_string())?;
            say(&r.json())?;
            let total: f64 = ops.iter().map(|o| o.seconds).sum();
            for o in ops.iter().take(20) {
                say(&format!(
                    "#   {:<36} {:>7} calls {:>7} in place {:>9.3} s {:>5.1}%",
                    if o.gradient {
                        format!("{} (gradient)", o.op_type)
                    } else {
                        o.op_type.to_string()
                    },
                    o.calls,
                    o.in_place,
                    o.seconds,
                    100.0 * o.seconds / total.max(1e-12)
                ))?;
            }
        }
    }
    Ok(())
}

/// Large buffers on transparent huge pages (`bench --no-huge-pages` turns that off).
#[global_allocator]
static ALLOC: ferroflow::cpu::alloc::HugePageAlloc = ferroflow::cpu::alloc::HugePageAlloc::new();

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("inspect") if args.len() >= 2 => inspect(&args[1], arg(&args, "--scope")),
        Some("graph") if args.len() >= 2 => graph(
            &args[1],
            args.iter().any(|a| a == "--dot"),
            args.iter().any(|a| a == "--hide-gradients"),
        ),
        Some("bench") => bench(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferroflow: {e}");
            ExitCode::FAILURE
        }
    }
}
