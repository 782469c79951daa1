//! The `ferroflow` command-line tool: `inspect` checkpoints, list a meta-graph's ops (`graph`), report
//! a saved model's training health (`health`), and run the benchmarks (`bench`).

use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Checkpoints, meta-graphs and benchmarks of ferroflow, a TensorFlow-1-style graph framework.
#[derive(Parser)]
#[command(name = "ferroflow", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List a checkpoint's variables: name, dtype, shape, mean, std, min and max (ferroflow's
    /// format or a TensorFlow V2 checkpoint).
    Inspect {
        /// The checkpoint's prefix, e.g. `runs/model.ckpt-3` (not one of its files).
        prefix: String,
        /// Only the variables whose names match this regex from their start (TF's scope rule).
        #[arg(long, value_name = "REGEX")]
        scope: Option<String>,
    },
    /// List the ops of a meta-graph (name, op type, shape, inputs), or print it as Graphviz DOT.
    Graph {
        /// The meta-graph file (`PREFIX.meta`).
        meta: PathBuf,
        /// Print Graphviz DOT, with name scopes as clusters.
        #[arg(long)]
        dot: bool,
        /// With --dot: leave out the nodes that `gradients` built.
        #[arg(long, requires = "dot")]
        hide_gradients: bool,
    },
    /// Report a saved classifier's training health on one batch: per layer the gradient and weight
    /// norms, the activations' mean, std, saturated and dead fractions, and the findings with the
    /// lecture's remedies.
    Health {
        /// The checkpoint's prefix, e.g. `target/transfer_learning/plain.ckpt` (with `PREFIX.meta`).
        prefix: String,
        /// Directory with the four MNIST-format IDX files; default: the bundled MNIST.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Test images in the batch.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
        batch: u32,
    },
    /// Train the benchmark models and print one JSON line per model and batch (steps per second).
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Threads one kernel may use.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: u32,
    /// Models to train, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "book,deep,deep_bn",
          value_parser = ["book", "deep", "deep_bn", "cnn"])]
    models: Vec<String>,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32,256,2048",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batches: Vec<u32>,
    /// Seconds of counted steps per model and batch (after 20 warm-up steps).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Also measure the matrix-multiply rate of this machine (1024×1024).
    #[arg(long)]
    peak: bool,
    /// Also measure the per-node cost of a run (a chain of 5000 scalar adds).
    #[arg(long)]
    dispatch: bool,
    /// After each line, the session's time per op type.
    #[arg(long)]
    profile: bool,
    /// Change a setting for the whole run: a `CpuConfig` field (`gemm_own=0`, `simd=avx2`, ...),
    /// `fuse_products=0` or `adapt_threads=0`. May be given several times.
    #[arg(long, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Train two sessions, without and with this setting, in turns of 4 steps, and print both rates
    /// and their ratio instead of the reference lines.
    #[arg(long, value_name = "KEY=VALUE", conflicts_with = "health_every")]
    ab: Option<String>,
    /// Train two sessions in turns of 4 steps, one plain and one that runs the training-health
    /// monitor every N-th step, and print both rates and their ratio.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    health_every: Option<u32>,
    /// Do not mark large buffers for transparent huge pages.
    #[arg(long)]
    no_huge_pages: bool,
    /// Run as one rank of an MPI job (start with `mpirun -np N ferroflow bench --mpi`): each batch
    /// is the global batch, split over the ranks; rank 0 prints each rank's steps/s and the share
    /// of its step spent in collectives. Needs a build with the `mpi` feature.
    #[arg(long, conflicts_with_all = ["ab", "health_every", "profile"])]
    mpi: bool,
    /// With --mpi: synchronize batch normalization's statistics over the ranks.
    #[arg(long, requires = "mpi")]
    sync_batch_norm: bool,
    /// With --mpi: the most bytes of gradients fused into one all-reduce.
    #[arg(long, requires = "mpi", default_value_t = ferroflow::nn::DEFAULT_FUSION_THRESHOLD)]
    fusion_threshold: usize,
    /// With --mpi: wait for each all-reduce where it starts instead of overlapping it with the
    /// rest of the backward pass.
    #[arg(long, requires = "mpi")]
    no_overlap: bool,
}

/// Large buffers on transparent huge pages (`bench --no-huge-pages` turns that off).
#[global_allocator]
static ALLOC: ferroflow::cpu::alloc::HugePageAlloc = ferroflow::cpu::alloc::HugePageAlloc::new();

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect { prefix, scope } => inspect(&prefix, scope.as_deref()),
        Command::Graph {
            meta,
            dot,
            hide_gradients,
        } => graph(&meta, dot, hide_gradients),
        Command::Health {
            prefix,
            data,
            batch,
        } => health(&prefix, data, batch as usize),
        Command::Bench(args) => bench(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`| head`) is not an error of ours.
        Err(Failure::ClosedPipe) => ExitCode::SUCCESS,
        Err(Failure::Message(e)) => {
            eprintln!("ferroflow: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why a command stopped.
enum Failure {
    /// Standard output was closed by its reader.
    ClosedPipe,
    Message(String),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Message(e.to_string())
    }
}

/// Prints a line; a closed pipe ends the command quietly instead of panicking.
fn say(line: &str) -> Result<(), Failure> {
    use std::io::Write;
    match writeln!(std::io::stdout(), "{line}") {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::ClosedPipe),
        Err(e) => Err(Failure::Message(format!("cannot write to stdout: {e}"))),
    }
}

