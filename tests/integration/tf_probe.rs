//! The probes of the TensorFlow fixtures (`expected.json` in tests/data/tf-checkpoint and
//! tests/data/tf-cnn-checkpoint): an input batch, and the logits TensorFlow computed for it.

use ferroflow::prelude::*;
use serde_json::Value as Json;
use std::path::Path;

/// The `expected.json` of a fixture directory.
pub fn expected(dir: &Path) -> Json {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

fn floats(j: &Json) -> Vec<f64> {
    j.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// The probe input (`probe_input`: its shape and row-major data) as an f32 value.
pub fn input(exp: &Json) -> Value {
    let pin = &exp["probe_input"];
    let shape: Vec<usize> = pin["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = floats(&pin["data"]).iter().map(|&v| v as f32).collect();
    Value::from_f32(&shape, data).unwrap()
}

/// Runs `logits` with the probe input fed to `x` and checks each against TensorFlow's
/// (`probe_logits`) within 1e-5 relative plus `abs`.
pub fn assert_logits(sess: &Session, x: Tensor, logits: Tensor, exp: &Json, abs: f64) {
    let got = sess
        .run_one(logits, &[feed(x, input(exp))])
        .unwrap()
        .to_f64_vec();
    let want = floats(&exp["probe_logits"]["data"]);
    assert_eq!(got.len(), want.len());
    for (i, (o, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (o - w).abs() <= 1e-5 * w.abs() + abs,
            "logit {i}: {o} vs TensorFlow {w}"
        );
    }
}
