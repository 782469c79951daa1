//! Session behaviour: pruning, plan caching, variables, control dependencies and every error a run
//! can report.

use ferroflow_core::{feed, DType, Error, Graph, Session, Shape, Value};
use ndarray::{arr1, arr2};

fn f32s(v: &Value) -> Vec<f32> {
    v.as_f32().unwrap().iter().copied().collect()
}

#[test]
fn runs_fetches_with_feeds_and_prunes_unneeded_placeholders() {
    let g = Graph::new();
    let x = g
        .named("x")
        .placeholder(DType::F32, [None, Some(2)])
        .unwrap();
    let unused = g
        .named("unused")
        .placeholder(DType::F32, Shape::unknown())
        .unwrap();
    let _other = g.add(unused, unused).unwrap();
    let two = g.constant(2.0f32).unwrap();
    let y = g.mul(x, two).unwrap();
    let sess = Session::new(&g);
    let out = sess
        .run_one(y, &[feed(x, arr2(&[[1.0f32, 2.0], [3.0, 4.0]]).into_dyn())])
        .unwrap();
    assert_eq!(f32s(&out), [2.0, 4.0, 6.0, 8.0]);
    // Same signature: one cached plan.
    sess.run_one(y, &[feed(x, arr2(&[[1.0f32, 1.0]]).into_dyn())])
        .unwrap();
    assert_eq!(sess.cached_plans(), 1);
    // Feeding an intermediate tensor replaces its computation.
    let z = g.add(y, two).unwrap();
    assert_eq!(
        f32s(
            &sess
                .run_one(z, &[feed(y, arr2(&[[10.0f32, 20.0]]).into_dyn())])
                .unwrap()
        ),
        [12.0, 22.0]
    );
}

#[test]
fn variables_initializers_and_assignments() {
    let g = Graph::new();
    let v = g
        .variable(
            "v",
            g.constant(arr1(&[1.0f32, 2.0]).into_dyn()).unwrap(),
            true,
        )
        .unwrap();
    let sess = Session::new(&g);
    let e = sess.run_one(v.value(), &[]).unwrap_err();
    assert_eq!(e, Error::UninitializedVariable { name: "v".into() });
    assert_eq!(e.to_string(), "Attempting to use uninitialized value v");
    let init = g.global_variables_initializer().unwrap();
    assert_eq!(g.op_name(init), "init");
    sess.run_targets(&[init], &[]).unwrap();
    let add = g
        .assign_add(v, g.constant(arr1(&[1.0f32, 1.0]).into_dyn()).unwrap())
        .unwrap();
    let sub = g
        .assign_sub(v, g.constant(arr1(&[0.5f32, 0.5]).into_dyn()).unwrap())
        .unwrap();
    assert_eq!(f32s(&sess.run_one(add, &[]).unwrap()), [2.0, 3.0]);
    assert_eq!(f32s(&sess.run_one(add, &[]).unwrap()), [3.0, 4.0]);
    assert_eq!(f32s(&sess.run_one(sub, &[]).unwrap()), [2.5, 3.5]);
    assert_eq!(f32s(&sess.variable_value(v).unwrap()), [2.5, 3.5]);
    // Another session over the same graph has its own values.
    let other = Session::new(&g);
    assert!(!other.is_initialized(v));
    let e = other.run_one(add, &[]).unwrap_err();
    assert!(matches!(e, Error::UninitializedVariable { .. }), "{e}");
}

#[test]
fn control_dependencies_order_effects() {
    let g = Graph::new();
    let v = g
        .variable("counter", g.constant(0.0f32).unwrap(), false)
        .unwrap();
    let sess = Session::new(&g);
    sess.run_targets(&[v.initializer()], &[]).unwrap();
    let inc = g.assign_add(v, g.constant(1.0f32).unwrap()).unwrap();
    let read_after = {
        let _c = g.control_dependencies(&[inc.op()]).unwrap();
        g.identity(v.value()).unwrap()
    };
    // The identity waits for the increment; its input is the read taken at the start of the run.
    sess.run_one(read_after, &[]).unwrap();
    assert_eq!(sess.variable_value(v).unwrap().scalar_value(), Some(1.0));
    let group = g.group(&[inc.op()]).unwrap();
    sess.run_targets(&[group], &[]).unwrap();
    assert_eq!(sess.variable_value(v).unwrap().scalar_value(), Some(2.0));
}