/// Why `prefix` names no checkpoint: a file of one given instead of its prefix, or nothing there.
fn not_a_prefix(prefix: &str) -> Option<String> {
    let suffixes = [".index", ".data-00000-of-00001", ".ffckpt", ".meta"];
    if let Some(stem) = suffixes.iter().find_map(|s| prefix.strip_suffix(s)) {
        if Path::new(prefix).is_file() {
            return Some(format!(
                "{prefix} is one of a checkpoint's files: pass the prefix, e.g. {stem}"
            ));
        }
    }
    let data_file = ferroflow::io::checkpoint::data_path(prefix);
    let tf_index = format!("{prefix}.index");
    if !data_file.exists() && !Path::new(&tf_index).exists() {
        return Some(format!(
            "no checkpoint at {prefix}: neither {} nor {tf_index} exists",
            data_file.display()
        ));
    }
    None
}

fn inspect(prefix: &str, scope: Option<&str>) -> Result<(), Failure> {
    let re = scope.map(ferroflow::ScopeRegex::new).transpose()?;
    if let Some(why) = not_a_prefix(prefix) {
        return Err(Failure::Message(why));
    }
    // Our format or TensorFlow's, whichever the prefix names.
    let mut ckpt = ferroflow::io::AnyCheckpoint::open(prefix)?;
    let rows = ckpt.entries()?;
    // A TF2 object-based checkpoint: the object paths of each key, from its object graph.
    let objects = match &ckpt {
        ferroflow::io::AnyCheckpoint::TensorFlow(r, _) => {
            ferroflow::io::tf_checkpoint::object_graph::ObjectGraph::read(r)?
                .map(|graph| graph.paths())
        }
        ferroflow::io::AnyCheckpoint::Ferroflow(..) => None,
    };
    say(&format!(
        "{:<40} {:<8} {:<16} {:>12} {:>12} {:>12} {:>12}",
        "name", "dtype", "shape", "mean", "std", "min", "max"
    ))?;
    for (name, dtype, shape) in rows {
        if re.as_ref().is_some_and(|re| !re.matches(&name)) {
            continue;
        }
        let d = ckpt
            .read(&name)?
            .ok_or_else(|| Failure::Message(format!("{name} vanished")))?
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
        if let Some(paths) = objects.as_ref().and_then(|o| o.get(&name)) {
            say(&format!("    object: {}", paths.join(", ")))?;
        }
    }
    for (name, why) in ckpt.unreadable() {
        if re.as_ref().is_none_or(|re| re.matches(&name)) {
            say(&format!("{name:<40} not read: {why}"))?;
        }
    }
    Ok(())
}

fn health(prefix: &str, data: Option<PathBuf>, batch: usize) -> Result<(), Failure> {
    if let Some(why) = not_a_prefix(prefix) {
        return Err(Failure::Message(why));
    }
    let dir = data.unwrap_or_else(ferroflow::data::bundled_mnist_dir);
    let r = ferroflow_tools::health::report(prefix, &dir, batch)?;
    say(&format!(
        "{prefix}: {} test images of {} classes from {}\n",
        r.batch,
        r.classes,
        dir.display()
    ))?;
    say(r.snapshot.table().trim_end())?;
    say("")?;
    if r.findings.is_empty() {
        say("findings: none")?;
    }
    for f in &r.findings {
        say(&format!("finding: {f}"))?;
    }
    Ok(())
}

fn graph(meta: &Path, dot: bool, hide_gradients: bool) -> Result<(), Failure> {
    if !meta.is_file() {
        return Err(Failure::Message(format!(
            "no meta-graph at {}: the file does not exist",
            meta.display()
        )));
    }
    let (g, _) = ferroflow::io::import_meta_graph(meta)?;
    if dot {
        return say(g.to_dot(hide_gradients).trim_end());
    }
    for op in g.operations() {
        let inputs: Vec<String> = g.inputs(op)?.iter().map(|t| g.tensor_name(*t)).collect();
        let shape = g
            .shape(ferroflow::Tensor::from_index(op.index()))
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "-".into());
        say(&format!(
            "{:<48} {:<22} {:<14} {}",
            g.op_name(op),
            g.op_type(op),
            shape,
            inputs.join(", ")
        ))?;
    }
    Ok(())
}

