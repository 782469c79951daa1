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
        .join("../../tests/data/tf-checkpoint/model.ckpt-3");
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

/// `bench --ab` alternates a switch with the default inside one process: both settings run
/// counted steps, the ratio is theirs, and a setting that names no switch is refused by name.
#[test]
fn bench_ab_times_both_settings() {
    let (ok, out, err) = ferroflow(&[
        "bench",
        "--threads",
        "2",
        "--models",
        "book",
        "--batches",
        "8",
        "--seconds",
        "0.2",
        "--ab",
        "parallel_min_elements=1000000000",
    ]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("# A/B")).unwrap();
    assert!(
        line.starts_with("# A/B book/8 parallel_min_elements=1000000000: "),
        "{line}"
    );
    // "... X steps/s (N steps) as it was, Y (M steps) with the setting: ratio R"
    let numbers: Vec<f64> = line
        .split([' ', '(', ')', ','])
        .filter_map(|w| w.parse().ok())
        .collect();
    let [base, base_steps, set, set_steps, ratio] = numbers[numbers.len() - 5..] else {
        panic!("{line}")
    };
    assert!(
        base > 0.0 && set > 0.0 && base_steps >= 3.0 && set_steps >= 3.0,
        "{line}"
    );
    assert!((ratio - set / base).abs() < 0.01 * ratio, "{line}");
    assert!(
        !out.contains("\"engine\""),
        "an A/B run prints no reference line: {out}"
    );
    let (ok, _, err) = ferroflow(&["bench", "--ab", "nope=1"]);
    assert!(
        !ok && err.contains("nope") && err.contains("gemm_own"),
        "{err}"
    );
}

