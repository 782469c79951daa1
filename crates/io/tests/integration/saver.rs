//! Saver round trips, partial restore by scope regex and key maps, every error, max_to_keep and the
//! state file, and meta-graph export/import of a trained model.

use ferroflow_core::{
    feed, keys, DType, Graph, Initializer, Session, Shape, Tensor, Value, VarOptions, Variable,
};
use ferroflow_io::{import_meta_graph, latest_checkpoint, IoError, Saver, VarList};
use ferroflow_nn::layers::{dense, Activation};
use ferroflow_nn::{losses, Optimizer};
use proptest::prelude::*;
use std::path::PathBuf;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ff-io-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn lecture_net(g: &Graph, seed: u64) -> (Tensor, Tensor) {
    g.set_random_seed(seed);
    let x = g
        .named("X")
        .placeholder(DType::F32, [None, Some(8)])
        .unwrap();
    let _dnn = g.name_scope("dnn").unwrap();
    let mut h = x;
    for i in 1..=4 {
        h = dense(g, h, 6, Some(Activation::Relu), &format!("hidden{i}")).unwrap();
    }
    (x, dense(g, h, 3, None, "outputs").unwrap())
}

fn init(g: &Graph) -> Session {
    let s = Session::new(g);
    s.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    s
}

fn values(g: &Graph, s: &Session) -> Vec<(String, Value)> {
    g.global_variables()
        .iter()
        .map(|v| (v.op_name(g), s.variable_value(*v).unwrap()))
        .collect()
}

#[test]
fn partial_restore_by_the_lectures_regex() {
    let dir = tmpdir("partial");
    let prefix = dir.join("model.ckpt").to_string_lossy().into_owned();
    let g = Graph::new();
    lecture_net(&g, 1);
    let s = init(&g);
    let saved = Saver::new(&g, VarList::All)
        .unwrap()
        .save(&s, &prefix, Some(1000))
        .unwrap();
    assert_eq!(saved, format!("{prefix}-1000"));
    let original = values(&g, &s);

    let g2 = Graph::new();
    lecture_net(&g2, 2);
    let s2 = init(&g2);
    let fresh = values(&g2, &s2);
    let reuse_vars: Vec<Variable> = g2
        .get_collection(keys::GLOBAL_VARIABLES, Some("hidden[123]"))
        .unwrap();
    let reuse_vars_dict: Vec<(String, Variable)> =
        reuse_vars.iter().map(|v| (v.op_name(&g2), *v)).collect();
    Saver::new(&g2, reuse_vars_dict)
        .unwrap()
        .restore(&s2, &saved)
        .unwrap();
    for ((name, now), ((_, orig), (_, before))) in
        values(&g2, &s2).iter().zip(original.iter().zip(&fresh))
    {
        if name.starts_with("hidden1") || name.starts_with("hidden2") || name.starts_with("hidden3")
        {
            assert_eq!(now, orig, "{name} restored");
        } else {
            assert_eq!(now, before, "{name} untouched");
            if name.ends_with("kernel") {
                assert_ne!(now, orig, "{name} differs between the two initializations");
            }
        }
    }
}

#[test]
fn renaming_through_a_key_map() {
    let dir = tmpdir("rename");
    let g = Graph::new();
    lecture_net(&g, 3);
    let s = init(&g);
    let p = Saver::new(&g, VarList::All)
        .unwrap()
        .save(&s, &dir.join("m").to_string_lossy(), None)
        .unwrap();
    let kernel: Vec<Variable> = g
        .get_collection(keys::GLOBAL_VARIABLES, Some("outputs/kernel"))
        .unwrap();
    let g2 = Graph::new();
    let other = g2
        .get_variable_with(
            "other",
            &[6, 3],
            DType::F32,
            VarOptions::init(Initializer::Zeros),
        )
        .unwrap();
    let s2 = init(&g2);
    Saver::new(&g2, vec![("outputs/kernel".to_string(), other)])
        .unwrap()
        .restore(&s2, &p)
        .unwrap();
    assert_eq!(
        s2.variable_value(other).unwrap(),
        s.variable_value(kernel[0]).unwrap()
    );
}

