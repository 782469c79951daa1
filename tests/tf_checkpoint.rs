//! A real TensorFlow checkpoint (tests/data/tf-checkpoint, written by tf.compat.v1 Saver): every
//! variable reads back with the expected dtype, shape and values; restoring hidden1, hidden2 and
//! outputs into the same network built with ferroflow reproduces TensorFlow's logits; corruption is
//! detected.

use ferroflow::io::{Saver, TfCheckpointReader, VarList};
use ferroflow::nn::layers::{dense, Activation};
use ferroflow::prelude::*;
use serde_json::Value as Json;

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tf-checkpoint")
}

fn expected() -> Json {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
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
    let pin = &exp["probe_input"];
    let shape: Vec<usize> = pin["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data: Vec<f32> = pin["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let out = sess
        .run_one(logits, &[feed(x, Value::from_f32(&shape, data).unwrap())])
        .unwrap()
        .to_f64_vec();
    let want: Vec<f64> = exp["probe_logits"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(out.len(), want.len());
    for (i, (o, w)) in out.iter().zip(&want).enumerate() {
        assert!(
            (o - w).abs() <= 1e-5 * w.abs() + 1e-6,
            "logit {i}: {o} vs TensorFlow {w}"
        );
    }
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