#[test]
fn event_files_are_framed_as_tfrecords_with_masked_crcs() {
    use ferroflow::io::summary::FileWriter;
    use ferroflow::io::tf_checkpoint::masked_crc32c;
    let dir = std::env::temp_dir().join(format!("ff-events-{}", std::process::id()));
    let g = Graph::new();
    g.named("x")
        .placeholder(DType::F32, [None, Some(2)])
        .unwrap();
    let mut w = FileWriter::new(&dir, Some(&g)).unwrap();
    w.add_scalar("loss", 0.5, 3).unwrap();
    w.add_histogram("h", &[1.0, 2.0], 3).unwrap();
    let path = w.path().to_path_buf();
    w.close().unwrap();
    assert!(path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("events.out.tfevents."));
    let b = std::fs::read(&path).unwrap();
    let mut pos = 0;
    let mut records = 0;
    while pos < b.len() {
        let len_bytes = &b[pos..pos + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        assert_eq!(
            u32::from_le_bytes(b[pos + 8..pos + 12].try_into().unwrap()),
            masked_crc32c(len_bytes)
        );
        let data = &b[pos + 12..pos + 12 + len];
        assert_eq!(
            u32::from_le_bytes(b[pos + 12 + len..pos + 16 + len].try_into().unwrap()),
            masked_crc32c(data)
        );
        if records == 0 {
            assert!(
                data.windows(13).any(|w| w == b"brain.Event:2"),
                "the first record is the file version"
            );
        }
        pos += 16 + len;
        records += 1;
    }
    assert_eq!(records, 4, "file version, graph, scalar, histogram");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--help` and `--version` print to stdout and succeed; a subcommand's help does not run it;
/// unknown flags and bad values are refused by name; flags go anywhere.
#[test]
fn help_version_and_argument_errors() {
    let (ok, out, _) = ferroflow(&["--help"]);
    assert!(
        ok && out.contains("inspect") && out.contains("bench"),
        "{out}"
    );
    let (ok, out, _) = ferroflow(&["--version"]);
    assert!(
        ok && out.trim() == format!("ferroflow {}", env!("CARGO_PKG_VERSION")),
        "{out}"
    );
    let (ok, out, _) = ferroflow(&["bench", "--help"]);
    assert!(
        ok && out.contains("--seconds") && !out.contains("steps_per_s"),
        "{out}"
    );
    let (ok, _, err) = ferroflow(&["inspect", "x", "--scop", "hidden"]);
    assert!(!ok && err.contains("--scop"), "{err}");
    let (ok, _, err) = ferroflow(&["bench", "--threads", "lots"]);
    assert!(
        !ok && err.contains("lots") && err.contains("--threads"),
        "{err}"
    );
    let (ok, _, err) = ferroflow(&["bench", "--models", "modle"]);
    assert!(!ok && err.contains("modle"), "{err}");
    let (ok, _, err) = ferroflow(&[]);
    assert!(!ok && err.contains("Usage"), "{err}");
}

/// `inspect` tells a missing checkpoint from a corrupt one, and a file of a checkpoint from its
/// prefix; `graph` takes `--dot` before or after the path.
#[test]
fn inspect_errors_name_what_is_wrong() {
    let dir = std::env::temp_dir().join(format!("ff-cli-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let g = Graph::new();
    g.get_variable("w", &[2], DType::F32).unwrap();
    let s = Session::new(&g);
    s.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    let prefix = Saver::new(&g, VarList::All)
        .unwrap()
        .save(&s, &dir.join("m").to_string_lossy(), None)
        .unwrap();
    let data = ferroflow::io::checkpoint::data_path(&prefix);
    let (ok, _, err) = ferroflow(&["inspect", &data.to_string_lossy()]);
    assert!(
        !ok && err.contains("pass the prefix, e.g.") && err.contains(&prefix),
        "{err}"
    );
    let missing = dir.join("nothing-here").to_string_lossy().into_owned();
    let (ok, _, err) = ferroflow(&["inspect", &missing]);
    assert!(
        !ok && err.contains("no checkpoint at") && err.contains(&missing),
        "{err}"
    );
    let meta = format!("{prefix}.meta");
    let (ok, dot, err) = ferroflow(&["graph", "--dot", &meta]);
    assert!(ok && dot.starts_with("digraph"), "{err}");
    std::fs::write(&data, b"not a checkpoint at all").unwrap();
    let (ok, _, err) = ferroflow(&["inspect", &prefix]);
    assert!(!ok && err.contains("not a valid checkpoint"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn health_reports_a_saved_classifier() {
    use ferroflow_tools::demos::{Classifier, MlpSpec};
    let dir = std::env::temp_dir().join(format!("ff-cli-health-{}", std::process::id()));
    // Sigmoid layers with N(0, 1) weights on 784 inputs: the lecture's saturated network.
    let spec = MlpSpec {
        hidden: vec![50; 3],
        activation: ferroflow::nn::Activation::Sigmoid,
        initializer: Initializer::random_normal(),
        batch_norm: None,
    };
    let net = Classifier::new(784, 10, &spec, 1, Some("dnn")).unwrap();
    let sess = net.session().unwrap();
    let prefix = Saver::new(&net.g, VarList::All)
        .unwrap()
        .save(&sess, &dir.join("sat.ckpt").to_string_lossy(), None)
        .unwrap();
    let (ok, out, err) = ferroflow(&["health", &prefix, "--batch", "64"]);
    assert!(ok, "{err}");
    assert!(out.contains("64 test images of 10 classes"), "{out}");
    for layer in ["hidden1", "hidden2", "hidden3", "outputs"] {
        assert!(out.contains(layer), "{layer}: {out}");
    }
    assert!(
        out.contains("of the outputs saturated → Xavier/He initialization"),
        "{out}"
    );
    // A file name instead of the prefix, and a checkpoint without its meta-graph.
    let (ok, _, err) = ferroflow(&["health", &format!("{prefix}.meta")]);
    assert!(!ok && err.contains("pass the prefix"), "{err}");
    std::fs::remove_file(format!("{prefix}.meta")).unwrap();
    let (ok, _, err) = ferroflow(&["health", &prefix]);
    assert!(!ok && err.contains("no meta-graph at"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn inspect_shows_the_object_paths_of_a_tf2_checkpoint() {
    let prefix = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/tf2-object-checkpoint/obj.ckpt");
    let (ok, out, err) = ferroflow(&["inspect", &prefix.to_string_lossy()]);
    assert!(ok, "{err}");
    // The first layer's kernel is saved under the optimizer's path; the object graph also names
    // the model's path to it. The object graph itself is listed as a string entry.
    assert!(
        out.contains("optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE float32  [5, 8]"),
        "{out}"
    );
    assert!(
        out.contains(
            "    object: optimizer/_trainable_variables/0, model/_functional/_operations/1/_kernel"
        ),
        "{out}"
    );
    assert!(out.contains("_CHECKPOINTABLE_OBJECT_GRAPH"), "{out}");
}