#[test]
fn one_run_reads_every_variable_before_any_assignment() {
    // w1 ← w1 + w2 and w2 ← w2 + w1 in one run use the old values of both (a train step's semantics).
    let g = Graph::new();
    let w1 = g.variable("w1", g.constant(1.0f32).unwrap(), true).unwrap();
    let w2 = g
        .variable("w2", g.constant(10.0f32).unwrap(), true)
        .unwrap();
    let a = g.assign_add(w1, w2.value()).unwrap();
    let b = g.assign_add(w2, w1.value()).unwrap();
    let sess = Session::new(&g);
    sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    sess.run_targets(&[a.op(), b.op()], &[]).unwrap();
    assert_eq!(sess.variable_value(w1).unwrap().scalar_value(), Some(11.0));
    assert_eq!(sess.variable_value(w2).unwrap().scalar_value(), Some(11.0));
}

#[test]
fn placeholder_with_default_is_used_unless_fed() {
    let g = Graph::new();
    let f = g.constant(false).unwrap();
    let training = g
        .named("training")
        .placeholder_with_default(f, Shape::scalar())
        .unwrap();
    let one = g.constant(1.0f32).unwrap();
    let two = g.constant(2.0f32).unwrap();
    let y = g.select(training, one, two).unwrap();
    let sess = Session::new(&g);
    assert_eq!(sess.run_one(y, &[]).unwrap().scalar_value(), Some(2.0));
    assert_eq!(
        sess.run_one(y, &[feed(training, true)])
            .unwrap()
            .scalar_value(),
        Some(1.0)
    );
}

#[test]
fn missing_feed_names_the_placeholder() {
    let g = Graph::new();
    let x = g
        .named("X")
        .placeholder(DType::F32, [None, Some(784)])
        .unwrap();
    let y = g.relu(x).unwrap();
    let e = Session::new(&g).run_one(y, &[]).unwrap_err();
    assert_eq!(
        e,
        Error::MissingFeed {
            placeholder: "X".into(),
            dtype: DType::F32,
            shape: Shape::new(vec![None, Some(784)])
        }
    );
    assert!(e.to_string().contains(
        "You must feed a value for placeholder tensor 'X' with dtype float32 and shape (?, 784)"
    ));
}

#[test]
fn wrong_feed_dtype_or_shape_names_both() {
    let g = Graph::new();
    let x = g
        .named("X")
        .placeholder(DType::F32, [None, Some(3)])
        .unwrap();
    let y = g.relu(x).unwrap();
    let sess = Session::new(&g);
    let e = sess
        .run_one(y, &[feed(x, arr2(&[[1.0f32, 2.0]]).into_dyn())])
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::FeedMismatch { .. }));
    assert!(
        msg.contains("[1, 2]") && msg.contains("(?, 3)") && msg.contains("X:0"),
        "{msg}"
    );
    let e = sess
        .run_one(y, &[feed(x, arr2(&[[1.0f64, 2.0, 3.0]]).into_dyn())])
        .unwrap_err();
    assert!(
        e.to_string().contains("float64") && e.to_string().contains("float32"),
        "{e}"
    );
}

#[test]
fn fetching_unknown_or_valueless_nodes_is_an_error() {
    let g = Graph::new();
    let other = Graph::new();
    for _ in 0..5 {
        other.constant(1.0f32).unwrap();
    }
    let foreign = other.constant(1.0f32).unwrap();
    let sess = Session::new(&g);
    assert!(matches!(
        sess.run_one(foreign, &[]),
        Err(Error::NotFound { .. })
    ));
    let noop = g.no_op().unwrap();
    let as_tensor = g.get_tensor_by_name("NoOp:0");
    assert!(as_tensor.is_err());
    sess.run_targets(&[noop], &[]).unwrap();
}

#[test]
fn cycles_are_reported_with_a_node_name() {
    let g = Graph::new();
    let a = g.named("a").constant(1.0f32).unwrap();
    let b = g.named("b").neg(a).unwrap();
    let c = g.named("c").neg(b).unwrap();
    g.add_control_input(b.op(), c.op()).unwrap();
    let e = Session::new(&g).run_one(c, &[]).unwrap_err();
    match e {
        Error::Cycle { node } => assert!(node == "b" || node == "c", "{node}"),
        other => panic!("expected a cycle error, got {other}"),
    }
}

