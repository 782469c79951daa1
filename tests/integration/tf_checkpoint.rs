//! A real TensorFlow checkpoint (tests/data/tf-checkpoint, written by tf.compat.v1 Saver): every
//! variable reads back with the expected dtype, shape and values; restoring hidden1, hidden2 and
//! outputs into the same network built with ferroflow reproduces TensorFlow's logits; corruption is
//! detected.

use super::tf_probe;
use ferroflow::io::{Saver, TfCheckpointReader, VarList};
use ferroflow::nn::layers::{dense, Activation};
use ferroflow::prelude::*;
use serde_json::Value as Json;

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tf-checkpoint")
}

/// A fresh scratch directory of this test process.
fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ff-tfw-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn expected() -> Json {
    tf_probe::expected(&dir())
}

#[test]
fn every_variable_reads_back_as_tensorflow_saved_it() {
    let prefix = dir().join("model.ckpt-3").to_string_lossy().into_owned();
    let r = TfCheckpointReader::open(&prefix).unwrap();
    let exp = expected();
    let vars = exp["variables"].as_object().unwrap();
    let tensors = r.tensors().unwrap();
    assert_eq!(tensors.len(), vars.len());
    for (name, e) in vars {
        let v = r.read(name).unwrap().unwrap();
        let shape: Vec<usize> = e["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(v.shape(), &shape[..], "{name}");
        let want_dtype = match e["dtype"].as_str().unwrap() {
            "float32" => DType::F32,
            "int64" => DType::I64,
            d => panic!("{d}"),
        };
        assert_eq!(v.dtype(), want_dtype, "{name}");
        let data = v.to_f64_vec();
        let sum: f64 = data.iter().sum();
        let want_sum = e["sum"].as_f64().unwrap();
        assert!(
            (sum - want_sum).abs() <= 1e-4 * want_sum.abs().max(1.0),
            "{name}: sum {sum} vs {want_sum}"
        );
        for (a, b) in data.iter().zip(e["first"].as_array().unwrap()) {
            assert_eq!(*a as f32, b.as_f64().unwrap() as f32, "{name}");
        }
    }
}

#[test]
fn restoring_the_lower_layers_reproduces_tensorflows_logits() {
    let exp = expected();
    let g = Graph::new();
    let x = g
        .named("X")
        .placeholder(DType::F32, [None, Some(64)])
        .unwrap();
    let logits = {
        let _dnn = g.name_scope("dnn").unwrap();
        let h1 = dense(&g, x, 32, Some(Activation::Relu), "hidden1").unwrap();
        let h2 = dense(&g, h1, 16, Some(Activation::Relu), "hidden2").unwrap();
        dense(&g, h2, 10, None, "outputs").unwrap()
    };
    let reuse: Vec<Variable> = g
        .get_collection(keys::GLOBAL_VARIABLES, Some("hidden[12]|outputs"))
        .unwrap();
    assert_eq!(reuse.len(), 6);
    let sess = Session::new(&g);
    let prefix = dir().join("model.ckpt-3").to_string_lossy().into_owned();
    Saver::new(&g, VarList::List(reuse))
        .unwrap()
        .restore(&sess, &prefix)
        .unwrap();
    tf_probe::assert_logits(&sess, x, logits, &exp, 1e-6);
    // Restoring a key the checkpoint lacks names it.
    let extra = g.get_variable("extra", &[1], DType::F32).unwrap();
    let e = Saver::new(&g, vec![extra])
        .unwrap()
        .restore(&sess, &prefix)
        .unwrap_err();
    assert!(e.to_string().contains("Key extra not found"), "{e}");
}

#[test]
fn corrupted_index_or_data_is_a_clear_error() {
    let tmp = std::env::temp_dir().join(format!("ff-tfckpt-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let index = std::fs::read(dir().join("model.ckpt-3.index")).unwrap();
    let data = std::fs::read(dir().join("model.ckpt-3.data-00000-of-00001")).unwrap();
    let prefix = tmp.join("m").to_string_lossy().into_owned();
    let read_all = || -> std::result::Result<(), ferroflow::io::IoError> {
        let r = TfCheckpointReader::open(&prefix)?;
        for t in r.tensors()? {
            r.read(&t.name)?;
        }
        Ok(())
    };
    std::fs::write(format!("{prefix}.data-00000-of-00001"), &data).unwrap();
    for i in 0..index.len() {
        let mut b = index.clone();
        b[i] ^= 0x41;
        std::fs::write(format!("{prefix}.index"), &b).unwrap();
        assert!(read_all().is_err(), "index byte {i} flipped unnoticed");
    }
    for n in [0, 10, index.len() / 2, index.len() - 1] {
        std::fs::write(format!("{prefix}.index"), &index[..n]).unwrap();
        assert!(read_all().is_err(), "index truncated to {n} unnoticed");
    }
    std::fs::write(format!("{prefix}.index"), &index).unwrap();
    let mut d = data.clone();
    d[100] ^= 1;
    std::fs::write(format!("{prefix}.data-00000-of-00001"), &d).unwrap();
    let e = read_all().unwrap_err();
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
    std::fs::remove_dir_all(tmp).unwrap();
}

/// Rewriting TensorFlow's own checkpoint with ferroflow's writer gives TensorFlow's files byte for byte:
/// the data file (key order, encoding) and the index (header, entries, prefix compression, restarts,
/// metaindex, index block with LevelDB's short successor key, footer).
#[test]
fn rewriting_tensorflows_checkpoint_reproduces_its_bytes() {
    let prefix = dir().join("model.ckpt-3").to_string_lossy().into_owned();
    let r = TfCheckpointReader::open(&prefix).unwrap();
    let tensors: Vec<(String, Value)> = r
        .tensors()
        .unwrap()
        .into_iter()
        .map(|t| {
            let v = r.read(&t.name).unwrap().unwrap();
            (t.name, v)
        })
        .collect();
    let out = scratch("rewrite");
    let ours = out.join("copy").to_string_lossy().into_owned();
    ferroflow::io::write_tf_checkpoint(&ours, &tensors).unwrap();
    let theirs_data = std::fs::read(format!("{prefix}.data-00000-of-00001")).unwrap();
    let ours_data = std::fs::read(format!("{ours}.data-00000-of-00001")).unwrap();
    assert_eq!(ours_data.len(), theirs_data.len());
    assert!(ours_data == theirs_data, "data files differ");
    let theirs_index = std::fs::read(format!("{prefix}.index")).unwrap();
    let ours_index = std::fs::read(format!("{ours}.index")).unwrap();
    assert!(
        ours_index == theirs_index,
        "index files differ ({} vs {} bytes)",
        ours_index.len(),
        theirs_index.len()
    );
    // And it reads back.
    let back = TfCheckpointReader::open(&ours).unwrap();
    for (name, v) in &tensors {
        assert_eq!(&back.read(name).unwrap().unwrap(), v, "{name}");
    }
}

/// Every dtype and rank, more than 16 keys (several restart points), keys sharing prefixes.
#[test]
fn tf_format_round_trips_every_dtype() {
    let mut tensors = vec![
        ("scalar".to_string(), Value::scalar_f32(2.5)),
        (
            "f64/matrix".to_string(),
            Value::from_f64(&[2, 3], vec![1.0, -2.0, 3.5, 0.0, 1e-300, -7.25]).unwrap(),
        ),
        (
            "ints".to_string(),
            Value::from_i64(&[4], vec![i64::MIN, -1, 0, i64::MAX]).unwrap(),
        ),
        (
            "flags".to_string(),
            Value::from_f64(&[3], vec![1.0, 0.0, 1.0])
                .unwrap()
                .cast(DType::Bool),
        ),
        (
            "empty".to_string(),
            Value::from_f32(&[0, 5], vec![]).unwrap(),
        ),
    ];
    for i in 0..20 {
        tensors.push((
            format!("dnn/hidden{i}/kernel"),
            Value::from_f32(&[2, 2], vec![i as f32, 1.0, 2.0, 3.0]).unwrap(),
        ));
    }
    let out = scratch("dtypes");
    let prefix = out.join("model.ckpt").to_string_lossy().into_owned();
    ferroflow::io::write_tf_checkpoint(&prefix, &tensors).unwrap();
    let r = TfCheckpointReader::open(&prefix).unwrap();
    assert_eq!(r.tensors().unwrap().len(), tensors.len());
    for (name, v) in &tensors {
        assert_eq!(&r.read(name).unwrap().unwrap(), v, "{name}");
    }
    // A duplicate key is an error naming it.
    let dup = vec![tensors[0].clone(), tensors[0].clone()];
    let err = ferroflow::io::write_tf_checkpoint(&prefix, &dup).unwrap_err();
    assert!(err.to_string().contains("scalar"), "{err}");
}

/// `Saver::format(SaveFormat::TensorFlow)`: save, restore into a fresh session, and `max_to_keep`
/// deletes old TF-format files too.
#[test]
fn saver_writes_tensorflow_format() {
    use ferroflow::io::SaveFormat;
    let g = Graph::new();
    let _s = g.variable_scope("hidden1").unwrap();
    let w = g.get_variable("kernel", &[3, 2], DType::F32).unwrap();
    drop(_s);
    let init = g.global_variables_initializer().unwrap();
    let sess = Session::new(&g);
    sess.run_targets(&[init], &[]).unwrap();
    let before = sess.variable_value(w).unwrap();
    let out = scratch("saver");
    let path = out.join("model.ckpt").to_string_lossy().into_owned();
    let saver = Saver::new(&g, VarList::All)
        .unwrap()
        .format(SaveFormat::TensorFlow)
        .max_to_keep(Some(1));
    let p0 = saver.save(&sess, &path, Some(0)).unwrap();
    assert!(std::path::Path::new(&format!("{p0}.index")).is_file());
    let p1 = saver.save(&sess, &path, Some(1)).unwrap();
    assert!(!std::path::Path::new(&format!("{p0}.index")).exists());
    assert!(!std::path::Path::new(&format!("{p0}.data-00000-of-00001")).exists());
    let fresh = Session::new(&g);
    saver.restore(&fresh, &p1).unwrap();
    assert_eq!(fresh.variable_value(w).unwrap(), before);
    let r = TfCheckpointReader::open(&p1).unwrap();
    assert_eq!(r.tensors().unwrap()[0].name, "hidden1/kernel");
}

/// A TF checkpoint with unusual entries (tests/data/tf-odd-checkpoint, made by make_checkpoint.py
/// there): float16 and bfloat16 read as float32 with TF's values, int32, int16, int8 and uint8 as
/// int64, the variable saved
/// in two partitions whole; the string is listed as unreadable as a value, with the reason, reads as
/// bytes, and never keeps the others from being read or restored.
#[test]
fn unusual_entries_read_or_are_listed_and_never_block_the_others() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tf-odd-checkpoint");
    let exp: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let prefix = dir.join("odd.ckpt").to_string_lossy().into_owned();
    let r = TfCheckpointReader::open(&prefix).unwrap();
    let names: Vec<String> = r.tensors().unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        ["bf16", "count", "half", "i16", "i8", "plain", "split", "u8"]
    );
    for name in &names {
        let v = r.read(name).unwrap().unwrap();
        let want: Vec<f64> = exp["variables"][name.as_str()]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(v.to_f64_vec(), want, "{name}");
        // The integers read as int64, the floats as float32.
        let dtype = if ["count", "i16", "i8", "u8"].contains(&name.as_str()) {
            DType::I64
        } else {
            DType::F32
        };
        assert_eq!(v.dtype(), dtype, "{name}");
    }
    let unreadable = r.unreadable();
    let why = |k: &str| {
        unreadable
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, w)| w.clone())
    };
    assert!(why("note").unwrap().contains("string"), "{unreadable:?}");
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    let e = r.read("note").unwrap_err();
    assert!(
        matches!(e, ferroflow::io::IoError::Unsupported { .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("tensor note is not supported"),
        "{e}"
    );
    // Its bytes read as bytes.
    assert_eq!(
        r.read_strings("note").unwrap().unwrap(),
        [b"hello".to_vec()]
    );
    let e = r.read_strings("plain").unwrap_err();
    assert!(e.to_string().contains("not a string tensor"), "{e}");
    // A graph with one of the readable variables restores from it.
    let g = Graph::new();
    let plain = g.get_variable("plain", &[2, 3], DType::F32).unwrap();
    let sess = Session::new(&g);
    Saver::new(&g, vec![plain])
        .unwrap()
        .restore(&sess, &prefix)
        .unwrap();
    assert_eq!(
        sess.variable_value(plain).unwrap().to_f64_vec(),
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
    );
}
