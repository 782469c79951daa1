//! A TensorFlow 2 object-based checkpoint (tests/data/tf2-object-checkpoint, written by
//! `tf.train.Checkpoint(model=keras_model, optimizer=adam)`, see make_checkpoint.py there): every
//! key is listed with TF's dtype and shape, the object graph decodes to the object paths TF's own
//! proto decoder gives, and the Keras model's weights, found by their object paths, restore into
//! the same network built with ferroflow and reproduce Keras' outputs.

use ferroflow::io::tf_checkpoint::object_graph::{ObjectGraph, OBJECT_GRAPH_KEY};
use ferroflow::io::{Saver, TfCheckpointReader, VarList};
use ferroflow::nn::layers::{dense, Activation};
use ferroflow::prelude::*;
use serde_json::Value as Json;

fn fixture() -> (String, Json) {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tf2-object-checkpoint");
    let exp: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let prefix = dir
        .join(exp["prefix"].as_str().unwrap())
        .to_string_lossy()
        .into_owned();
    (prefix, exp)
}

fn floats(j: &Json) -> Vec<f64> {
    j.as_array()
        .unwrap()
        .iter()
        .flat_map(|x| match x.as_array() {
            Some(row) => row.iter().map(|v| v.as_f64().unwrap()).collect(),
            None => vec![x.as_f64().unwrap()],
        })
        .collect()
}

#[test]
fn keys_and_object_paths_read_as_tensorflow_wrote_them() {
    let (prefix, exp) = fixture();
    let r = TfCheckpointReader::open(&prefix).unwrap();
    let keys = exp["keys"].as_object().unwrap();
    let listed = r.tensors().unwrap();
    // Every key but the object graph (a string) reads as a tensor, with TF's shape.
    assert_eq!(listed.len(), keys.len() - 1);
    for t in &listed {
        let want = &keys[&t.name];
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.shape, shape, "{}", t.name);
        let dtype = match want["dtype"].as_str().unwrap() {
            "float32" => DType::F32,
            "int64" => DType::I64,
            other => panic!("{}: {other}", t.name),
        };
        assert_eq!(t.dtype, dtype, "{}", t.name);
    }
    let unreadable: Vec<String> = r.unreadable().into_iter().map(|(k, _)| k).collect();
    assert_eq!(unreadable, [OBJECT_GRAPH_KEY]);

    let graph = ObjectGraph::read(&r).unwrap().unwrap();
    let paths = graph.paths();
    let want = exp["paths"].as_object().unwrap();
    assert_eq!(paths.len(), want.len());
    for (key, want) in want {
        let want: Vec<String> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        assert_eq!(paths[key], want, "{key}");
    }
    // A name-based (TF1) checkpoint has no object graph.
    let tf1 = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tf-checkpoint/model.ckpt-3");
    assert!(
        ObjectGraph::read(&TfCheckpointReader::open(&tf1.to_string_lossy()).unwrap())
            .unwrap()
            .is_none()
    );
}

#[test]
fn keras_weights_restore_by_object_path_and_reproduce_its_outputs() {
    let (prefix, exp) = fixture();
    let r = TfCheckpointReader::open(&prefix).unwrap();
    let graph = ObjectGraph::read(&r).unwrap().unwrap();
    let g = Graph::new();
    let x = g.placeholder(DType::F32, [None, Some(5)]).unwrap();
    let h = dense(&g, x, 8, Some(Activation::Relu), "dense").unwrap();
    let out = dense(&g, h, 3, None, "dense_1").unwrap();
    // The model's layers are `_functional/_operations/1` and `2` (0 is the input layer).
    let mut map = Vec::new();
    for (layer, scope) in [(1, "dense"), (2, "dense_1")] {
        for (attr, var) in [("_kernel", "kernel"), ("bias", "bias")] {
            let key = graph
                .key_of(&format!("model/_functional/_operations/{layer}/{attr}"))
                .unwrap();
            let v: Vec<Variable> = g
                .get_collection(keys::GLOBAL_VARIABLES, Some(&format!("{scope}/{var}")))
                .unwrap();
            map.push((key, v[0]));
        }
    }
    assert_eq!(
        map[0].0,
        "optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE"
    );
    let sess = Session::new(&g);
    Saver::new(&g, VarList::from(map.clone()))
        .unwrap()
        .restore(&sess, &prefix)
        .unwrap();
    assert_eq!(
        sess.variable_value(map[0].1).unwrap().to_f64_vec(),
        floats(&exp["kernel0"])
            .iter()
            .map(|&v| v as f32 as f64)
            .collect::<Vec<_>>()
    );
    let probe: Vec<f32> = floats(&exp["probe_input"])
        .iter()
        .map(|&v| v as f32)
        .collect();
    let got = sess
        .run_one(out, &[feed(x, Value::from_f32(&[2, 5], probe).unwrap())])
        .unwrap()
        .to_f64_vec();
    let want = floats(&exp["probe_output"]);
    assert_eq!(got.len(), want.len());
    for (i, (o, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (o - w).abs() <= 1e-5 * w.abs() + 1e-6,
            "output {i}: {o} vs Keras {w}"
        );
    }
}
