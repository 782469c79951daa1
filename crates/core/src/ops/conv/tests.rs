//! Convolution, pooling and bias-add ops against TensorFlow's numbers (tests/data/tf-reference/
//! conv.json, made by conv.py beside it), the gradient ops' own gradients against finite
//! differences, and the shape rules' errors.

use crate::ops::test_support::{close, eval, input};
use crate::testing::check_gradients;
use crate::{DType, GradientOptions, Graph, Session, Tensor, Value};
use serde_json::Value as Json;

fn tensor(j: &Json) -> (Vec<usize>, Vec<f32>) {
    let shape = j["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = j["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    (shape, data)
}

fn usizes(j: &Json) -> Vec<usize> {
    j.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

/// Every case of conv.json: the output and the gradient of each input, in f32, within 1e-5
/// relative (plus 1e-5 absolute: sums of up to 200 products, in another order than TF's).
#[test]
fn convolution_pooling_and_bias_add_match_tensorflow() {
    let r: Json = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/tf-reference/conv.json"
    )))
    .unwrap();
    let cases = r["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 35);
    for threads in [1, 2] {
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let g = Graph::new();
            let names: Vec<&String> = case["inputs"].as_object().unwrap().keys().collect();
            let mut placeholders = Vec::new();
            let mut feeds = Vec::new();
            for k in ["x", "filter", "bias"] {
                if let Some(j) = case["inputs"].get(k) {
                    let (shape, data) = tensor(j);
                    let dims: Vec<Option<usize>> = shape.iter().map(|&d| Some(d)).collect();
                    let p = g.placeholder(DType::F32, dims).unwrap();
                    feeds.push((p, Value::from_f32(&shape, data).unwrap()));
                    placeholders.push((k, p));
                }
            }
            assert_eq!(placeholders.len(), names.len(), "{name}");
            let x = placeholders[0].1;
            let a = &case["attrs"];
            let pad = a["padding"].as_str().unwrap_or("SAME");
            let y = match case["op"].as_str().unwrap() {
                "conv2d" => g
                    .conv2d_dilated(
                        x,
                        placeholders[1].1,
                        &usizes(&a["strides"]),
                        pad,
                        &usizes(&a["dilations"]),
                    )
                    .unwrap(),
                "max_pool" => g
                    .max_pool(x, &usizes(&a["ksize"]), &usizes(&a["strides"]), pad)
                    .unwrap(),
                "avg_pool" => g
                    .avg_pool(x, &usizes(&a["ksize"]), &usizes(&a["strides"]), pad)
                    .unwrap(),
                "bias_add" => g.bias_add(x, placeholders[1].1).unwrap(),
                op => panic!("unknown op {op}"),
            };
            let (up_shape, up) = tensor(&case["upstream"]);
            let up = g.constant(Value::from_f32(&up_shape, up).unwrap()).unwrap();
            let xs: Vec<Tensor> = placeholders.iter().map(|(_, p)| *p).collect();
            let options = GradientOptions {
                grad_ys: Some(vec![up]),
                ..Default::default()
            };
            let grads = g.gradients_with(&[y], &xs, options).unwrap();
            let mut fetches = vec![y];
            fetches.extend(grads.iter().map(|t| t.unwrap()));
            let sess = Session::with_options(&g, crate::SessionOptions::with_threads(threads));
            let out = sess.run(&fetches, &feeds, &[]).unwrap();
            let mut want = vec![("output", &case["output"])];
            want.extend(placeholders.iter().map(|(k, _)| (*k, &case["grads"][*k])));
            for ((what, j), got) in want.iter().zip(&out) {
                let (shape, data) = tensor(j);
                assert_eq!(got.shape(), shape.as_slice(), "{name}: {what}");
                for (i, (g, w)) in got.to_f64_vec().iter().zip(&data).enumerate() {
                    let w = f64::from(*w);
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{name} ({threads} threads): {what}[{i}] {g} vs {w}"
                    );
                }
            }
        }
    }
}

/// f64 inputs of the given shapes, filled with a fixed irregular sequence.
fn inputs(g: &Graph, shapes: &[&[usize]]) -> Vec<(Tensor, (Tensor, Value))> {
    shapes
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let n: usize = s.iter().product();
            let data: Vec<f64> = (0..n)
                .map(|i| ((i * 37 + k * 11) % 23) as f64 / 11.5 - 1.0)
                .collect();
            input(g, s, &data)
        })
        .collect()
}

