//! Initializer formulas, dense/batch-norm/dropout naming and values, regularizers and losses.

use ferroflow_core::{
    feed, keys, DType, Error, Graph, Initializer, Reuse, Session, Shape, Tensor, Value, Variable,
};
use ferroflow_nn::batch_norm::{batch_normalization, BatchNormOptions};
use ferroflow_nn::layers::{dense, dense_with, dropout, Activation, DenseOptions};
use ferroflow_nn::{losses, FanMode, Regularizer, VsDistribution};
use ndarray::{arr1, arr2};

fn sample(init: Initializer, shape: &[usize]) -> Vec<f64> {
    let g = Graph::new();
    g.set_random_seed(1);
    let t = init.build(&g, shape, DType::F32).unwrap();
    Session::new(&g).run_one(t, &[]).unwrap().to_f64_vec()
}

fn stats(v: &[f64]) -> (f64, f64, f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (mean, std, min, max)
}

#[test]
fn initializer_formulas() {
    // glorot_uniform for 784→300: limit √(6/(784+300)) = 0.0743980; uniform std = limit/√3.
    let v = sample(Initializer::glorot_uniform(), &[784, 300]);
    let (mean, std, min, max) = stats(&v);
    let limit = (6.0f64 / 1084.0).sqrt();
    assert!((limit - 0.0743980).abs() < 1e-7);
    assert!(min >= -limit && max <= limit && max > 0.99 * limit && min < -0.99 * limit);
    assert!(
        mean.abs() < 1e-3 && (std - limit / 3f64.sqrt()).abs() < 1e-3,
        "{mean} {std}"
    );
    // He normal for [3,3,16,32]: fan_in = 144, target std √(2/144) = 0.1179 after the truncation correction.
    let v = sample(Initializer::he_normal(), &[3, 3, 16, 32]);
    let (_, std, min, max) = stats(&v);
    let target = (2.0f64 / 144.0).sqrt();
    assert!(
        (std - target).abs() < 0.01 * target + 0.003,
        "{std} vs {target}"
    );
    // Truncated at 2·(target/0.8796).
    let bound = 2.0 * target / 0.879_625_661_034_239_8;
    assert!(min >= -bound - 1e-6 && max <= bound + 1e-6);
    // random_normal: the lecture's N(0, 1).
    let (mean, std, _, _) = stats(&sample(Initializer::random_normal(), &[100_000]));
    assert!(mean.abs() < 0.02 && (std - 1.0).abs() < 0.02);
    // truncated_normal(mean 1, stddev 2): range [-3, 5], std 0.8796·2.
    let (mean, std, min, max) = stats(&sample(
        Initializer::TruncatedNormal {
            mean: 1.0,
            stddev: 2.0,
            seed: None,
        },
        &[100_000],
    ));
    assert!(
        min >= -3.0 && max <= 5.0 && (mean - 1.0).abs() < 0.03 && (std - 0.8796 * 2.0).abs() < 0.03,
        "{std}"
    );
    // variance scaling variants.
    let (_, std, _, _) = stats(&sample(
        Initializer::variance_scaling(1.0, FanMode::FanOut, VsDistribution::UntruncatedNormal),
        &[50, 400],
    ));
    assert!((std - (1.0f64 / 400.0).sqrt()).abs() < 0.002);
    let (_, _, min, max) = stats(&sample(Initializer::lecun_uniform(), &[100, 10]));
    assert!(max <= (3.0f64 / 100.0).sqrt() && min >= -(3.0f64 / 100.0).sqrt());
    let (_, _, min, max) = stats(&sample(Initializer::he_uniform(), &[50, 10]));
    assert!(max <= (6.0f64 / 50.0).sqrt() && max > 0.9 * (6.0f64 / 50.0).sqrt() && min < 0.0);
    assert_eq!(sample(Initializer::Constant(0.5), &[3]), [0.5, 0.5, 0.5]);
    // Same graph seed and op seed: same values.
    assert_eq!(
        sample(Initializer::glorot_normal().with_seed(3), &[4, 4]),
        sample(Initializer::glorot_normal().with_seed(3), &[4, 4])
    );
    assert_eq!(ferroflow_nn::compute_fans(&[3, 3, 16, 32]), (144.0, 288.0));
}

