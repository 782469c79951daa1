//! Crash safety: a child process saving checkpoints in a loop is killed with SIGKILL at random
//! moments, 100 times; after every kill (the first waits for a first save), `latest_checkpoint` must restore a complete checkpoint whose
//! variables all come from one save, and never an older one than before. Once in ferroflow's format
//! with a step in every prefix, once in TensorFlow's format rewriting one fixed prefix (where the
//! index and data file must switch into place as a pair).

use ferroflow_core::{DType, Graph, Initializer, Session, Value, VarOptions, Variable};
use ferroflow_io::{latest_checkpoint, SaveFormat, Saver, VarList};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::Duration;

const N: usize = 20_000;

fn graph() -> (Graph, Vec<Variable>) {
    let g = Graph::new();
    let vars = (0..3)
        .map(|i| {
            g.get_variable_with(
                &format!("v{i}"),
                &[N],
                DType::F32,
                VarOptions::init(Initializer::Zeros),
            )
            .unwrap()
        })
        .collect();
    (g, vars)
}

/// Run by the parent as a child process (`FF_CRASH_DIR` set): saves step after step until killed.
#[test]
#[ignore = "helper process for sigkill_during_saves_always_leaves_a_loadable_checkpoint"]
fn child_save_loop() {
    let Ok(dir) = std::env::var("FF_CRASH_DIR") else {
        return;
    };
    let start: i64 = std::env::var("FF_CRASH_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let tf = std::env::var("FF_CRASH_FORMAT").is_ok_and(|f| f == "tf");
    let (g, vars) = graph();
    let sess = Session::new(&g);
    let saver = Saver::new(&g, VarList::All).unwrap().max_to_keep(Some(3));
    let saver = if tf {
        saver.format(SaveFormat::TensorFlow)
    } else {
        saver
    };
    let prefix = Path::new(&dir)
        .join("model.ckpt")
        .to_string_lossy()
        .into_owned();
    if let Ok(ready) = std::env::var("FF_CRASH_READY") {
        std::fs::write(ready, b"").unwrap();
    }
    for step in start.. {
        for v in &vars {
            sess.set_variable_value(*v, Value::from_f32(&[N], vec![step as f32; N]).unwrap())
                .unwrap();
        }
        saver.save(&sess, &prefix, (!tf).then_some(step)).unwrap();
    }
}

#[test]
fn sigkill_during_saves_always_leaves_a_loadable_checkpoint() {
    kill_saves(false);
}

#[test]
fn sigkill_during_tf_saves_to_one_prefix_always_leaves_one_whole_pair() {
    kill_saves(true);
}

fn kill_saves(tf: bool) {
    let dir = std::env::temp_dir().join(format!("ff-crash-{tf}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut last_step = -1i64;
    // The child marks itself ready once it has built its graph, and the kill comes a random while
    // after that, so a loaded machine's slow process start-up does not eat the window. The first
    // kill waits for a first checkpoint; from then on one must exist after every kill.
    let ready_dir =
        std::env::temp_dir().join(format!("ff-crash-ready-{tf}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ready_dir);
    std::fs::create_dir_all(&ready_dir).unwrap();
    for kill in 0..100 {
        let ready = ready_dir.join(kill.to_string());
        let mut child = std::process::Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash::child_save_loop",
                "--test-threads",
                "1",
            ])
            .env("FF_CRASH_DIR", &dir)
            .env("FF_CRASH_START", (last_step + 1).to_string())
            .env("FF_CRASH_FORMAT", if tf { "tf" } else { "ferroflow" })
            .env("FF_CRASH_READY", &ready)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let patience = std::time::Instant::now();
        while !ready.exists() || (kill == 0 && latest_checkpoint(&dir).unwrap().is_none()) {
            assert!(
                patience.elapsed() < Duration::from_secs(120),
                "kill {kill}: the child saved nothing in 120 s"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "kill {kill}: the child exited"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..40)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let latest = latest_checkpoint(&dir)
            .unwrap()
            .unwrap_or_else(|| panic!("kill {kill}: no checkpoint left"));
        let (g, vars) = graph();
        let sess = Session::new(&g);
        Saver::new(&g, VarList::All)
            .unwrap()
            .restore(&sess, &latest)
            .unwrap_or_else(|e| panic!("kill {kill}: {latest}: {e}"));
        let values: Vec<f64> = vars
            .iter()
            .map(|v| sess.variable_value(*v).unwrap().to_f64_vec()[N - 1])
            .collect();
        assert!(
            values.iter().all(|x| *x == values[0]),
            "kill {kill}: variables from different saves: {values:?}"
        );
        let step = values[0] as i64;
        if !tf {
            let named: i64 = latest.rsplit('-').next().unwrap().parse().unwrap();
            assert_eq!(
                step, named,
                "kill {kill}: checkpoint {latest} holds step {step}"
            );
        }
        assert!(
            step >= last_step,
            "kill {kill}: went back from {last_step} to {step}"
        );
        last_step = step;
    }
    std::fs::remove_dir_all(&ready_dir).unwrap();
    // Each restore above cleared up after the saves killed before it: what is left can only be
    // the last killed writer's (its temporaries, and in TF's format perhaps its switch record),
    // and the next restore removes that too.
    let leftovers = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".ferroflow-"))
            .collect()
    };
    let writers: std::collections::BTreeSet<String> = leftovers(&dir)
        .iter()
        .filter_map(|n| {
            n.rsplit_once(".ferroflow-tmp-")
                .map(|(_, pid)| pid.to_string())
        })
        .collect();
    assert!(writers.len() <= 1, "left: {:?}", leftovers(&dir));
    if let Some(latest) = latest_checkpoint(&dir).unwrap() {
        let (g, _) = graph();
        Saver::new(&g, VarList::All)
            .unwrap()
            .restore(&Session::new(&g), &latest)
            .unwrap();
    }
    assert_eq!(leftovers(&dir), Vec::<String>::new());
    std::fs::remove_dir_all(&dir).unwrap();
}
