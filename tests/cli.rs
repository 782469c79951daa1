//! The `ferroflow` binary: `inspect` a checkpoint (with a scope regex), list a meta-graph's ops, and
//! `bench --seconds 0.2` prints valid reference-format lines.

use ferroflow::io::{Saver, VarList};
use ferroflow::prelude::*;
use std::process::Command;

fn ferroflow(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferroflow"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspect_and_graph() {
    let dir = std::env::temp_dir().join(format!("ff-cli-{}", std::process::id()));
    let g = Graph::new();
    for l in ["hidden1", "hidden2", "outputs"] {
        let _vs = g.variable_scope(l).unwrap();
        g.get_variable_with(
            "kernel",
            &[2, 2],
            DType::F32,
            VarOptions::init(Initializer::Constant(0.5)),
        )
        .unwrap();
    }
    let s = Session::new(&g);
    s.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    let prefix = Saver::new(&g, VarList::All)
        .unwrap()
        .save(&s, &dir.join("m").to_string_lossy(), Some(3))
        .unwrap();
    let (ok, out, err) = ferroflow(&["inspect", &prefix, "--scope", "hidden[12]"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("hidden1/kernel")
            && out.contains("hidden2/kernel")
            && !out.contains("outputs/kernel"),
        "{out}"
    );
    assert!(out.contains("0.500000"), "mean of 0.5s: {out}");
    let (ok, out, err) = ferroflow(&["graph", &format!("{prefix}.meta")]);
    assert!(ok, "{err}");
    assert!(
        out.contains("hidden1/kernel/Assign") && out.contains("VariableV2"),
        "{out}"
    );
    let (ok, dot, err) = ferroflow(&["graph", &format!("{prefix}.meta"), "--dot"]);
    assert!(ok, "{err}");
    assert!(
        dot.starts_with("digraph ferroflow {") && dot.contains("label=\"hidden1\""),
        "{dot}"
    );
    let tf = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tf-checkpoint/model.ckpt-3");
    let (ok, out, err) = ferroflow(&[
        "inspect",
        &tf.to_string_lossy(),
        "--scope",
        "hidden1/kernel$",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("hidden1/kernel ") && out.contains("[64, 32]") && !out.contains("Adam"),
        "{out}"
    );
    let (ok, _, err) = ferroflow(&["inspect", "/nonexistent/prefix"]);
    assert!(!ok && err.contains("/nonexistent/prefix"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bench_prints_reference_lines() {
    let (ok, out, err) = ferroflow(&[
        "bench",
        "--threads",
        "1",
        "--models",
        "book",
        "--batches",
        "8",
        "--seconds",
        "0.2",
    ]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with('{')).unwrap();
    for key in [
        "\"engine\": \"ferroflow",
        "\"model\": \"book\"",
        "\"batch\": 8",
        "\"threads\": 1",
        "\"steps_per_s\": ",
        "\"samples_per_s\": ",
    ] {
        assert!(line.contains(key), "{line}");
    }
    let sps: f64 = line
        .split("\"steps_per_s\": ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sps > 0.0);
}
