//! The unary family's golden values, each with its derivation, forward and gradient, and GELU
//! against TensorFlow's numbers (tests/data/tf-reference/gelu.json, made by gelu.py beside it).

use super::*;
use crate::autodiff::GradientOptions;
use crate::dtype::DType;
use crate::session::{feed, Session, SessionOptions};

/// Runs `y = build(x)` on f64 `xs` and returns y and dy/dx (upstream ones).
fn forward_and_grad(
    xs: &[f64],
    build: impl Fn(&Graph, Tensor) -> Result<Tensor>,
) -> (Vec<f64>, Vec<f64>) {
    let g = Graph::new();
    let x = g.placeholder(DType::F64, [Some(xs.len())]).unwrap();
    let y = build(&g, x).unwrap();
    let dx = g.gradients(&[y], &[x]).unwrap()[0].unwrap();
    let sess = Session::with_options(&g, SessionOptions::with_threads(1));
    let out = sess
        .run(
            &[y, dx],
            &[feed(x, Value::from_f64(&[xs.len()], xs.to_vec()).unwrap())],
            &[],
        )
        .unwrap();
    (out[0].to_f64_vec(), out[1].to_f64_vec())
}

fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

/// Golden values, derived by hand:
/// - relu(-2, -0, 0.5, 3) = (0, 0, 0.5, 3); relu' is 0 at and below 0 (TF's ReluGrad reads y > 0).
/// - elu(-1) = e^-1 - 1 = -0.632120558828558; elu'(-1) = y + 1 = 0.367879441171442; elu'(2) = 1.
/// - selu(1) = scale = 1.0507009873554805; selu(-1) = scale·alpha·(e^-1 - 1) = -1.1113307378125628,
///   selu'(-1) = y + scale·alpha = 0.6467686...: scale·alpha·e^-1 = 1.7580993408473766·0.36787944.
/// - sigmoid(0) = 0.5, sigmoid'(0) = 0.25; sigmoid(2) = 1/(1+e^-2) = 0.8807970779778823,
///   sigmoid'(2) = y(1-y) = 0.10499358540350652.
/// - tanh(0.5) = 0.46211715726000974, tanh'(0.5) = 1 - y² = 0.7864477329659274.
/// - softplus(0) = ln 2 = 0.6931471805599453, softplus'(0) = sigmoid(0) = 0.5; softplus(-30) =
///   e^-30 (log1p of a tiny value), no overflow at 800: softplus(800) = 800.
/// - leaky_relu(-2, alpha 0.2) = -0.4, derivative 0.2; relu6(7) = 6 with derivative 0.
/// - rsqrt(4) = 1/2 with derivative -x^(-3/2)/2 = -1/16; rsqrt(1/4) = 2 with derivative -8/2 = -4.
#[test]
fn golden_values_forward_and_gradient() {
    let (y, d) = forward_and_grad(&[-2.0, -0.0, 0.5, 3.0], |g, x| g.relu(x));
    close(&y, &[0.0, 0.0, 0.5, 3.0], 0.0, "relu");
    close(&d, &[0.0, 0.0, 1.0, 1.0], 0.0, "relu'");

    let (y, d) = forward_and_grad(&[-1.0, 2.0], |g, x| g.elu(x));
    close(&y, &[-0.632_120_558_828_558, 2.0], 1e-15, "elu");
    close(&d, &[0.367_879_441_171_442, 1.0], 1e-15, "elu'");

    let (y, d) = forward_and_grad(&[1.0, -1.0], |g, x| g.selu(x));
    let sa = SELU_SCALE * SELU_ALPHA;
    close(
        &y,
        &[1.050_700_987_355_480_5, -1.111_330_737_812_562_8],
        1e-15,
        "selu",
    );
    close(&d, &[SELU_SCALE, sa * (-1.0f64).exp()], 1e-15, "selu'");

    let (y, d) = forward_and_grad(&[0.0, 2.0], |g, x| g.sigmoid(x));
    close(&y, &[0.5, 0.880_797_077_977_882_3], 1e-15, "sigmoid");
    close(&d, &[0.25, 0.104_993_585_403_506_52], 1e-14, "sigmoid'");

    let (y, d) = forward_and_grad(&[0.5], |g, x| g.tanh(x));
    close(&y, &[0.462_117_157_260_009_74], 1e-15, "tanh");
    close(&d, &[0.786_447_732_965_927_4], 1e-15, "tanh'");

    let (y, d) = forward_and_grad(&[0.0, -30.0, 800.0], |g, x| g.softplus(x));
    close(
        &y,
        &[std::f64::consts::LN_2, (-30.0f64).exp(), 800.0],
        1e-15,
        "softplus",
    );
    close(&d, &[0.5, (-30.0f64).exp(), 1.0], 1e-15, "softplus'");

    let (y, d) = forward_and_grad(&[-2.0, 7.0], |g, x| {
        let a = g.leaky_relu(x, 0.2)?;
        let b = g.relu6(x)?;
        g.add(a, b)
    });
    close(&y, &[-0.4, 13.0], 1e-15, "leaky_relu + relu6");
    close(&d, &[0.2, 1.0], 1e-15, "leaky_relu' + relu6'");

    let (y, d) = forward_and_grad(&[4.0, 0.25], |g, x| g.rsqrt(x));
    close(&y, &[0.5, 2.0], 1e-15, "rsqrt");
    close(&d, &[-0.0625, -4.0], 1e-15, "rsqrt'");
}