#[test]
fn saver_errors_name_the_key() {
    let dir = tmpdir("errors");
    let g = Graph::new();
    let a = g.get_variable("a", &[2, 3], DType::F32).unwrap();
    let b = g.get_variable("b", &[2], DType::F32).unwrap();
    assert!(matches!(
        Saver::new(&Graph::new(), VarList::All),
        Err(IoError::NoVariables)
    ));
    let e = Saver::new(&g, vec![("k1".to_string(), a), ("k2".to_string(), a)])
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "The same saveable will be restored with two names: k2"
    );
    let e = Saver::new(&g, vec![a, a]).err().unwrap();
    assert_eq!(
        e.to_string(),
        "At least two variables have the same name: a"
    );
    let s = init(&g);
    let p = Saver::new(&g, vec![a])
        .unwrap()
        .save(&s, &dir.join("m").to_string_lossy(), None)
        .unwrap();
    let e = Saver::new(&g, vec![b])
        .unwrap()
        .restore(&s, &p)
        .unwrap_err();
    assert!(
        e.to_string().contains("Key b not found in checkpoint"),
        "{e}"
    );
    let e = Saver::new(&g, vec![("a".to_string(), b)])
        .unwrap()
        .restore(&s, &p)
        .unwrap_err();
    assert!(
        e.to_string().contains("key a")
            && e.to_string().contains("lhs shape= (2,) rhs shape= [2, 3]"),
        "{e}"
    );
    let e = Saver::new(&g, vec![a])
        .unwrap()
        .restore(&s, &dir.join("nope").to_string_lossy())
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("The passed save_path is not a valid checkpoint"),
        "{e}"
    );
    std::fs::write(dir.join("junk.ffckpt"), b"not a checkpoint at all, really").unwrap();
    let e = Saver::new(&g, vec![a])
        .unwrap()
        .restore(&s, &dir.join("junk").to_string_lossy())
        .unwrap_err();
    assert!(matches!(e, IoError::Corrupt { .. }), "{e}");
}

#[test]
fn max_to_keep_and_the_state_file() {
    let dir = tmpdir("keep");
    let g = Graph::new();
    g.get_variable("v", &[1], DType::F32).unwrap();
    let s = init(&g);
    let saver = Saver::new(&g, VarList::All).unwrap().max_to_keep(Some(2));
    assert_eq!(latest_checkpoint(&dir).unwrap(), None);
    let base = dir.join("m").to_string_lossy().into_owned();
    for step in [1, 2, 3] {
        saver.save(&s, &base, Some(step)).unwrap();
    }
    let latest = latest_checkpoint(&dir).unwrap().unwrap();
    assert_eq!(latest, format!("{base}-3"));
    let state = std::fs::read_to_string(dir.join("checkpoint")).unwrap();
    assert!(
        state.contains(&format!("model_checkpoint_path: \"{base}-3\"")),
        "{state}"
    );
    assert!(!state.contains("m-1\""), "{state}");
    assert!(!dir.join("m-1.ffckpt").exists() && !dir.join("m-1.meta").exists());
    assert!(dir.join("m-2.ffckpt").exists() && dir.join("m-3.meta").exists());
    // Relative save paths are stored relative to the directory, and joined back by latest_checkpoint.
    let cwd = std::env::current_dir().unwrap();
    std::env::set_current_dir(&dir).unwrap();
    let rel = Saver::new(&g, VarList::All).unwrap();
    rel.save(&s, "sub/r", Some(7)).unwrap();
    std::env::set_current_dir(cwd).unwrap();
    let st = std::fs::read_to_string(dir.join("sub/checkpoint")).unwrap();
    assert!(st.starts_with("model_checkpoint_path: \"r-7\""), "{st}");
    assert_eq!(
        latest_checkpoint(&dir.join("sub")).unwrap().unwrap(),
        dir.join("sub").join("r-7").to_string_lossy()
    );
}

