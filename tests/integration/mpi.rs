//! Data-parallel training over MPI (the `mpi` feature): this test binary starts itself under
//! `mpirun` as the ranks of a job (`child_rank`, one scenario per run), and checks what they wrote.
//!
//! - `book` (float32) and `deep_bn` (synchronized batch norm, float64) on 2 and 4 ranks for 20
//!   steps: every rank the same bits, and within 1e-5 of one process on the whole batch;
//! - the lecture's transfer learning (restore hidden[123] on rank 0, broadcast, freeze, train the
//!   rest): every rank holds the same weights after every step, and the frozen layers never move;
//! - a rank that dies, a rank that stops calling, and ranks whose calls differ: every rank ends
//!   with an error naming the rank and the call, well within the test's patience.

use super::distributed::{batches, worst, Weights};
use ferroflow::io::{Saver, VarList};
use ferroflow::mpi::{init, MpiOptions};
use ferroflow::nn::layers::{dense, Activation};
use ferroflow::nn::{broadcast_global_variables, losses, DistributedOptimizer, Optimizer};
use ferroflow::prelude::*;
use ferroflow::Reduction;
use ferroflow_tools::bench::Distribution;
use ferroflow_tools::distributed::{train, Rank};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `scenario` on `np` ranks under mpirun; returns whether the job succeeded and its output.
fn mpirun(np: usize, scenario: &str, out: &Path, extra: &[(&str, &str)]) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("mpirun");
    cmd.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-np",
        &np.to_string(),
    ])
    .args(["--mca", "btl", "self,vader"])
    .arg(exe)
    .args([
        "--ignored",
        "--exact",
        "mpi::child_rank",
        "--test-threads",
        "1",
        "--nocapture",
    ])
    .env("FF_MPI_SCENARIO", scenario)
    .env("FF_MPI_OUT", out)
    // Containers often forbid the cross-process reads of the single-copy mechanism.
    .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let output = cmd
        .output()
        .expect("mpirun (Debian: openmpi-bin) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ff-mpi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_weights(path: &Path, w: &Weights) {
    let text: String = w
        .iter()
        .map(|(name, v)| {
            let values: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
            format!("{name} {}\n", values.join(" "))
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

fn read_weights(path: &Path) -> Weights {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let name = parts.next().unwrap().to_string();
            (name, parts.map(|x| x.parse().unwrap()).collect())
        })
        .collect()
}

/// One rank of the job that `FF_MPI_SCENARIO` names (run by `mpirun`, through [`mpirun`]).
#[test]
#[ignore = "a rank of an MPI job: run by the mpi tests under mpirun"]
fn child_rank() {
    let (Ok(scenario), Ok(out)) = (
        std::env::var("FF_MPI_SCENARIO"),
        std::env::var("FF_MPI_OUT"),
    ) else {
        return;
    };
    let out = PathBuf::from(out);
    let mpi = init().unwrap();
    let timeout = std::env::var("FF_MPI_TIMEOUT_MS")
        .map(|ms| Duration::from_millis(ms.parse().unwrap()))
        .unwrap_or(Duration::from_secs(120));
    let comm = mpi.communicator(MpiOptions { timeout }).unwrap();
    let r = mpi.rank();
    let parts: Vec<&str> = scenario.split(':').collect();
    match parts[..] {
        ["train", model, dtype, steps] => {
            let dtype = if dtype == "f64" {
                DType::F64
            } else {
                DType::F32
            };
            let rank = Rank {
                comm,
                distribution: Distribution {
                    sync_batch_norm: true,
                    ..Distribution::default()
                },
            };
            let w = train(
                model,
                dtype,
                &batches(steps.parse().unwrap()),
                1,
                Some(&rank),
            )
            .unwrap();
            write_weights(&out.join(format!("rank{r}")), &w);
        }
        ["transfer", ckpt] => transfer_rank(&mpi, comm, Path::new(ckpt), &out),
        ["fail", how] => {
            let g = Graph::new();
            let n = if how == "mismatch" { 3 + r } else { 3 };
            let x = g
                .named("grads")
                .constant(Value::from_f32(&[n], vec![1.0; n]).unwrap())
                .unwrap();
            let y = g.all_reduce(x, Reduction::Sum).unwrap();
            let options = SessionOptions {
                communicator: Some(comm),
                ..SessionOptions::with_threads(1)
            };
            if r == 1 && how == "die" {
                // Killed, as by the OOM killer or a failing host: no chance to say anything.
                let _ = Command::new("kill")
                    .args(["-KILL", &std::process::id().to_string()])
                    .status();
                std::thread::sleep(Duration::from_secs(30));
            }
            if r == 1 && how == "stall" {
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
            let e = Session::with_options(&g, options)
                .run_one(y, &[])
                .unwrap_err();
            eprintln!("rank {r} failed as it should: {e}");
            std::process::exit(2);
        }
        _ => panic!("unknown scenario {scenario}"),
    }
}

/// The lecture's small MLP: hidden1..hidden4 (ELU, 50 units), outputs (10).
fn mlp(g: &Graph) -> (Tensor, Tensor, Tensor) {
    let x = g.placeholder(DType::F32, [None, Some(784)]).unwrap();
    let y = g.placeholder(DType::I64, [None]).unwrap();
    let mut h = x;
    for i in 1..=4 {
        h = dense(g, h, 50, Some(Activation::Elu), &format!("hidden{i}")).unwrap();
    }
    let logits = dense(g, h, 10, None, "outputs").unwrap();
    (
        x,
        y,
        losses::sparse_softmax_cross_entropy(g, y, logits).unwrap(),
    )
}

/// Rank 0 restores hidden[123] from `ckpt` and broadcasts; every rank trains hidden4 and the
/// outputs on its shard and writes its weights after every step.
fn transfer_rank(
    mpi: &ferroflow::mpi::Mpi,
    comm: std::sync::Arc<ferroflow::mpi::MpiCommunicator>,
    ckpt: &Path,
    out: &Path,
) {
    let g = Graph::new();
    g.set_random_seed(mpi.rank() as u64);
    let (x, y, loss) = mlp(&g);
    let reuse: Vec<Variable> = g
        .get_collection(keys::GLOBAL_VARIABLES, Some("hidden[123]"))
        .unwrap();
    let train_vars: Vec<Variable> = g
        .get_collection(keys::TRAINABLE_VARIABLES, Some("hidden4|outputs"))
        .unwrap();
    let train = DistributedOptimizer::new(Optimizer::gradient_descent(0.05))
        .minimize(&g, loss, Some(&train_vars), None)
        .unwrap();
    let broadcast = broadcast_global_variables(&g, 0).unwrap();
    let sess = Session::with_options(
        &g,
        SessionOptions {
            communicator: Some(comm),
            ..SessionOptions::with_threads(1)
        },
    );
    sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    if mpi.is_chief() {
        Saver::new(&g, VarList::List(reuse))
            .unwrap()
            .restore(&sess, &ckpt.to_string_lossy())
            .unwrap();
    }
    sess.run_targets(&[broadcast], &[]).unwrap();
    let all: Vec<Variable> = g.get_collection(keys::TRAINABLE_VARIABLES, None).unwrap();
    let (r, size) = (mpi.rank(), mpi.size());
    for (step, (xs, ys)) in batches(5).iter().enumerate() {
        let per = ys.len() / size;
        let feeds = [
            feed(
                x,
                Value::from_f32(&[per, 784], xs[r * per * 784..(r + 1) * per * 784].to_vec())
                    .unwrap(),
            ),
            feed(
                y,
                Value::from_i64(&[per], ys[r * per..(r + 1) * per].to_vec()).unwrap(),
            ),
        ];
        sess.run_targets(&[train], &feeds).unwrap();
        let w: Weights = all
            .iter()
            .map(|v| (v.op_name(&g), sess.variable_value(*v).unwrap().to_f64_vec()))
            .collect();
        write_weights(&out.join(format!("rank{r}-step{step}")), &w);
    }
}

#[test]
fn book_and_deep_bn_over_mpi_match_one_process() {
    // deep_bn in float64: in float32 its own rounding noise grows past 1e-5 (distributed.rs).
    for (model, dtype, precision) in [("book", DType::F32, "f32"), ("deep_bn", DType::F64, "f64")] {
        let steps = 20;
        let single = train(model, dtype, &batches(steps), 1, None).unwrap();
        for np in [2, 4] {
            let out = scratch(&format!("{model}-{np}"));
            let (ok, log) = mpirun(np, &format!("train:{model}:{precision}:{steps}"), &out, &[]);
            assert!(ok, "{model} on {np} ranks:\n{log}");
            let ranks: Vec<Weights> = (0..np)
                .map(|r| read_weights(&out.join(format!("rank{r}"))))
                .collect();
            for (r, w) in ranks.iter().enumerate() {
                assert!(
                    w == &ranks[0],
                    "{model}, {np} ranks: rank {r} differs from rank 0"
                );
            }
            let (err, name) = worst(&ranks[0], &single, |_| true);
            assert!(
                err <= 1e-5,
                "{model}, {np} ranks, {steps} steps: {name} off by {err:e}"
            );
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
}

#[test]
fn transfer_learning_over_mpi_keeps_every_rank_equal_after_every_step() {
    let out = scratch("transfer");
    // The pretrained model: one process, a few steps, every variable saved.
    let ckpt = out.join("pretrained.ckpt");
    let pretrained: Weights = {
        let g = Graph::new();
        g.set_random_seed(99);
        let (x, y, loss) = mlp(&g);
        let train = Optimizer::gradient_descent(0.05)
            .minimize(&g, loss, None, None)
            .unwrap();
        let sess = Session::new(&g);
        sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
            .unwrap();
        for (xs, ys) in batches(3) {
            let n = ys.len();
            let feeds = [
                feed(x, Value::from_f32(&[n, 784], xs).unwrap()),
                feed(y, Value::from_i64(&[n], ys).unwrap()),
            ];
            sess.run_targets(&[train], &feeds).unwrap();
        }
        Saver::new(&g, VarList::All)
            .unwrap()
            .save(&sess, &ckpt.to_string_lossy(), None)
            .unwrap();
        let vars: Vec<Variable> = g.get_collection(keys::TRAINABLE_VARIABLES, None).unwrap();
        vars.iter()
            .map(|v| (v.op_name(&g), sess.variable_value(*v).unwrap().to_f64_vec()))
            .collect()
    };
    let (ok, log) = mpirun(2, &format!("transfer:{}", ckpt.display()), &out, &[]);
    assert!(ok, "transfer learning on 2 ranks:\n{log}");
    let frozen = |n: &str| {
        ["hidden1/", "hidden2/", "hidden3/"]
            .iter()
            .any(|p| n.starts_with(p))
    };
    for step in 0..5 {
        let w0 = read_weights(&out.join(format!("rank0-step{step}")));
        let w1 = read_weights(&out.join(format!("rank1-step{step}")));
        assert!(w0 == w1, "step {step}: the ranks differ");
        assert_eq!(
            worst(&w0, &pretrained, frozen).0,
            0.0,
            "step {step}: a frozen layer moved"
        );
        assert!(
            worst(&w0, &pretrained, |n| !frozen(n)).0 > 0.0,
            "step {step}: nothing trained"
        );
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_dead_stalled_or_mismatched_rank_ends_the_job_with_an_error_naming_it() {
    let out = scratch("fail");
    let cases = [
        // Open MPI names the rank that was killed and ends the others.
        ("die", "exited on signal 9 (Killed)", "process rank 1"),
        (
            "stall",
            "timed out after 2s waiting for the other ranks",
            "on rank 0",
        ),
        (
            "mismatch",
            "rank 1: all-reduce (sum) 'grads:0' of 4 float32",
            "rank 0: all-reduce (sum) 'grads:0' of 3 float32",
        ),
    ];
    for (how, says, names) in cases {
        let started = Instant::now();
        let (ok, log) = mpirun(
            2,
            &format!("fail:{how}"),
            &out,
            &[("FF_MPI_TIMEOUT_MS", "2000")],
        );
        assert!(!ok, "{how}: the job succeeded:\n{log}");
        assert!(log.contains(says) && log.contains(names), "{how}:\n{log}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{how}: took {:?}",
            started.elapsed()
        );
    }
    std::fs::remove_dir_all(&out).unwrap();
}