/// The gradient ops are differentiable: the gradients of `Conv2DBackpropInput` with respect to the
/// filter and the output gradient, and of `Conv2DBackpropFilter` with respect to the input and the
/// output gradient, against central differences (f64, a strided SAME case with padding on one side
/// only, and a dilated VALID one).
#[test]
fn the_gradient_ops_have_gradients() {
    for (strides, dilations, padding, x_shape, y_shape) in [
        ([2, 2], [1, 1], "SAME", [2, 5, 4, 2], [2, 3, 2, 3]),
        ([1, 1], [2, 2], "VALID", [1, 6, 5, 2], [1, 2, 1, 3]),
    ] {
        let g = Graph::new();
        let v = inputs(&g, &[&x_shape, &[3, 3, 2, 3], &y_shape]);
        let (x, w, dy) = (v[0].0, v[1].0, v[2].0);
        let feeds: Vec<_> = v.iter().map(|(_, f)| f.clone()).collect();
        let y = g
            .conv2d_dilated(x, w, &strides, padding, &dilations)
            .unwrap();
        assert_eq!(
            g.shape(y)
                .unwrap()
                .dims()
                .unwrap()
                .iter()
                .map(|d| d.unwrap())
                .collect::<Vec<_>>(),
            y_shape
        );
        let attrs = super::ConvAttrs {
            strides,
            dilations,
            padding: super::Padding::parse(padding).unwrap(),
        };
        // The shape sources (x for BackpropInput, w for BackpropFilter) are constants here: they
        // only give a shape, and the checker perturbs the placeholders it is given.
        let (xc, wc) = (
            g.constant(feeds[0].1.clone()).unwrap(),
            g.constant(feeds[1].1.clone()).unwrap(),
        );
        let dx = g.conv2d_backprop_input(xc, w, dy, attrs).unwrap();
        let report = check_gradients(&g, dx, &[feeds[1].clone(), feeds[2].clone()], 1e-6).unwrap();
        assert!(report.max_rel_err < 1e-7, "BackpropInput: {report:?}");
        let dw = g.conv2d_backprop_filter(x, wc, dy, attrs).unwrap();
        let report = check_gradients(&g, dw, &[feeds[0].clone(), feeds[2].clone()], 1e-6).unwrap();
        assert!(report.max_rel_err < 1e-7, "BackpropFilter: {report:?}");
        // And the forward op's own gradients, through the gradient ops.
        let report = check_gradients(&g, y, &[feeds[0].clone(), feeds[1].clone()], 1e-6).unwrap();
        assert!(report.max_rel_err < 1e-7, "Conv2D: {report:?}");
    }
    // Average pooling: AvgPoolGrad's gradient is AvgPool; max pooling's gradient is MaxPoolGrad
    // (away from ties: the sequence below has none within a window).
    let g = Graph::new();
    let v = inputs(&g, &[&[2, 5, 5, 2]]);
    let x = v[0].0;
    let y = g.avg_pool(x, &[3], &[2], "SAME").unwrap();
    let report = check_gradients(&g, y, &[v[0].1.clone()], 1e-6).unwrap();
    assert!(report.max_rel_err < 1e-8, "AvgPool: {report:?}");
    let (dy, fdy) = input(&g, &[2, 3, 3, 2], &[0.5; 18 * 2]);
    let xc = g.constant(v[0].1 .1.clone()).unwrap();
    let dx = g
        .avg_pool_grad(
            xc,
            dy,
            crate::ops::conv::pool::PoolAttrs {
                ksize: [3, 3],
                strides: [2, 2],
                padding: super::Padding::Same,
            },
        )
        .unwrap();
    let report = check_gradients(&g, dx, &[fdy], 1e-6).unwrap();
    assert!(report.max_rel_err < 1e-8, "AvgPoolGrad: {report:?}");
    // Max pooling to second order: the gradient of MaxPoolGrad with respect to its output
    // gradient is MaxPoolGradGrad, and that one's is MaxPoolGrad (x fixed: the argmax taps do not
    // move under the small steps of the check).
    let y = g.max_pool(xc, &[3], &[2], "SAME").unwrap();
    let (dy, fdy) = input(
        &g,
        &[2, 3, 3, 2],
        &(0..36)
            .map(|i| f64::from(i) / 7.0 - 2.0)
            .collect::<Vec<_>>(),
    );
    let with_upstream = |ys: Tensor, xs: Tensor, up: Tensor| {
        let options = GradientOptions {
            grad_ys: Some(vec![up]),
            ..Default::default()
        };
        g.gradients_with(&[ys], &[xs], options).unwrap()[0].unwrap()
    };
    let dx = with_upstream(y, xc, dy);
    let report = check_gradients(&g, dx, &[fdy], 1e-6).unwrap();
    assert!(report.max_rel_err < 1e-8, "MaxPoolGrad: {report:?}");
    let (ddx, fddx) = input(
        &g,
        &[2, 5, 5, 2],
        &(0..100)
            .map(|i| f64::from(i % 13) / 5.0)
            .collect::<Vec<_>>(),
    );
    let back = with_upstream(dx, dy, ddx);
    assert_eq!(g.op_type(back.op()), "MaxPoolGradGrad");
    let report = check_gradients(&g, back, &[fddx], 1e-6).unwrap();
    assert!(report.max_rel_err < 1e-8, "MaxPoolGradGrad: {report:?}");
}