#[test]
fn kernel_errors_name_the_node() {
    let g = Graph::new();
    let logits = g.placeholder(DType::F32, [None, Some(3)]).unwrap();
    let labels = g.placeholder(DType::I64, [None]).unwrap();
    let loss = g
        .named("xent")
        .sparse_softmax_cross_entropy_with_logits(labels, logits)
        .unwrap();
    let e = Session::new(&g)
        .run_one(
            loss,
            &[
                feed(logits, arr2(&[[1.0f32, 2.0, 3.0]]).into_dyn()),
                feed(labels, arr1(&[5i64]).into_dyn()),
            ],
        )
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("'xent'")
            && msg
                .contains("Received a label value of 5 which is outside the valid range of [0, 3)"),
        "{msg}"
    );
}

#[test]
fn seeded_random_ops_are_reproducible_and_advance() {
    let make = || {
        let g = Graph::new();
        g.set_random_seed(42);
        let r = g.random_normal(&[4], 0.0, 1.0, DType::F32, None).unwrap();
        (g, r)
    };
    let (g1, r1) = make();
    let (g2, r2) = make();
    let (s1, s2) = (Session::new(&g1), Session::new(&g2));
    let a1 = s1.run_one(r1, &[]).unwrap();
    let b1 = s1.run_one(r1, &[]).unwrap();
    assert_eq!(a1, s2.run_one(r2, &[]).unwrap());
    assert_eq!(b1, s2.run_one(r2, &[]).unwrap());
    assert_ne!(a1, b1, "successive runs draw new values");
}

#[test]
fn passes_fold_constants_and_share_subexpressions_without_changing_results() {
    let g = Graph::new();
    let x = g.placeholder(DType::F64, [Some(3)]).unwrap();
    let c = g
        .add(g.constant(2.0f64).unwrap(), g.constant(3.0f64).unwrap())
        .unwrap();
    let a = g.mul(g.exp(x).unwrap(), c).unwrap();
    let b = g.mul(g.exp(x).unwrap(), c).unwrap();
    let y = g.add(a, b).unwrap();
    let xv = Value::from(arr1(&[0.0f64, 1.0, -1.0]).into_dyn());
    let on = Session::new(&g).run_one(y, &[feed(x, xv.clone())]).unwrap();
    let off = Session::with_options(
        &g,
        ferroflow_core::SessionOptions {
            optimize: false,
            ..Default::default()
        },
    )
    .run_one(y, &[feed(x, xv)])
    .unwrap();
    assert_eq!(on, off);
    let want: Vec<f64> = [0.0f64, 1.0, -1.0].iter().map(|v| 10.0 * v.exp()).collect();
    for (o, w) in on.to_f64_vec().iter().zip(want) {
        assert!((o - w).abs() < 1e-12);
    }
}

#[test]
fn check_numerics_names_the_first_node_that_makes_a_nan() {
    // A deep net whose third layer takes the log of a negative number on purpose.
    let g = Graph::new();
    let x = g
        .named("X")
        .placeholder(DType::F64, [None, Some(2)])
        .unwrap();
    let w = g
        .constant(Value::from(
            arr2(&[[0.5f64, -0.25], [0.125, 1.0]]).into_dyn(),
        ))
        .unwrap();
    let h1 = g.named("h1").tanh(g.matmul(x, w).unwrap()).unwrap();
    let h2 = g.named("h2").sigmoid(g.matmul(h1, w).unwrap()).unwrap();
    let shifted = g.sub(h2, g.scalar(DType::F64, 2.0).unwrap()).unwrap();
    let bad = g.named("bad_log").log(shifted).unwrap();
    let h4 = g.named("h4").relu(g.matmul(bad, w).unwrap()).unwrap();
    let loss = g.named("loss").reduce_mean(h4, None, false).unwrap();
    let xv = feed(x, arr2(&[[1.0f64, 2.0], [3.0, -1.0]]).into_dyn());
    // Without the option the NaN flows silently to the loss.
    let plain = Session::new(&g)
        .run_one(loss, std::slice::from_ref(&xv))
        .unwrap();
    assert!(plain.scalar_value().unwrap().is_nan());
    let checked = Session::with_options(
        &g,
        ferroflow_core::SessionOptions {
            check_numerics: true,
            ..Default::default()
        },
    );
    let e = checked
        .run_one(loss, std::slice::from_ref(&xv))
        .unwrap_err();
    assert_eq!(
        e,
        Error::NonFinite {
            node: "bad_log".into(),
            op: "Log".into(),
            what: "NaN".into(),
            message: "check_numerics".into()
        }
    );
    // The op form, and add_check_numerics_ops for the whole graph.
    let c = g.check_numerics(bad, "after the log").unwrap();
    let e = Session::new(&g)
        .run_one(c, std::slice::from_ref(&xv))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("after the log: Tensor had NaN values")
            && e.to_string().contains("CheckNumerics"),
        "{e}"
    );
    let all = g.add_check_numerics_ops().unwrap();
    let e = Session::new(&g).run_targets(&[all], &[xv]).unwrap_err();
    assert!(e.to_string().contains("Tensor had NaN values"), "{e}");
}

