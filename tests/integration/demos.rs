//! Small, fast versions of the lecture's demos, asserting their claims as measured facts.

use ferroflow::nn::health::Finding;
use ferroflow_tools::demos::transfer;

#[test]
fn transfer_learning_reuses_frozen_lower_layers() {
    use ferroflow_tools::demos::mnist;
    use transfer::{report, Variant};
    let dir = std::env::temp_dir().join(format!("ff-demo-transfer-{}", std::process::id()));
    let cfg = transfer::Config {
        source: transfer::Source::Digits,
        pretrain: mnist::Config {
            hidden_units: 32,
            learning_rate: 0.001,
            batch_size: 50,
            max_epochs: 30,
            patience: 5,
            checkpoint_dir: dir.clone(),
            ..Default::default()
        },
        per_class: 20,
        validation: 200,
        epochs: 15,
        seeds: 2,
        batch_size: 10,
        quiet: true,
        ..Default::default()
    };
    let r = transfer::run(&cfg).unwrap();
    assert!(
        r.pretrained.test_accuracy > 0.9,
        "pretraining on 0-4 reaches {:.3}",
        r.pretrained.test_accuracy
    );
    assert!(r.frozen_bit_identical, "hidden1-3 must stay bit-identical");
    assert_eq!(r.sizes.0, 100);
    assert_eq!(r.rows.len(), 5);
    // Parameters with 64 inputs and 32 units a layer: hidden1 64·32+32 = 2080, hidden2-5 32·32+32 =
    // 1056 each, outputs 32·5+5 = 165.
    let params = |v: Variant| r.row(v).unwrap().runs[0].trained_params;
    assert_eq!(params(Variant::Scratch), 2080 + 4 * 1056 + 165);
    assert_eq!(
        params(Variant::Frozen),
        2 * 1056 + 165,
        "hidden4, hidden5, outputs"
    );
    assert_eq!(params(Variant::Cached), 2 * 1056 + 165);
    assert_eq!(params(Variant::Unfrozen), 3 * 1056 + 165, "hidden3 too");
    assert_eq!(
        params(Variant::MetaGraph),
        1056 + 165,
        "new_hidden4, new_outputs"
    );
    for row in &r.rows {
        assert_eq!(row.runs.len(), 2);
        for run in &row.runs {
            assert_eq!(run.validation.len(), 15);
            assert!((1..=15).contains(&run.best_epoch));
            assert!(
                run.test_accuracy > 0.5,
                "{}: {:.3} on 5 classes",
                row.variant.name(),
                run.test_accuracy
            );
        }
    }
    // Feeding hidden3's cached outputs trains the same layers on the same values as computing them
    // in every step: the accuracies agree up to rounding differences of the products.
    let acc = |v: Variant| r.row(v).unwrap().accuracy().0;
    assert!(
        (acc(Variant::Cached) - acc(Variant::Frozen)).abs() < 0.02,
        "cached {:.4} vs frozen {:.4}",
        acc(Variant::Cached),
        acc(Variant::Frozen)
    );
    assert!(report::table(&r).contains("reuse hidden1-3, frozen"));
    assert!(report::conclusion(&r).contains("caching hidden3's outputs"));
    let svg = dir.join("plot.svg");
    report::plot(&r, &svg).unwrap();
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn vanishing_gradients_and_their_remedies() {
    use ferroflow_tools::demos::vanishing;
    let cfg = vanishing::Config {
        epochs: 4,
        units: 64,
        quiet: true,
        ..Default::default()
    };
    let traces: Vec<vanishing::Trace> = vanishing::setups()
        .iter()
        .map(|s| vanishing::run_setup(s, &cfg).unwrap())
        .collect();
    let ratio = |t: &vanishing::Trace| t.grad_norms[0][0] / t.grad_norms[0][cfg.layers - 1];
    let acc = |t: &vanishing::Trace| *t.test_accuracy.last().unwrap();
    let (a, b, relu, elu, bn) = (&traces[0], &traces[1], &traces[2], &traces[3], &traces[4]);
    let ratio_b = b.grad_norms[0][0] / b.grad_norms[0][cfg.layers - 1];
    // Sigmoid + Xavier: each layer scales the gradient by about √fan·σ_w·max σ' = 0.25, so the
    // lowest layer gets a millionth of the top layer's gradient.
    assert!(ratio(b) < 1e-3, "sigmoid+Xavier ratio {}", ratio(b));
    // ReLU/ELU + He keep every layer's gradient within a small factor of the top layer's.
    for t in [relu, elu] {
        assert!(
            (0.1..10.0).contains(&ratio(t)),
            "{}: ratio {}",
            t.setup,
            ratio(t)
        );
    }
    // The remedies learn clearly better than the lecture's baseline in the same epochs.
    for t in [relu, elu, bn] {
        assert!(
            acc(t) > acc(a) + 0.1,
            "{} {:.3} vs baseline {:.3}",
            t.setup,
            acc(t),
            acc(a)
        );
    }
    // N(0, 1) saturates the sigmoids: activations pile up near 0 and 1 (std far above Xavier's).
    let sat = a.activations[0][cfg.layers - 1].1;
    let xav = b.activations[0][cfg.layers - 1].1;
    assert!(sat > 3.0 * xav, "saturation std {sat} vs {xav}");
    assert!(vanishing::table(&traces).contains("(d) sigmoid + N(0,1) + BN"));
    // The training-health monitor says so on its own: vanishing for sigmoid + Xavier (with the
    // ratio it measured), nothing for ELU + He + batch normalization.
    assert!(
        b.findings.iter().any(|f| matches!(f,
            Finding::Vanishing { lowest, ratio, .. } if lowest == "hidden1" && *ratio == ratio_b)),
        "{:?}",
        b.findings
    );
    let elu_bn = vanishing::Setup {
        name: "ELU + He + BN".into(),
        activation: ferroflow::nn::Activation::Elu,
        initializer: ferroflow::nn::Initializer::he_normal(),
        batch_norm: true,
    };
    let t = vanishing::run_setup(&elu_bn, &cfg).unwrap();
    assert_eq!(t.findings, [], "ELU + He + BN");
}

#[test]
fn clipping_prevents_divergence() {
    use ferroflow_tools::demos::clipping::{self, Clipping};
    let cfg = clipping::Config {
        epochs: 3,
        quiet: true,
        ..Default::default()
    };
    let none = clipping::run(Clipping::None, &cfg).unwrap();
    let norm = clipping::run(Clipping::GlobalNorm(1.0), &cfg).unwrap();
    let value = clipping::run(Clipping::Value(1.0), &cfg).unwrap();
    assert!(
        none.initial_grad_norm > 100.0,
        "the setup explodes: ‖g‖ = {}",
        none.initial_grad_norm
    );
    assert!(none.diverged(), "without clipping: {:?}", none.losses);
    for o in [&norm, &value] {
        assert!(!o.diverged(), "{:?}: {:?}", o.clipping, o.losses);
        assert!(o.losses.iter().all(|l| l.is_finite()));
    }
    assert!(
        value.test_accuracy > 0.5,
        "clip_by_value loop: {:.3}",
        value.test_accuracy
    );
    // The monitor sees the divergence without clipping, and nothing of the kind with it.
    let blows_up = |f: &Finding| matches!(f, Finding::Exploding { .. } | Finding::NonFinite { .. });
    assert!(none.findings.iter().any(blows_up), "{:?}", none.findings);
    for o in [&norm, &value] {
        assert!(
            !o.findings.iter().any(blows_up),
            "{:?}: {:?}",
            o.clipping,
            o.findings
        );
    }
}

#[test]
fn batch_norm_trains_faster_and_tolerates_a_10x_learning_rate() {
    use ferroflow_tools::demos::batch_norm;
    let cfg = batch_norm::Config {
        activation: ferroflow::nn::Activation::Relu,
        max_epochs: 4,
        quiet: true,
        ..Default::default()
    };
    let plain_big = batch_norm::run(false, 0.5, &cfg).unwrap();
    let bn_big = batch_norm::run(true, 0.5, &cfg).unwrap();
    let bn = batch_norm::run(true, 0.05, &cfg).unwrap();
    assert!(
        plain_big.epochs_to_target.is_none(),
        "ReLU without BN at lr 0.5: {:?}",
        plain_big.accuracy
    );
    assert!(
        bn_big.epochs_to_target.is_some_and(|e| e <= 3),
        "BN at lr 0.5: {:?}",
        bn_big.accuracy
    );
    assert!(
        bn.epochs_to_target.is_some_and(|e| e <= 3),
        "BN at lr 0.05: {:?}",
        bn.accuracy
    );
}

#[test]
fn mnist_0_4_with_early_stopping_on_the_bundled_subset() {
    use ferroflow_tools::demos::mnist;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let all = ferroflow::data::idx_dataset(
        &dir.join("t10k-first1000-images-idx3-ubyte.gz"),
        &dir.join("t10k-first1000-labels-idx1-ubyte.gz"),
    )
    .unwrap()
    .filter_classes(|l| l < 5, |l| l);
    let n = all.len();
    let pick = |r: std::ops::Range<usize>| all.select(&r.collect::<Vec<_>>());
    let data = (
        pick(0..n * 6 / 10),
        pick(n * 6 / 10..n * 8 / 10),
        pick(n * 8 / 10..n),
    );
    let ck = std::env::temp_dir().join(format!("ff-mnist-{}", std::process::id()));
    let cfg = mnist::Config {
        learning_rate: 0.001,
        batch_size: 50,
        max_epochs: 12,
        patience: 3,
        checkpoint_dir: ck.clone(),
        quiet: true,
        ..Default::default()
    };
    for bn in [false, true] {
        let o = mnist::run(bn, &data, &cfg).unwrap();
        assert!(
            o.best_epoch >= 1 && o.best_epoch <= o.epochs_run && o.epochs_run <= 12,
            "{o:?}"
        );
        assert!(
            o.test_accuracy > 0.85,
            "BN={bn}: {:.3} on {} test images",
            o.test_accuracy,
            data.2.len()
        );
    }
    std::fs::remove_dir_all(ck).unwrap();
}

#[test]
fn the_cnn_learns_digits_from_a_small_subset_and_saves_a_restorable_checkpoint() {
    use ferroflow_tools::demos::cnn;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let all = ferroflow::data::idx_dataset(
        &dir.join("t10k-first1000-images-idx3-ubyte.gz"),
        &dir.join("t10k-first1000-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let pick = |r: std::ops::Range<usize>| all.select(&r.collect::<Vec<_>>());
    let data = (pick(0..700), pick(700..800), pick(800..1000));
    let out = std::env::temp_dir().join(format!("ff-cnn-{}", std::process::id()));
    let cfg = cnn::Config {
        epochs: 4,
        batch_size: 50,
        learning_rate: 2e-3,
        decay_per_epoch: 0.7,
        out_dir: out.clone(),
        quiet: true,
        ..Default::default()
    };
    let o = cnn::run(42, &data, &cfg).unwrap();
    assert_eq!(o.validation_accuracy.len(), 4);
    // 700 training images, four epochs: far above chance (10%) on 200 unseen ones.
    assert!(o.test_accuracy > 0.75, "{o:?}");
    // The checkpoint restores into a fresh network, which then classifies the test images as the
    // trained one did (dropout is off outside training).
    let net = cnn::Cnn::new(7).unwrap();
    let sess = ferroflow::prelude::Session::new(&net.g);
    ferroflow::io::Saver::new(&net.g, ferroflow::io::VarList::All)
        .unwrap()
        .restore(&sess, &o.checkpoint)
        .unwrap();
    let restored = ferroflow_tools::demos::accuracy(&sess, net.x, net.logits, &data.2).unwrap();
    assert_eq!(restored, o.test_accuracy);
    let chart = out.join("chart.svg");
    cnn::plot(&chart, &[o]).unwrap();
    assert!(std::fs::read_to_string(&chart)
        .unwrap()
        .contains("validation accuracy"));
    std::fs::remove_dir_all(out).unwrap();
}