/// Integer inputs: neg, abs, square and sign on int64 (wrapping, as TF's int kernels); a float-only
/// function refuses them at build time.
#[test]
fn integer_functions_and_float_only_ones() {
    let g = Graph::new();
    let x = g
        .constant(Value::from_i64(&[3], vec![-3, 0, i64::MIN]).unwrap())
        .unwrap();
    let ys = [
        g.neg(x).unwrap(),
        g.abs(x).unwrap(),
        g.square(x).unwrap(),
        g.sign(x).unwrap(),
    ];
    let out = Session::new(&g).run(&ys, &[], &[]).unwrap();
    let ints = |v: &Value| v.as_i64().unwrap().iter().copied().collect::<Vec<i64>>();
    assert_eq!(ints(&out[0]), [3, 0, i64::MIN]);
    assert_eq!(ints(&out[1]), [3, 0, i64::MIN]);
    assert_eq!(ints(&out[2]), [9, 0, 0]);
    assert_eq!(ints(&out[3]), [-1, 0, -1]);
    let e = g.relu(x).unwrap_err().to_string();
    assert!(e.contains("Relu") && e.contains("float"), "{e}");
}

/// The names a function gives its nodes, its gradient kernel and a product fused with it.
#[test]
fn names_come_from_each_functions_section() {
    assert_eq!(UnaryKind::Gelu.type_name(), "Gelu");
    assert_eq!(UnaryKind::Gelu.grad_type_name(), Some("GeluGrad"));
    assert_eq!(UnaryKind::LeakyRelu { alpha: 0.1 }.type_name(), "LeakyRelu");
    assert_eq!(UnaryKind::Relu.fused_product_name(), "MatMul+ReluGrad");
    assert_eq!(UnaryKind::Exp.grad_type_name(), None);
    assert_eq!(UnaryKind::Elu.apply(0.0f64), 0.0);
}

/// GELU (exact, `approximate=False`) against TensorFlow 2.21: the output, the gradient with an
/// upstream, and the second derivative through that gradient, in f32, to 1e-5 relative (TF's erf is
/// Eigen's polynomial, ours the `libm` port of musl: both within an ulp or two of the true value).
#[test]
fn gelu_matches_tensorflow() {
    let r: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/tf-reference/gelu.json"
    )))
    .unwrap();
    let list = |k: &str| -> Vec<f32> {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let (xs, up, up2) = (list("x"), list("upstream"), list("upstream2"));
    let n = xs.len();
    let g = Graph::new();
    let x = g.placeholder(DType::F32, [Some(n)]).unwrap();
    let c = |v: &[f32]| {
        g.constant(Value::from_f32(&[n], v.to_vec()).unwrap())
            .unwrap()
    };
    let y = g.gelu(x).unwrap();
    let grads = |ys: Tensor, upstream: Tensor| {
        let options = GradientOptions {
            grad_ys: Some(vec![upstream]),
            ..Default::default()
        };
        g.gradients_with(&[ys], &[x], options).unwrap()[0].unwrap()
    };
    let dx = grads(y, c(&up));
    let ddx = grads(dx, c(&up2));
    let out = Session::new(&g)
        .run(
            &[y, dx, ddx],
            &[feed(x, Value::from_f32(&[n], xs).unwrap())],
            &[],
        )
        .unwrap();
    for (k, (name, v)) in [("y", &out[0]), ("dx", &out[1]), ("ddx", &out[2])]
        .iter()
        .enumerate()
    {
        let want: Vec<f64> = list(name).iter().map(|&v| v as f64).collect();
        let got = v.to_f64_vec();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs() + 1e-6,
                "output {k} ({name})[{i}]: {a} vs TensorFlow {b}"
            );
        }
    }
}

/// The fused gradient kernel of every activation that has one: its in-place form and the band form a
/// fused product uses give the same bits as the kernel itself.
#[test]
fn activation_gradient_forms_agree_bit_for_bit() {
    let kinds = [
        UnaryKind::Relu,
        UnaryKind::Relu6,
        UnaryKind::LeakyRelu { alpha: 0.3 },
        UnaryKind::Sigmoid,
        UnaryKind::Tanh,
        UnaryKind::Elu,
        UnaryKind::Selu,
        UnaryKind::Gelu,
    ];
    let ctx = Context::serial();
    let v: Vec<f32> = (0..40).map(|i| (i as f32 - 20.0) * 0.37).collect();
    let up: Vec<f32> = (0..40).map(|i| ((i * 7) % 11) as f32 * 0.1 - 0.5).collect();
    let val = |d: &[f32]| Value::from_f32(&[40], d.to_vec()).unwrap();
    for kind in kinds {
        let op = ActivationGrad { kind };
        let fresh = op.compute(&ctx, &[&val(&up), &val(&v)]).unwrap();
        let mut target = val(&up);
        op.compute_in_place(&ctx, 0, &mut target, &[&val(&v)])
            .unwrap();
        let mut band = up.clone();
        activation_grad_slice(&ctx, kind, &mut band, &v);
        assert_eq!(fresh, target, "{kind:?} in place");
        assert_eq!(fresh, val(&band), "{kind:?} band");
        let f = fresh.to_f64_vec();
        assert!(
            f.iter().any(|&x| x != 0.0) && f.iter().all(|x| x.is_finite()),
            "{kind:?}"
        );
    }
}
