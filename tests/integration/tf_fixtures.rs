//! Every case of TensorFlow's reference values (tests/data/tf-reference/ops.json, computed by
//! TF 2.21 in tf.compat.v1 graph mode) reproduced: forward outputs and gradients, with the compiler
//! passes on and off. Gradients follow the fixture's convention d(sum(output · upstream))/d(input).

use ferroflow::prelude::*;
use ferroflow::GradientOptions;
use serde_json::Value as Json;

fn tensor(j: &Json) -> Value {
    let shape: Vec<usize> = j["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = j["data"].as_array().unwrap();
    match j["dtype"].as_str().unwrap() {
        "f32" => Value::from_f32(
            &shape,
            data.iter().map(|v| v.as_f64().unwrap() as f32).collect(),
        )
        .unwrap(),
        "i64" => {
            Value::from_i64(&shape, data.iter().map(|v| v.as_i64().unwrap()).collect()).unwrap()
        }
        d => panic!("unexpected dtype {d}"),
    }
}

fn axes(j: &Json) -> Option<Vec<i64>> {
    j.as_array()
        .map(|a| a.iter().map(|v| v.as_i64().unwrap()).collect())
}

/// Builds the case's op on placeholders named after the inputs; returns (output, [(input name, placeholder)]).
fn build(g: &Graph, case: &Json) -> (Tensor, Vec<(String, Tensor)>) {
    let inputs = case["inputs"].as_object().unwrap();
    let mut ph = Vec::new();
    for (name, t) in inputs {
        let v = tensor(t);
        let p = g
            .named(name)
            .placeholder(v.dtype(), Shape::known(v.shape()))
            .unwrap();
        ph.push((name.clone(), p));
    }
    let get = |n: &str| ph.iter().find(|(k, _)| k == n).unwrap().1;
    let a = &case["attrs"];
    let out = match case["op"].as_str().unwrap() {
        "matmul" => g
            .matmul_t(
                get("a"),
                get("b"),
                a["transpose_a"].as_bool().unwrap_or(false),
                a["transpose_b"].as_bool().unwrap_or(false),
            )
            .unwrap(),
        "add" => g.add(get("x"), get("y")).unwrap(),
        "mul" => g.mul(get("x"), get("y")).unwrap(),
        "sub" => g.sub(get("x"), get("y")).unwrap(),
        "div" => g.div(get("x"), get("y")).unwrap(),
        "maximum" => g.maximum(get("x"), get("y")).unwrap(),
        "sigmoid" => g.sigmoid(get("x")).unwrap(),
        "tanh" => g.tanh(get("x")).unwrap(),
        "relu" => g.relu(get("x")).unwrap(),
        "elu" => g.elu(get("x")).unwrap(),
        "selu" => g.selu(get("x")).unwrap(),
        "softplus" => g.softplus(get("x")).unwrap(),
        "relu6" => g.relu6(get("x")).unwrap(),
        "leaky_relu" => g
            .leaky_relu(get("x"), a["alpha"].as_f64().unwrap())
            .unwrap(),
        "exp" => g.exp(get("x")).unwrap(),
        "log" => g.log(get("x")).unwrap(),
        "sqrt" => g.sqrt(get("x")).unwrap(),
        "square" => g.square(get("x")).unwrap(),
        "softmax" => g.softmax(get("x")).unwrap(),
        "log_softmax" => g.log_softmax(get("x")).unwrap(),
        "reduce_sum" => g
            .reduce_sum(
                get("x"),
                axes(&a["axis"]).as_deref(),
                a["keepdims"].as_bool().unwrap_or(false),
            )
            .unwrap(),
        "reduce_mean" => g
            .reduce_mean(
                get("x"),
                axes(&a["axis"]).as_deref(),
                a["keepdims"].as_bool().unwrap_or(false),
            )
            .unwrap(),
        "reduce_max" => g
            .reduce_max(
                get("x"),
                axes(&a["axis"]).as_deref(),
                a["keepdims"].as_bool().unwrap_or(false),
            )
            .unwrap(),
        "reshape" => g.reshape(get("x"), &axes(&a["shape"]).unwrap()).unwrap(),
        "transpose" => {
            let p: Vec<usize> = axes(&a["perm"])
                .unwrap()
                .iter()
                .map(|&v| v as usize)
                .collect();
            g.transpose(get("x"), &p).unwrap()
        }
        "clip_by_value" => g
            .clip_by_value(
                get("x"),
                a["min"].as_f64().unwrap(),
                a["max"].as_f64().unwrap(),
            )
            .unwrap(),
        "sparse_softmax_cross_entropy_with_logits" => g
            .sparse_softmax_cross_entropy_with_logits(get("labels"), get("logits"))
            .unwrap(),
        "softmax_cross_entropy_with_logits" => g
            .softmax_cross_entropy_with_logits(get("labels"), get("logits"))
            .unwrap(),
        "sigmoid_cross_entropy_with_logits" => g
            .sigmoid_cross_entropy_with_logits(get("labels"), get("logits"))
            .unwrap(),
        "l2_loss" => g.l2_loss(get("x")).unwrap(),
        op => panic!("fixture op {op} has no mapping"),
    };
    (out, ph)
}

fn assert_close(case: &str, what: &str, got: &Value, want: &Value) {
    assert_eq!(got.shape(), want.shape(), "{case}: {what} shape");
    for (i, (g, w)) in got.to_f64_vec().iter().zip(want.to_f64_vec()).enumerate() {
        let tol = 1e-5 * w.abs() + 1e-6;
        assert!(
            (g - w).abs() <= tol,
            "{case}: {what}[{i}] = {g}, TensorFlow gives {w}"
        );
    }
}

fn run_fixtures(optimize: bool) -> usize {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tf-reference/ops.json"
    ))
    .unwrap();
    let doc: Json = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let g = Graph::new();
        let (out, ph) = build(&g, case);
        let feeds: Vec<(Tensor, Value)> = ph
            .iter()
            .map(|(n, p)| (*p, tensor(&case["inputs"][n.as_str()])))
            .collect();
        let sess = Session::with_options(
            &g,
            SessionOptions {
                optimize,
                ..Default::default()
            },
        );
        let got = sess.run_one(out, &feeds).unwrap();
        assert_close(name, "output", &got, &tensor(&case["output"]));
        checked += 1;
        let Some(grads) = case["grads"].as_object() else {
            continue;
        };
        let upstream = g.constant(tensor(&case["upstream"])).unwrap();
        let xs: Vec<Tensor> = grads
            .keys()
            .map(|k| ph.iter().find(|(n, _)| n == k).unwrap().1)
            .collect();
        let sym = g
            .gradients_with(
                &[out],
                &xs,
                GradientOptions {
                    grad_ys: Some(vec![upstream]),
                    ..Default::default()
                },
            )
            .unwrap();
        for ((k, want), gs) in grads.iter().zip(sym) {
            match (want.is_null(), gs) {
                (true, None) => {}
                (true, Some(_)) => {
                    panic!("{name}: TensorFlow gives no gradient for {k}, ferroflow does")
                }
                (false, None) => panic!("{name}: ferroflow gives no gradient for {k}"),
                (false, Some(t)) => {
                    let v = sess.run_one(t, &feeds).unwrap();
                    assert_close(name, &format!("d/d{k}"), &v, &tensor(want));
                    checked += 1;
                }
            }
        }
    }
    checked
}

#[test]
fn every_fixture_case_matches_tensorflow_with_passes_on() {
    // 31 forward outputs and 38 gradients.
    assert_eq!(run_fixtures(true), 69);
}

#[test]
fn every_fixture_case_matches_tensorflow_with_passes_off() {
    assert_eq!(run_fixtures(false), 69);
}