#[test]
fn concurrent_runs_from_two_threads_match_a_serial_run() {
    // Two threads each run 500 steps of commuting updates (w += 1, w += 2) on one session; the result
    // must equal the serial sum, and no run may deadlock or lose an update.
    let g = Graph::new();
    let w = g.variable("w", g.constant(0.0f64).unwrap(), true).unwrap();
    let inc1 = g.assign_add(w, g.constant(1.0f64).unwrap()).unwrap();
    let inc2 = g.assign_add(w, g.constant(2.0f64).unwrap()).unwrap();
    let sess = std::sync::Arc::new(Session::new(&g));
    sess.run_targets(&[w.initializer()], &[]).unwrap();
    let handles: Vec<_> = [inc1, inc2]
        .into_iter()
        .map(|op| {
            let s = sess.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    s.run_targets(&[op.op()], &[]).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(sess.variable_value(w).unwrap().scalar_value(), Some(1500.0));
}

#[test]
fn absurd_shapes_are_errors_not_aborts() {
    let g = Graph::new();
    assert!(g
        .random_uniform(&[1 << 40, 1 << 40], 0.0, 1.0, DType::F32, None)
        .is_err());
    assert!(g
        .get_variable("huge", &[usize::MAX, 2], DType::F32)
        .is_err());
    let e = g
        .get_variable("big", &[1 << 20, 1 << 20], DType::F32)
        .unwrap_err();
    assert!(e.to_string().contains("more than"), "{e}");
    let e = Value::filled(DType::F32, &[1 << 40, 1 << 40], 0.0).unwrap_err();
    assert!(e.to_string().contains("more than"), "{e}");
}

/// Memory the kernel can hand out at once under heuristic overcommit (mode 0): RAM plus swap, in
/// bytes; `None` where another mode, or an unreadable /proc, makes a refusal unpredictable.
fn heuristic_overcommit_limit() -> Option<u64> {
    let mode = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").ok()?;
    if mode.trim() != "0" {
        return None;
    }
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| -> Option<u64> {
        info.lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((kib("MemTotal:")? + kib("SwapTotal:")?) * 1024)
}

#[test]
fn an_initializer_the_machine_cannot_hold_is_an_error() {
    // Zeros of 2^34 f32 (64 GiB) is a legal size; where the kernel refuses so large an allocation
    // outright, building the initial value is an error naming the initializer, not an abort.
    match heuristic_overcommit_limit() {
        Some(limit) if limit < 1 << 36 => {
            let g = Graph::new();
            let e = g
                .get_variable_with(
                    "w",
                    &[1 << 34],
                    DType::F32,
                    ferroflow_core::VarOptions::init(ferroflow_core::Initializer::Zeros),
                )
                .unwrap_err();
            assert!(e.to_string().contains("OOM when allocating"), "{e}");
        }
        _ => eprintln!("skipped: this machine may grant 64 GiB of address space"),
    }
}

#[test]
fn profile_counts_each_op_type() {
    let g = Graph::new();
    let x = g.placeholder(DType::F32, [None, Some(2)]).unwrap();
    let h = g
        .relu(
            g.matmul(
                x,
                g.constant(Value::filled(DType::F32, &[2, 2], 1.0).unwrap())
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
    let y = g.reduce_sum(g.relu(h).unwrap(), None, false).unwrap();
    let sess = Session::with_options(
        &g,
        ferroflow_core::SessionOptions {
            profile: true,
            optimize: false,
            ..Default::default()
        },
    );
    let xv = Value::filled(DType::F32, &[3, 2], 1.0).unwrap();
    for _ in 0..4 {
        sess.run_one(y, &[feed(x, xv.clone())]).unwrap();
    }
    let p = sess.profile();
    let calls = |t: &str| p.iter().find(|o| o.op_type == t).map(|o| o.calls);
    assert_eq!(calls("Relu"), Some(8));
    assert_eq!(calls("MatMul"), Some(4));
    assert_eq!(calls("Sum"), Some(4));
    assert!(p.iter().all(|o| !o.gradient));
    assert!(p.windows(2).all(|w| w[0].seconds >= w[1].seconds));
    sess.reset_profile();
    assert!(sess.profile().is_empty());
    // The backward pass has lines of its own: the forward MatMul and the gradient's dY·Wᵀ apart.
    let dx = g.gradients(&[y], &[x]).unwrap()[0].unwrap();
    sess.run(&[y, dx], &[feed(x, xv.clone())], &[]).unwrap();
    let p = sess.profile();
    let line = |t: &str, gradient: bool| {
        p.iter()
            .find(|o| o.op_type == t && o.gradient == gradient)
            .map(|o| o.calls)
    };
    assert_eq!(line("MatMul", false), Some(1));
    assert_eq!(line("MatMul", true), Some(1));
    assert_eq!(line("ReluGrad", true), Some(2));
    assert_eq!(line("ReluGrad", false), None);
    assert_eq!(line("Relu", false), Some(2));
    // Off by default.
    let quiet = Session::new(&g);
    quiet.run_one(y, &[feed(x, xv)]).unwrap();
    assert!(quiet.profile().is_empty());
}

/// Values produced by one run and reused as storage by the next never leak into results: alternating
/// plans of different sizes over one session (sharing its buffer pool), fetching intermediates that
/// the pool must then not hand out, and releasing the pool, all give the same numbers as fresh
/// sessions.
#[test]
fn pooled_storage_never_changes_results() {
    let g = Graph::new();
    let x = g
        .named("x")
        .placeholder(DType::F32, [None, Some(3)])
        .unwrap();
    let w = g
        .constant(arr2(&[[1.0f32, -2.0], [0.5, 1.5], [2.0, -1.0]]).into_dyn())
        .unwrap();
    let h = g.relu(g.matmul(x, w).unwrap()).unwrap();
    let s = g.reduce_sum(g.square(h).unwrap(), None, false).unwrap();
    let feeds = |rows: usize, k: f32| {
        let v: Vec<f32> = (0..rows * 3).map(|i| (i as f32 * 0.37 + k).sin()).collect();
        vec![feed(x, Value::from_f32(&[rows, 3], v).unwrap())]
    };
    let shared = Session::new(&g);
    for (i, rows) in [4usize, 100, 4, 1, 100, 7].into_iter().enumerate() {
        let f = feeds(rows, i as f32);
        let want = Session::new(&g).run(&[h, s], &f, &[]).unwrap();
        assert_eq!(shared.run(&[h, s], &f, &[]).unwrap(), want, "run {i}");
        assert_eq!(shared.run(&[s], &f, &[]).unwrap()[0], want[1], "run {i}");
        if i == 3 {
            shared.release_memory();
        }
    }
}

/// The pool of reusable storage stays bounded when kernels allocate by themselves (a transpose, a
/// concat) and when sizes change from run to run: what no kernel takes again is freed.
#[test]
fn pooled_storage_stays_bounded() {
    let g = Graph::new();
    let x = g
        .named("x")
        .placeholder(DType::F32, [None, Some(4)])
        .unwrap();
    let t = g.transpose(x, &[1, 0]).unwrap();
    let c = g.concat(&[x, x], 0).unwrap();
    let y = g
        .add(
            g.reduce_sum(g.square(t).unwrap(), None, false).unwrap(),
            g.reduce_sum(c, None, false).unwrap(),
        )
        .unwrap();
    let sess = Session::new(&g);
    let mut most = 0;
    for i in 0..300usize {
        let rows = 1 + i % 7;
        let v: Vec<f32> = (0..rows * 4).map(|k| k as f32 * 0.5).collect();
        sess.run_one(y, &[feed(x, Value::from_f32(&[rows, 4], v).unwrap())])
            .unwrap();
        most = most.max(sess.pooled_buffers());
    }
    assert!(most > 0, "nothing was pooled");
    assert!(most < 60, "the pool grew to {most} buffers");
    sess.release_memory();
    assert_eq!(sess.pooled_buffers(), 0);
}

/// A `Relu` that alone reads a float `AddV2` (a bias add) runs inside the add's step when the plan is
/// optimized, into a new buffer when the sum's left operand is still needed; and a bias add that
/// alone reads a product runs inside the product's step, its `Relu` with it. The values and
/// gradients are the same bits as with separate steps. A fetched sum keeps its own `Relu`.
#[test]
fn relu_after_a_bias_add_fuses_into_its_step() {
    let g = Graph::new();
    let x = g
        .named("x")
        .placeholder(DType::F32, [Some(70), Some(30)])
        .unwrap();
    let w = g
        .named("w")
        .placeholder(DType::F32, [Some(30), Some(20)])
        .unwrap();
    let b = g.named("b").placeholder(DType::F32, [Some(20)]).unwrap();
    let dying = g.add(g.matmul(x, w).unwrap(), b).unwrap();
    let kept = g.add(x, x).unwrap(); // x is read again below: not in place
    let h = g.relu(dying).unwrap();
    let k = g.relu(kept).unwrap();
    let loss = g
        .add(
            g.reduce_sum(g.mul(h, h).unwrap(), None, false).unwrap(),
            g.reduce_sum(g.mul(k, x).unwrap(), None, false).unwrap(),
        )
        .unwrap();
    let grads: Vec<_> = g
        .gradients(&[loss], &[x, w, b])
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let n = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 31) % 97) as f32 / 48.5 - 1.0)
            .collect()
    };
    let feeds = [
        feed(x, Value::from_f32(&[70, 30], n(2100, 1)).unwrap()),
        feed(w, Value::from_f32(&[30, 20], n(600, 2)).unwrap()),
        feed(b, Value::from_f32(&[20], n(20, 3)).unwrap()),
    ];
    let run = |optimize: bool, threads: usize, fetches: &[ferroflow_core::Tensor]| {
        let sess = Session::with_options(
            &g,
            ferroflow_core::SessionOptions {
                optimize,
                profile: true,
                ..ferroflow_core::SessionOptions::with_threads(threads)
            },
        );
        let out = sess.run(fetches, &feeds, &[]).unwrap();
        let p = sess.profile();
        let calls = |t: &str| {
            p.iter()
                .find(|o| o.op_type == t)
                .map_or((0, 0), |o| (o.calls, o.in_place))
        };
        let fused = [
            calls("AddV2+Relu"),
            calls("MatMul+AddV2+Relu"),
            calls("MatMul+AddV2"),
        ];
        (out, fused, calls("Relu").0)
    };
    let mut fetches = vec![h, k, loss];
    fetches.extend(&grads);
    for threads in [1, 2] {
        let (separate, fused, relus) = run(false, threads, &fetches);
        assert_eq!((fused, relus), ([(0, 0); 3], 2));
        let (together, fused, relus) = run(true, threads, &fetches);
        assert_eq!(
            (fused, relus),
            ([(1, 0), (1, 0), (0, 0)], 0),
            "{threads} threads"
        );
        assert_eq!(separate, together, "{threads} threads");
        assert!(f32s(&together[0]).iter().all(|&v| v >= 0.0));
        assert!(f32s(&together[0]).iter().any(|&v| v > 0.0));
        let (out, fused, relus) = run(true, threads, &[h, dying, k]);
        assert_eq!((fused, relus), ([(1, 0), (0, 0), (1, 0)], 1));
        assert_eq!(out[0], separate[0]);
        assert_eq!(out[2], separate[1]);
    }
}