/// A 2×2 max pool with stride 2 over a 4×4 image (one channel) 0..16: the maxima are the bottom-
/// right cell of each window, 5, 7, 13, 15, and d(sum)/dx is 1 there and 0 elsewhere.
#[test]
fn max_pool_routes_the_gradient_to_each_maximum() {
    let g = Graph::new();
    let data: Vec<f64> = (0..16).map(f64::from).collect();
    let (x, fx) = input(&g, &[1, 4, 4, 1], &data);
    let y = g
        .max_pool(x, &[1, 2, 2, 1], &[1, 2, 2, 1], "VALID")
        .unwrap();
    let dx = crate::ops::test_support::grad(&g, y, x);
    let out = eval(&g, &[y, dx], &[fx]);
    close(&out[0], &[5.0, 7.0, 13.0, 15.0], 0.0, "max_pool");
    let mut want = [0.0; 16];
    for i in [5, 7, 13, 15] {
        want[i] = 1.0;
    }
    close(&out[1], &want, 0.0, "its gradient");
}

#[test]
fn shape_rules_name_the_problem() {
    let g = Graph::new();
    let x = g
        .placeholder(DType::F32, [None, Some(28), Some(28), Some(3)])
        .unwrap();
    let w = g
        .placeholder(DType::F32, [Some(3), Some(3), Some(1), Some(8)])
        .unwrap();
    let e = g.conv2d(x, w, &[1], "SAME").unwrap_err().to_string();
    assert!(
        e.contains("input depth 3 does not match the filter's input depth 1"),
        "{e}"
    );
    let w = g
        .placeholder(DType::F32, [Some(3), Some(3), Some(3), Some(8)])
        .unwrap();
    // SAME: ⌈28/2⌉ = 14; VALID with a 3-wide window: (28-3)/2 + 1 = 13; the batch stays unknown.
    let y = g.conv2d(x, w, &[1, 2, 2, 1], "SAME").unwrap();
    assert_eq!(
        g.shape(y).unwrap().dims().unwrap(),
        &[None, Some(14), Some(14), Some(8)]
    );
    let y = g.conv2d(x, w, &[2, 2], "VALID").unwrap();
    assert_eq!(
        g.shape(y).unwrap().dims().unwrap(),
        &[None, Some(13), Some(13), Some(8)]
    );
    let e = g
        .conv2d(x, w, &[2, 2, 2, 2], "SAME")
        .unwrap_err()
        .to_string();
    assert!(e.contains("the batch and depth entries must be 1"), "{e}");
    let e = g.conv2d(x, w, &[1], "FULL").unwrap_err().to_string();
    assert!(e.contains("padding 'FULL'"), "{e}");
    let big = g
        .placeholder(DType::F32, [Some(30), Some(30), Some(3), Some(8)])
        .unwrap();
    let e = g.conv2d(x, big, &[1], "VALID").unwrap_err().to_string();
    assert!(e.contains("Computed output size would be negative"), "{e}");
    let e = g.max_pool(
        g.placeholder(DType::F32, [Some(2), Some(3)]).unwrap(),
        &[2],
        &[2],
        "SAME",
    );
    assert!(e.unwrap_err().to_string().contains("must be rank 4"));
    let b = g.placeholder(DType::F32, [Some(4)]).unwrap();
    let e = g.bias_add(x, b).unwrap_err().to_string();
    assert!(
        e.contains("the bias must be a vector as long as the value's last dimension"),
        "{e}"
    );
    // The run-time check, when the static shapes leave it open.
    let xs = g.placeholder(DType::F32, [None, None]).unwrap();
    let bs = g.placeholder(DType::F32, [None]).unwrap();
    let s = Session::new(&g);
    let out = s.run(
        &[g.bias_add(xs, bs).unwrap()],
        &[
            (xs, Value::from_f32(&[2, 3], vec![0.0; 6]).unwrap()),
            (bs, Value::from_f32(&[2], vec![0.0; 2]).unwrap()),
        ],
        &[],
    );
    assert!(out.unwrap_err().to_string().contains("bias [2]"));
}