/// One line of an alternating run: both rates, their step counts and the ratio.
fn ab_line(what: &str, r: &ferroflow_tools::bench::AbResult, base: &str, other: &str) -> String {
    format!(
        "# {what}: {:.2} steps/s ({} steps) {base}, {:.2} ({} steps) {other}: ratio {:.3}",
        r.base_steps_per_s,
        r.base_steps,
        r.setting_steps_per_s,
        r.setting_steps,
        r.ratio()
    )
}

fn bench(args: &BenchArgs) -> Result<(), Failure> {
    use ferroflow_tools::bench;
    let threads = args.threads as usize;
    if args.seconds.is_nan() || args.seconds < 0.0 {
        return Err(Failure::Message(format!(
            "--seconds must be a duration, got {}",
            args.seconds
        )));
    }
    if args.dispatch {
        let us = bench::dispatch_overhead_us(5000)?;
        say(&format!(
            "# dispatch: {us:.3} us per node (chain of 5000 scalar adds)"
        ))?;
    }
    if args.mpi {
        return bench_mpi(args);
    }
    let mut options = ferroflow::SessionOptions::with_threads(threads);
    for setting in &args.set {
        bench::apply_setting(&mut options, setting)?;
    }
    if args.no_huge_pages {
        ALLOC.set_advise(false);
    }
    // One pool of worker threads for every session of the run.
    options.workers = bench::shared_workers(&options)?;
    if args.peak {
        let p = bench::matmul_peak_gflops(&options)?;
        say(&format!(
            "# matmul peak (1024x1024 f32, {threads} threads): {p:.1} GFLOP/s"
        ))?;
    }
    let ab = match &args.ab {
        Some(setting) => {
            let mut with = options.clone();
            bench::apply_setting(&mut with, setting)?;
            Some((setting, with))
        }
        None => None,
    };
    for model in &args.models {
        for &batch in &args.batches {
            let batch = batch as usize;
            if let Some(every) = args.health_every {
                let r = bench::run_health_ab(model, batch, &options, every as usize, args.seconds)?;
                let what = format!("health {model}/{batch} every {every} steps");
                say(&ab_line(&what, &r, "plain", "monitored"))?;
                continue;
            }
            if let Some((setting, with)) = &ab {
                let r = bench::run_ab(model, batch, &options, with, args.seconds)?;
                let what = format!("A/B {model}/{batch} {setting}");
                say(&ab_line(&what, &r, "as it was", "with the setting"))?;
                continue;
            }
            let profiled = ferroflow::SessionOptions {
                profile: args.profile,
                ..options.clone()
            };
            let (r, ops) = bench::run_profiled(model, batch, &profiled, args.seconds)?;
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

/// `bench --mpi`: this process is one rank of the job.
#[cfg(feature = "mpi")]
fn bench_mpi(args: &BenchArgs) -> Result<(), Failure> {
    use ferroflow::mpi::{init, MpiOptions};
    use ferroflow_tools::bench::Distribution;
    use ferroflow_tools::distributed::{run_ranks, Rank};
    let mpi = init().map_err(|e| Failure::Message(format!("cannot start MPI: {e}")))?;
    let comm = mpi.communicator(MpiOptions::default())?;
    let rank = Rank {
        comm: comm.clone(),
        distribution: Distribution {
            sync_batch_norm: args.sync_batch_norm,
            fusion_threshold: args.fusion_threshold,
            overlap: !args.no_overlap,
        },
    };
    for model in &args.models {
        for &batch in &args.batches {
            let speeds = run_ranks(
                model,
                batch as usize,
                args.threads as usize,
                args.seconds,
                &rank,
                &|| comm.time_in_collectives().0,
            )?;
            if mpi.is_chief() {
                let each = |f: &dyn Fn(&ferroflow_tools::distributed::RankSpeed) -> f64| {
                    speeds
                        .iter()
                        .map(|s| format!("{:.3}", f(s)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let slowest = speeds
                    .iter()
                    .map(|s| s.steps_per_s)
                    .fold(f64::INFINITY, f64::min);
                say(&format!(
                    "{{\"engine\": \"ferroflow {} mpi\", \"model\": \"{model}\", \"batch\": {batch}, \"ranks\": {}, \"threads\": {}, \"steps_per_s\": {slowest:.2}, \"rank_steps_per_s\": [{}], \"communication_share\": [{}]}}",
                    env!("CARGO_PKG_VERSION"),
                    mpi.size(),
                    args.threads,
                    each(&|s| s.steps_per_s),
                    each(&|s| s.communication),
                ))?;
            }
        }
    }
    Ok(())
}

/// `bench --mpi` in a build without MPI.
#[cfg(not(feature = "mpi"))]
fn bench_mpi(_args: &BenchArgs) -> Result<(), Failure> {
    Err(Failure::Message(
        "this ferroflow was built without MPI: build it with `--features mpi` (Open MPI needed)"
            .into(),
    ))
}