/// The lecture's slide 27 network, as written there.
fn lecture_net(g: &Graph) -> Tensor {
    let x = g
        .named("X")
        .placeholder(DType::F32, [None, Some(784)])
        .unwrap();
    let _dnn = g.name_scope("dnn").unwrap();
    let relu = Some(Activation::Relu);
    let h1 = dense(g, x, 300, relu, "hidden1").unwrap();
    let h2 = dense(g, h1, 50, relu, "hidden2").unwrap();
    let h3 = dense(g, h2, 50, relu, "hidden3").unwrap();
    let h4 = dense(g, h3, 50, relu, "hidden4").unwrap();
    let h5 = dense(g, h4, 50, relu, "hidden5").unwrap();
    dense(g, h5, 10, None, "outputs").unwrap()
}

#[test]
fn lecture_slide_27_names_and_collection() {
    let g = Graph::new();
    let logits = lecture_net(&g);
    assert_eq!(g.tensor_name(logits), "dnn/outputs/BiasAdd:0");
    assert!(g.get_tensor_by_name("dnn/hidden1/Relu:0").is_ok());
    assert!(g.get_operation_by_name("dnn/hidden1/MatMul").is_ok());
    let reuse: Vec<Variable> = g
        .get_collection(keys::GLOBAL_VARIABLES, Some("hidden[123]"))
        .unwrap();
    let names: Vec<String> = reuse.iter().map(|v| v.name(&g)).collect();
    assert_eq!(
        names,
        [
            "hidden1/kernel:0",
            "hidden1/bias:0",
            "hidden2/kernel:0",
            "hidden2/bias:0",
            "hidden3/kernel:0",
            "hidden3/bias:0"
        ]
    );
    assert_eq!(reuse[0].shape(&g), Shape::known(&[784, 300]));
    let train: Vec<Variable> = g
        .get_collection(keys::TRAINABLE_VARIABLES, Some("hidden[34]|outputs"))
        .unwrap();
    assert_eq!(train.len(), 6);
}