#[test]
fn trained_model_reused_through_its_meta_graph() {
    let dir = tmpdir("meta");
    let g = Graph::new();
    let (x, logits) = lecture_net(&g, 4);
    let y = g.named("y").placeholder(DType::I64, [None]).unwrap();
    let loss = losses::sparse_softmax_cross_entropy(&g, y, logits).unwrap();
    let train = Optimizer::adam(0.01)
        .minimize(&g, loss, None, None)
        .unwrap();
    let s = init(&g);
    let xv = Value::from_f32(&[4, 8], (0..32).map(|i| (i as f32 * 0.37).sin()).collect()).unwrap();
    let yv = Value::from_i64(&[4], vec![0, 1, 2, 1]).unwrap();
    for _ in 0..5 {
        s.run_targets(&[train], &[feed(x, xv.clone()), feed(y, yv.clone())])
            .unwrap();
    }
    let want = s.run_one(logits, &[feed(x, xv.clone())]).unwrap();
    let prefix = Saver::new(&g, VarList::All)
        .unwrap()
        .save(&s, &dir.join("model.ckpt").to_string_lossy(), None)
        .unwrap();

    // A program with none of the building code.
    let (g2, saver) = import_meta_graph(std::path::Path::new(&format!("{prefix}.meta"))).unwrap();
    let x2 = g2.get_tensor_by_name("X:0").unwrap();
    let logits2 = g2.get_tensor_by_name("dnn/outputs/BiasAdd:0").unwrap();
    let s2 = Session::new(&g2);
    saver.unwrap().restore(&s2, &prefix).unwrap();
    assert_eq!(s2.run_one(logits2, &[feed(x2, xv.clone())]).unwrap(), want);
    assert_eq!(
        g2.get_collection::<Variable>(keys::TRAINABLE_VARIABLES, None)
            .unwrap()
            .len(),
        10
    );
    assert_eq!(
        g2.get_collection::<Tensor>(keys::LOSSES, None)
            .unwrap()
            .len(),
        1
    );
    // New layers on top of hidden3, trained alone.
    let h3 = g2.get_tensor_by_name("dnn/hidden3/Relu:0").unwrap();
    let new_out = dense(&g2, h3, 2, None, "new_outputs").unwrap();
    let y2 = g2.named("y2").placeholder(DType::I64, [None]).unwrap();
    let new_loss = losses::sparse_softmax_cross_entropy(&g2, y2, new_out).unwrap();
    let new_vars: Vec<Variable> = g2
        .get_collection(keys::TRAINABLE_VARIABLES, Some("new_outputs"))
        .unwrap();
    let train2 = Optimizer::gradient_descent(0.1)
        .minimize(&g2, new_loss, Some(&new_vars), None)
        .unwrap();
    s2.run_targets(&[g2.variables_initializer(&new_vars).unwrap()], &[])
        .unwrap();
    let yv2 = Value::from_i64(&[4], vec![0, 1, 1, 0]).unwrap();
    let l0 = s2
        .run_one(new_loss, &[feed(x2, xv.clone()), feed(y2, yv2.clone())])
        .unwrap()
        .scalar_value()
        .unwrap();
    for _ in 0..30 {
        s2.run_targets(&[train2], &[feed(x2, xv.clone()), feed(y2, yv2.clone())])
            .unwrap();
    }
    let l1 = s2
        .run_one(new_loss, &[feed(x2, xv.clone()), feed(y2, yv2)])
        .unwrap()
        .scalar_value()
        .unwrap();
    assert!(l1 < l0, "{l0} → {l1}");
    assert_eq!(
        s2.run_one(logits2, &[feed(x2, xv)]).unwrap(),
        want,
        "the reused layers did not move"
    );
    let e = import_meta_graph(&dir.join("model.ckpt.ffckpt"))
        .err()
        .unwrap();
    // Neither ferroflow's meta-graph (its magic) nor TensorFlow's (a protobuf with a graph).
    assert!(
        e.to_string().contains("not a TensorFlow MetaGraphDef"),
        "{e}"
    );
}

fn arb_value() -> impl Strategy<Value = Value> {
    let shape = proptest::collection::vec(0usize..4, 0..4);
    (shape, 0..4u8).prop_flat_map(|(shape, kind)| {
        let n: usize = shape.iter().product();
        let s2 = shape.clone();
        match kind {
            0 => proptest::collection::vec(any::<f32>(), n)
                .prop_map(move |d| Value::from_f32(&s2, d).unwrap())
                .boxed(),
            1 => proptest::collection::vec(any::<f64>(), n)
                .prop_map(move |d| Value::from_f64(&s2, d).unwrap())
                .boxed(),
            2 => proptest::collection::vec(any::<i64>(), n)
                .prop_map(move |d| Value::from_i64(&s2, d).unwrap())
                .boxed(),
            _ => proptest::collection::vec(any::<bool>(), n)
                .prop_map(move |d| {
                    Value::Bool(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&s2), d).unwrap())
                })
                .boxed(),
        }
    })
}

