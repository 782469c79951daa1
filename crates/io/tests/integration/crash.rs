//! Crash safety: a child process saving checkpoints in a loop is killed with SIGKILL at random
//! moments, 100 times; after every kill, `latest_checkpoint` must restore a complete checkpoint whose
//! variables all come from one save.

use ferroflow_core::{DType, Graph, Initializer, Session, Value, VarOptions, Variable};
use ferroflow_io::{latest_checkpoint, Saver, VarList};
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
    let (g, vars) = graph();
    let sess = Session::new(&g);
    let saver = Saver::new(&g, VarList::All).unwrap().max_to_keep(Some(3));
    let prefix = Path::new(&dir)
        .join("model.ckpt")
        .to_string_lossy()
        .into_owned();
    for step in start.. {
        for v in &vars {
            sess.set_variable_value(*v, Value::from_f32(&[N], vec![step as f32; N]).unwrap())
                .unwrap();
        }
        saver.save(&sess, &prefix, Some(step)).unwrap();
    }
}

#[test]
fn sigkill_during_saves_always_leaves_a_loadable_checkpoint() {
    let dir = std::env::temp_dir().join(format!("ff-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut last_step = -1i64;
    let mut restored = 0;
    for kill in 0..100 {
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
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..80)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let Some(latest) = latest_checkpoint(&dir).unwrap() else {
            continue;
        };
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
        let step: i64 = latest.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(
            values[0] as i64, step,
            "kill {kill}: checkpoint {latest} holds step {}",
            values[0]
        );
        assert!(
            step >= last_step,
            "kill {kill}: went back from {last_step} to {step}"
        );
        last_step = step;
        restored += 1;
    }
    assert!(
        restored >= 90,
        "only {restored} of 100 kills left a checkpoint to check"
    );
    // Each restore above removed the temporaries of the saves killed before it: what is left can
    // only be the last killed writer's, and the next restore removes that too.
    let temporaries = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".ferroflow-tmp-")
            })
            .count()
    };
    assert!(
        temporaries(&dir) <= 1,
        "{} temporaries left",
        temporaries(&dir)
    );
    if let Some(latest) = latest_checkpoint(&dir).unwrap() {
        let (g, _) = graph();
        Saver::new(&g, VarList::All)
            .unwrap()
            .restore(&Session::new(&g), &latest)
            .unwrap();
    }
    assert_eq!(temporaries(&dir), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