#[test]
fn dense_naming_reuse_and_errors() {
    let g = Graph::new();
    let x = g.placeholder(DType::F32, [None, Some(4)]).unwrap();
    let a = dense_with(&g, x, 3, DenseOptions::default()).unwrap();
    let b = dense_with(&g, x, 3, DenseOptions::default()).unwrap();
    assert_eq!(g.op_name(a), "dense/BiasAdd");
    assert_eq!(g.op_name(b), "dense_1/BiasAdd");
    dense(&g, x, 3, Some(Activation::Elu), "hidden1").unwrap();
    let e = dense(&g, x, 3, Some(Activation::Elu), "hidden1").unwrap_err();
    assert_eq!(
        e,
        Error::VariableExists {
            name: "hidden1/kernel".into()
        }
    );
    let shared = dense_with(
        &g,
        x,
        3,
        DenseOptions {
            name: Some("hidden1".into()),
            reuse: Reuse::Yes,
            activation: Some(Activation::Elu),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        g.op_name(shared),
        "hidden1_2/Elu",
        "ops of a reused layer go to a new name scope"
    );
    let kernels: Vec<Variable> = g
        .get_collection(keys::GLOBAL_VARIABLES, Some("hidden1/kernel"))
        .unwrap();
    assert_eq!(kernels.len(), 1, "the variables are shared");
    // Regularizers land in REGULARIZATION_LOSSES.
    dense_with(
        &g,
        x,
        2,
        DenseOptions {
            name: Some("reg".into()),
            kernel_regularizer: Some(Regularizer::L2(0.5)),
            ..Default::default()
        },
    )
    .unwrap();
    let regs: Vec<Tensor> = g.get_collection(keys::REGULARIZATION_LOSSES, None).unwrap();
    assert_eq!(regs.len(), 1);
    assert!(
        g.op_name(regs[0]).starts_with("reg/kernel/Regularizer/"),
        "{}",
        g.op_name(regs[0])
    );
    let unknown = g.placeholder(DType::F32, Shape::unknown()).unwrap();
    assert!(matches!(
        dense(&g, unknown, 2, None, "u"),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn batch_norm_training_inference_and_moving_averages() {
    let g = Graph::new();
    let x = g.placeholder(DType::F32, [None, Some(2)]).unwrap();
    let training = {
        let f = g.constant(false).unwrap();
        g.named("training")
            .placeholder_with_default(f, Shape::scalar())
            .unwrap()
    };
    let y = batch_normalization(
        &g,
        x,
        training,
        BatchNormOptions {
            momentum: 0.9,
            ..Default::default()
        },
    )
    .unwrap();
    let vars: Vec<Variable> = g.get_collection(keys::GLOBAL_VARIABLES, None).unwrap();
    let names: Vec<String> = vars.iter().map(|v| v.op_name(&g)).collect();
    assert_eq!(
        names,
        [
            "batch_normalization/gamma",
            "batch_normalization/beta",
            "batch_normalization/moving_mean",
            "batch_normalization/moving_variance"
        ]
    );
    let trainable: Vec<Variable> = g.get_collection(keys::TRAINABLE_VARIABLES, None).unwrap();
    assert_eq!(trainable.len(), 2);
    let updates: Vec<ferroflow_core::Operation> = g.get_collection(keys::UPDATE_OPS, None).unwrap();
    assert_eq!(updates.len(), 2);
    let sess = Session::new(&g);
    sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    // Column 0: [1, 3] → mean 2, biased var 1; column 1: [2, 6] → mean 4, var 4.
    let xv: Value = arr2(&[[1.0f32, 2.0], [3.0, 6.0]]).into_dyn().into();
    let out = sess
        .run_one(y, &[feed(x, xv.clone()), feed(training, true)])
        .unwrap()
        .to_f64_vec();
    let s0 = 1.0 / (1.0f64 + 1e-3).sqrt();
    let s1 = 2.0 / (4.0f64 + 1e-3).sqrt();
    let want = [-s0, -s1, s0, s1];
    for (o, w) in out.iter().zip(want) {
        assert!((o - w).abs() < 1e-5, "{o} vs {w}");
    }
    // The forward pass alone leaves the moving statistics at 0 / 1.
    let mm = vars[2];
    let mv = vars[3];
    assert_eq!(sess.variable_value(mm).unwrap().to_f64_vec(), [0.0, 0.0]);
    // Running the update ops: mean ← 0.1·μ_B, var ← 0.9 + 0.1·σ²_B.
    sess.run(&[], &[feed(x, xv.clone()), feed(training, true)], &updates)
        .unwrap();
    let m = sess.variable_value(mm).unwrap().to_f64_vec();
    let v = sess.variable_value(mv).unwrap().to_f64_vec();
    for (a, b) in m.iter().zip([0.2, 0.4]) {
        assert!((a - b).abs() < 1e-6);
    }
    for (a, b) in v.iter().zip([1.0, 1.3]) {
        assert!((a - b).abs() < 1e-6);
    }
    // With training fed false, the updates do nothing and inference uses the moving statistics.
    sess.run(&[], &[feed(x, xv.clone())], &updates).unwrap();
    assert_eq!(sess.variable_value(mm).unwrap().to_f64_vec(), m);
    let inf = sess.run_one(y, &[feed(x, xv)]).unwrap().to_f64_vec();
    let want = [
        (1.0 - 0.2) / (1.0f64 + 1e-3).sqrt(),
        (2.0 - 0.4) / (1.3f64 + 1e-3).sqrt(),
    ];
    assert!(
        (inf[0] - want[0]).abs() < 1e-5 && (inf[1] - want[1]).abs() < 1e-5,
        "{inf:?}"
    );
    // A Python-style `false` makes no update ops.
    let g2 = Graph::new();
    let x2 = g2.placeholder(DType::F32, [None, Some(2)]).unwrap();
    batch_normalization(&g2, x2, false, BatchNormOptions::default()).unwrap();
    assert!(g2
        .get_collection::<ferroflow_core::Operation>(keys::UPDATE_OPS, None)
        .unwrap()
        .is_empty());
}

#[test]
fn dropout_scales_kept_units_in_training_only() {
    let g = Graph::new();
    g.set_random_seed(5);
    let x = g.placeholder(DType::F32, [None, Some(1000)]).unwrap();
    let training = g.placeholder(DType::Bool, Shape::scalar()).unwrap();
    let y = dropout(&g, x, 0.25, training, None).unwrap();
    let sess = Session::new(&g);
    let ones: Value = ndarray::Array2::<f32>::ones((4, 1000)).into_dyn().into();
    let out = sess
        .run_one(y, &[feed(x, ones.clone()), feed(training, true)])
        .unwrap()
        .to_f64_vec();
    let kept = out.iter().filter(|v| **v != 0.0).count() as f64 / 4000.0;
    assert!((kept - 0.75).abs() < 0.03, "kept {kept}");
    assert!(out
        .iter()
        .all(|v| *v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    let inf = sess
        .run_one(y, &[feed(x, ones), feed(training, false)])
        .unwrap();
    assert!(inf.to_f64_vec().iter().all(|v| *v == 1.0));
    assert!(dropout(&g, x, 1.0, true, None).is_err());
}

#[test]
fn losses_regularizers_and_metrics() {
    let g = Graph::new();
    let logits = g
        .constant(Value::from(arr2(&[[2.0f32, 0.0], [0.0, 1.0]]).into_dyn()))
        .unwrap();
    let labels = g
        .constant(Value::from(arr1(&[0i64, 0]).into_dyn()))
        .unwrap();
    let loss = losses::sparse_softmax_cross_entropy(&g, labels, logits).unwrap();
    assert_eq!(
        g.tensor_name(loss),
        "sparse_softmax_cross_entropy_loss/value:0"
    );
    let w = g
        .variable(
            "w",
            g.constant(Value::from(arr1(&[1.0f32, -2.0]).into_dyn()))
                .unwrap(),
            true,
        )
        .unwrap();
    let reg = Regularizer::L1L2(0.1, 0.5).apply(&g, w.value()).unwrap();
    g.add_to_collection(keys::REGULARIZATION_LOSSES, reg);
    let total = losses::get_total_loss(&g, true).unwrap();
    let acc = losses::accuracy(&g, labels, logits).unwrap();
    let top1 = losses::in_top_k(&g, logits, labels, 1).unwrap();
    let mse = losses::mean_squared_error(
        &g,
        g.constant(Value::from(arr1(&[1.0f32, 2.0]).into_dyn()))
            .unwrap(),
        w.value(),
    )
    .unwrap();
    let huber = losses::huber_loss(
        &g,
        g.constant(Value::from(arr1(&[0.0f32, 0.0]).into_dyn()))
            .unwrap(),
        w.value(),
        1.0,
    )
    .unwrap();
    let sess = Session::new(&g);
    sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    // xent row 0: log(1+e^-2) = 0.126928; row 1: log(1+e^1) = 1.313262; mean 0.720095.
    let l = sess.run_one(loss, &[]).unwrap().scalar_value().unwrap();
    assert!((l - 0.720_095).abs() < 1e-5, "{l}");
    // reg = 0.1·3 + 0.5·(1+4)/2 = 1.55; total = l + 1.55 (mse and huber joined LOSSES after it was built).
    let m = sess.run_one(mse, &[]).unwrap().scalar_value().unwrap();
    assert!((m - (0.0 + 16.0) / 2.0).abs() < 1e-6);
    let h = sess.run_one(huber, &[]).unwrap().scalar_value().unwrap();
    assert!((h - (0.5 + 1.5) / 2.0).abs() < 1e-6);
    let t = sess.run_one(total, &[]).unwrap().scalar_value().unwrap();
    assert!((t - (l + 1.55)).abs() < 1e-5, "{t}");
    assert_eq!(sess.run_one(acc, &[]).unwrap().scalar_value(), Some(0.5));
    assert_eq!(sess.run_one(top1, &[]).unwrap().to_f64_vec(), [1.0, 0.0]);
}

#[test]
fn max_norm_clips_rows_in_place_of_the_variable() {
    let g = Graph::new();
    let w = g
        .variable(
            "w",
            g.constant(Value::from(arr2(&[[3.0f32, 4.0], [0.3, 0.4]]).into_dyn()))
                .unwrap(),
            true,
        )
        .unwrap();
    let clip = ferroflow_nn::regularizers::max_norm(&g, w, 1.0, &[1]).unwrap();
    let s = Session::new(&g);
    s.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    s.run_targets(&[clip], &[]).unwrap();
    // Row norms 5 and 0.5: the first row is scaled to norm 1, the second is left alone.
    let v = s.variable_value(w).unwrap().to_f64_vec();
    for (a, b) in v.iter().zip([0.6, 0.8, 0.3, 0.4]) {
        assert!((a - b).abs() < 1e-6, "{v:?}");
    }
}

/// `conv2d` layers: TF's variable and op names (`conv2d`, `conv2d_1`), glorot-uniform kernels over
/// the receptive field (limit √(6 / (3·3·2 + 3·3·4)) = 0.4714 for a [3, 3, 2, 4] kernel), reuse
/// rules; batch normalization over the channels of an NHWC output, whose moving variance takes the
/// unbiased batch variance as TF's fused kernel does.
#[test]
fn conv_layers_names_initializers_and_batch_norm_over_channels() {
    use ferroflow_nn::{conv2d, conv2d_with, flatten, max_pooling2d, Conv2dOptions};
    let g = Graph::new();
    g.set_random_seed(3);
    let x = g
        .placeholder(DType::F32, [None, Some(6), Some(6), Some(2)])
        .unwrap();
    let c1 = conv2d(
        &g,
        x,
        4,
        [3, 3],
        [1, 1],
        "same",
        Some(Activation::Relu),
        "conv2d",
    )
    .unwrap();
    let options = Conv2dOptions {
        use_bias: false,
        ..Default::default()
    };
    let c2 = conv2d_with(&g, c1, 3, [3, 3], options).unwrap();
    assert_eq!(g.op_name(c2.op()), "conv2d_1/Conv2D");
    // VALID (the layers' default): 6 - 3 + 1 = 4.
    assert_eq!(
        g.shape(c2).unwrap().dims().unwrap(),
        &[None, Some(4), Some(4), Some(3)]
    );
    let vars: Vec<Variable> = g.get_collection(keys::GLOBAL_VARIABLES, None).unwrap();
    let names: Vec<String> = vars.iter().map(|v| v.op_name(&g)).collect();
    assert_eq!(names, ["conv2d/kernel", "conv2d/bias", "conv2d_1/kernel"]);
    let e = conv2d(&g, c1, 4, [3, 3], [1, 1], "same", None, "conv2d").unwrap_err();
    assert!(
        e.to_string().contains("conv2d/kernel already exists"),
        "{e}"
    );
    let e = conv2d(&g, c1, 4, [3, 3], [1, 1], "full", None, "c3").unwrap_err();
    assert!(e.to_string().contains("padding 'full'"), "{e}");

    let bn = batch_normalization(&g, c2, true, BatchNormOptions::default()).unwrap();
    let pooled = max_pooling2d(&g, bn, [2, 2], [2, 2], "valid", None).unwrap();
    let flat = flatten(&g, pooled, None).unwrap();
    assert_eq!(g.shape(flat).unwrap().dims().unwrap(), &[None, Some(12)]);
    let updates: Vec<ferroflow_core::Operation> = g.get_collection(keys::UPDATE_OPS, None).unwrap();
    assert_eq!(updates.len(), 2);

    let sess = Session::new(&g);
    sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    let k = sess.variable_value(vars[0]).unwrap().to_f64_vec();
    let limit = (6.0f64 / (18.0 + 36.0)).sqrt();
    assert!(k.iter().all(|v| v.abs() <= limit) && k.iter().any(|v| v.abs() > 0.8 * limit));
    let data: Vec<f32> = (0..2 * 72)
        .map(|i| ((i * 37) % 17) as f32 / 8.0 - 1.0)
        .collect();
    let fx = feed(x, Value::from_f32(&[2, 6, 6, 2], data).unwrap());
    let out = sess.run(&[bn, c2], &[fx], &updates).unwrap();
    // Per channel over the 2·4·4 = 32 positions: the normalized values have mean 0 and biased
    // variance v / (v + ε) (ε = 1e-3).
    let (y, z) = (out[0].to_f64_vec(), out[1].to_f64_vec());
    let moving_var: Vec<Variable> = g
        .get_collection(
            keys::GLOBAL_VARIABLES,
            Some("batch_normalization/moving_variance"),
        )
        .unwrap();
    let mv = sess.variable_value(moving_var[0]).unwrap().to_f64_vec();
    for (ch, &mv) in mv.iter().enumerate() {
        let col = |v: &[f64]| v.iter().skip(ch).step_by(3).copied().collect::<Vec<f64>>();
        let (yc, zc) = (col(&y), col(&z));
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let var = |v: &[f64]| {
            let m = mean(v);
            v.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / v.len() as f64
        };
        let vz = var(&zc);
        assert!(mean(&yc).abs() < 1e-5, "channel {ch}");
        assert!((var(&yc) - vz / (vz + 1e-3)).abs() < 1e-4, "channel {ch}");
        // One update with momentum 0.99 from 1: 1 - 0.01·(1 - v·32/31).
        let want = 1.0 - 0.01 * (1.0 - vz * 32.0 / 31.0);
        assert!((mv - want).abs() < 1e-5, "channel {ch}: {mv} vs {want}");
    }
}