fn bits(v: &Value) -> Vec<u64> {
    match v {
        Value::F32(a) => a.iter().map(|x| x.to_bits() as u64).collect(),
        Value::F64(a) => a.iter().map(|x| x.to_bits()).collect(),
        Value::I64(a) => a.iter().map(|x| *x as u64).collect(),
        Value::Bool(a) => a.iter().map(|x| *x as u64).collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn round_trip_is_bit_identical(vals in proptest::collection::vec(arb_value(), 1..5), names in proptest::collection::vec("[a-z][a-z0-9_]{0,6}(/[a-z]{1,4})?", 5)) {
        let dir = tmpdir("prop");
        let g = Graph::new();
        let mut vars = Vec::new();
        for (i, v) in vals.iter().enumerate() {
            let c = g.constant(v.clone()).unwrap();
            vars.push(g.variable(&format!("{}{i}", names[i]), c, true).unwrap());
        }
        let s = init(&g);
        let p = Saver::new(&g, VarList::All).unwrap().save(&s, &dir.join("p").to_string_lossy(), None).unwrap();
        let s2 = Session::new(&g);
        Saver::new(&g, VarList::All).unwrap().restore(&s2, &p).unwrap();
        for (v, want) in vars.iter().zip(&vals) {
            let got = s2.variable_value(*v).unwrap();
            prop_assert_eq!(got.dtype(), want.dtype());
            prop_assert_eq!(got.shape(), want.shape());
            prop_assert_eq!(bits(&got), bits(want));
        }
        let _ = Shape::scalar();
    }
}

#[test]
fn a_failed_restore_changes_no_variable() {
    // Every single-byte flip of the checkpoint files, in both formats: a restore that fails leaves
    // both variables as they were; one that succeeds (a flip in bytes nothing checks) restores both.
    use ferroflow_io::SaveFormat;
    let dir = tmpdir("all-or-nothing");
    let g = Graph::new();
    let init = |x: f32| VarOptions::init(Initializer::Constant(x as f64));
    let a = g
        .get_variable_with("a", &[40], DType::F32, init(1.0))
        .unwrap();
    let b = g
        .get_variable_with("b", &[40], DType::F32, init(2.0))
        .unwrap();
    let s = self::init(&g);
    let sentinel = |x: f32| Value::from_f32(&[40], vec![x; 40]).unwrap();
    for (format, files) in [
        (SaveFormat::Ferroflow, vec![".ffckpt"]),
        (
            SaveFormat::TensorFlow,
            vec![".index", ".data-00000-of-00001"],
        ),
    ] {
        let prefix = Saver::new(&g, VarList::All)
            .unwrap()
            .format(format)
            .save(&s, &dir.join(format!("{format:?}")).to_string_lossy(), None)
            .unwrap();
        let (mut failed, mut restored) = (0, 0);
        for suffix in files {
            let path = format!("{prefix}{suffix}");
            let good = std::fs::read(&path).unwrap();
            for i in 0..good.len() {
                let mut bad = good.clone();
                bad[i] ^= 0xff;
                std::fs::write(&path, &bad).unwrap();
                s.set_variable_value(a, sentinel(-1.0)).unwrap();
                s.set_variable_value(b, sentinel(-2.0)).unwrap();
                let r = Saver::new(&g, VarList::All).unwrap().restore(&s, &prefix);
                let (va, vb) = (s.variable_value(a).unwrap(), s.variable_value(b).unwrap());
                if r.is_err() {
                    failed += 1;
                    assert!(
                        va == sentinel(-1.0) && vb == sentinel(-2.0),
                        "{format:?}: byte {i} of {suffix} failed the restore half-way"
                    );
                } else {
                    restored += 1;
                    assert!(
                        va == sentinel(1.0) && vb == sentinel(2.0),
                        "{format:?}: byte {i}"
                    );
                }
            }
            std::fs::write(&path, &good).unwrap();
        }
        assert!(
            failed > 300,
            "{format:?}: {failed} failed, {restored} restored"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn temporaries_of_dead_writers_are_removed_by_the_next_save() {
    let dir = tmpdir("debris");
    // A process that has exited: its pid names no running process (for the moment of this test).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = dir.join(format!("m.ffckpt.ferroflow-tmp-{dead}"));
    let mine = dir.join(format!("x.ffckpt.ferroflow-tmp-{}", std::process::id()));
    // A user's file with a similar name but not our tag stays, whatever its number.
    let other = dir.join(format!("notes.tmp-{dead}"));
    for f in [&stale, &mine, &other] {
        std::fs::write(f, b"partial").unwrap();
    }
    let g = Graph::new();
    g.get_variable("a", &[2], DType::F32).unwrap();
    let s = init(&g);
    Saver::new(&g, VarList::All)
        .unwrap()
        .save(&s, &dir.join("m").to_string_lossy(), None)
        .unwrap();
    if std::path::Path::new("/proc/self").exists() {
        assert!(!stale.exists(), "a dead writer's temporary stays");
    }
    assert!(
        mine.exists() && other.exists(),
        "only dead writers' files go"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(unix)]
#[test]
fn only_regular_files_are_read() {
    // A meta-graph, index, checkpoint, data or state file that is a link to /dev/zero would never end; a
    // FIFO would block. Both are refused before a byte is read.
    let dir = tmpdir("special");
    let zero_meta = dir.join("z.meta");
    std::os::unix::fs::symlink("/dev/zero", &zero_meta).unwrap();
    let e = import_meta_graph(&zero_meta).err().unwrap();
    assert!(e.to_string().contains("must be a regular file"), "{e}");
    std::os::unix::fs::symlink("/dev/zero", dir.join("t.index")).unwrap();
    let e = ferroflow_io::TfCheckpointReader::open(&dir.join("t").to_string_lossy())
        .err()
        .unwrap();
    assert!(e.to_string().contains("must be a regular file"), "{e}");
    // A state file `checkpoint` that is a link to /dev/zero.
    std::os::unix::fs::symlink("/dev/zero", dir.join("checkpoint")).unwrap();
    let e = latest_checkpoint(&dir).err().unwrap();
    assert!(e.to_string().contains("must be a regular file"), "{e}");
    let zero_ckpt = dir.join("z.ffckpt");
    std::os::unix::fs::symlink("/dev/zero", &zero_ckpt).unwrap();
    let e = ferroflow_io::CheckpointReader::open(&zero_ckpt)
        .err()
        .unwrap();
    assert!(e.to_string().contains("must be a regular file"), "{e}");
    let mkfifo = |path: &std::path::Path| {
        std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success())
    };
    let fifo = dir.join("f.meta");
    if mkfifo(&fifo) {
        let e = import_meta_graph(&fifo).err().unwrap();
        assert!(e.to_string().contains("must be a regular file"), "{e}");
        let fifo_ckpt = dir.join("f.ffckpt");
        assert!(mkfifo(&fifo_ckpt));
        let e = ferroflow_io::CheckpointReader::open(&fifo_ckpt)
            .err()
            .unwrap();
        assert!(e.to_string().contains("must be a regular file"), "{e}");
        // A TF checkpoint whose data file was replaced by a FIFO: its index opens, reading a
        // tensor is refused.
        let prefix = dir.join("d").to_string_lossy().into_owned();
        let x = Value::from_f32(&[2], vec![1.0, 2.0]).unwrap();
        ferroflow_io::write_tf_checkpoint(&prefix, &[("x".into(), x)]).unwrap();
        let data = dir.join("d.data-00000-of-00001");
        std::fs::remove_file(&data).unwrap();
        assert!(mkfifo(&data));
        let reader = ferroflow_io::TfCheckpointReader::open(&prefix).unwrap();
        let e = reader.read("x").err().unwrap();
        assert!(e.to_string().contains("must be a regular file"), "{e}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// This host's name as the save lock records it.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(target_os = "linux")]
#[test]
fn a_save_into_a_directory_another_live_process_is_saving_into_is_refused() {
    let dir = tmpdir("busy");
    let prefix = dir.join("model.ckpt").to_string_lossy().into_owned();
    let g = Graph::new();
    lecture_net(&g, 1);
    let s = init(&g);
    let saver = Saver::new(&g, VarList::All).unwrap();
    let lock = dir.join("checkpoint.ferroflow-lock");
    // A live holder: a child process that sleeps while "saving".
    let mut holder = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(&lock, format!("{} {}", host(), holder.id())).unwrap();
    match saver.save(&s, &prefix, Some(1)) {
        Err(IoError::Busy { holder: who, .. }) => {
            assert!(who.contains(&format!("process {}", holder.id())), "{who}")
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(!dir.join("model.ckpt-1.ffckpt").exists());
    // The holder dies without releasing it: the next save takes the stale lock over, and releases
    // it when done.
    holder.kill().unwrap();
    holder.wait().unwrap();
    saver.save(&s, &prefix, Some(1)).unwrap();
    assert!(dir.join("model.ckpt-1.ffckpt").exists());
    assert!(!lock.exists());
    // A lock of another host cannot be checked: refused, naming that host.
    std::fs::write(&lock, "elsewhere 1").unwrap();
    let e = saver.save(&s, &prefix, Some(2)).unwrap_err().to_string();
    assert!(
        e.contains("host 'elsewhere'") && e.contains("rank 0"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
