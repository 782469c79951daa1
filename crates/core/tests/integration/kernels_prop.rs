//! Each op's kernel against a naive reference (plain loops over row-major indices) on random shapes.

use ferroflow_core::{DType, Graph, Session, Shape, Tensor, Value};
use proptest::prelude::*;

fn run(g: &Graph, t: Tensor) -> Value {
    Session::new(g).run_one(t, &[]).unwrap()
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

/// Naive numpy broadcasting: the element of `data` (of `shape`) that lands at `out_idx`.
fn bcast_at(data: &[f64], shape: &[usize], out_idx: &[usize]) -> f64 {
    let off = out_idx.len() - shape.len();
    let st = strides(shape);
    let mut flat = 0;
    for (d, &s) in shape.iter().enumerate() {
        let i = if s == 1 { 0 } else { out_idx[d + off] };
        flat += i * st[d];
    }
    data[flat]
}

fn arb_tensor(max_rank: usize) -> impl Strategy<Value = (Vec<usize>, Vec<f64>)> {
    proptest::collection::vec(1usize..4, 0..=max_rank).prop_flat_map(|shape| {
        let n = shape.iter().product::<usize>();
        (Just(shape), proptest::collection::vec(-3.0f64..3.0, n))
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + b.abs()) || (a.is_nan() && b.is_nan())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn broadcasting_binary_ops((sa, da) in arb_tensor(3), mask in proptest::collection::vec(any::<bool>(), 3), db in proptest::collection::vec(0.5f64..3.0, 27)) {
        // y's shape: a suffix of x's shape with some dimensions set to 1.
        let sb: Vec<usize> = sa.iter().rev().zip(&mask).map(|(&d, &m)| if m { 1 } else { d }).collect::<Vec<_>>().into_iter().rev().collect();
        let nb: usize = sb.iter().product();
        let db = &db[..nb];
        let g = Graph::new();
        let x = g.constant(Value::from_f64(&sa, da.clone()).unwrap()).unwrap();
        let y = g.constant(Value::from_f64(&sb, db.to_vec()).unwrap()).unwrap();
        type Case = (Tensor, fn(f64, f64) -> f64);
        let cases: Vec<Case> = vec![
            (g.add(x, y).unwrap(), |a, b| a + b),
            (g.sub(x, y).unwrap(), |a, b| a - b),
            (g.mul(x, y).unwrap(), |a, b| a * b),
            (g.div(x, y).unwrap(), |a, b| a / b),
            (g.maximum(x, y).unwrap(), f64::max),
            (g.minimum(x, y).unwrap(), f64::min),
            (g.pow(y, x).unwrap(), |a, b| b.powf(a)),
            (g.squared_difference(x, y).unwrap(), |a, b| (a - b) * (a - b)),
        ];
        for (t, f) in cases {
            let out = run(&g, t);
            prop_assert_eq!(out.shape(), &sa[..]);
            for (i, v) in out.to_f64_vec().iter().enumerate() {
                let idx = unravel(i, &sa);
                let want = f(bcast_at(&da, &sa, &idx), bcast_at(db, &sb, &idx));
                prop_assert!(close(*v, want), "{} at {:?}: {} vs {}", g.op_type(t), idx, v, want);
            }
        }
        let gt = run(&g, g.greater(x, y).unwrap());
        for (i, v) in gt.to_f64_vec().iter().enumerate() {
            let idx = unravel(i, &sa);
            prop_assert_eq!(*v == 1.0, bcast_at(&da, &sa, &idx) > bcast_at(db, &sb, &idx));
        }
    }

    #[test]
    fn unary_ops((shape, data) in arb_tensor(3)) {
        let g = Graph::new();
        let x = g.constant(Value::from_f64(&shape, data.clone()).unwrap()).unwrap();
        let (a, s) = (1.673_263_242_354_377_3f64, 1.050_700_987_355_480_5f64);
        type Case = (Tensor, fn(f64) -> f64);
        let cases: Vec<Case> = vec![
            (g.neg(x).unwrap(), |v| -v),
            (g.square(x).unwrap(), |v| v * v),
            (g.exp(x).unwrap(), f64::exp),
            (g.abs(x).unwrap(), f64::abs),
            (g.sigmoid(x).unwrap(), |v| 1.0 / (1.0 + (-v).exp())),
            (g.tanh(x).unwrap(), f64::tanh),
            (g.relu(x).unwrap(), |v| v.max(0.0)),
            (g.relu6(g.mul(x, g.scalar(DType::F64, 3.0).unwrap()).unwrap()).unwrap(), |v| (3.0 * v).clamp(0.0, 6.0)),
            (g.leaky_relu_default(x).unwrap(), |v| if v > 0.0 { v } else { 0.2 * v }),
            (g.elu(x).unwrap(), |v| if v > 0.0 { v } else { v.exp() - 1.0 }),
            (g.softplus(x).unwrap(), |v| (1.0 + v.exp()).ln()),
            (g.sign(x).unwrap(), |v| if v > 0.0 { 1.0 } else if v < 0.0 { -1.0 } else { 0.0 }),
        ];
        for (t, f) in cases {
            let out = run(&g, t).to_f64_vec();
            for (o, &d) in out.iter().zip(&data) {
                let want = f(d);
                prop_assert!((o - want).abs() <= 1e-12 * (1.0 + want.abs()), "{}: {} vs {}", g.op_type(t), o, want);
            }
        }
        let selu = run(&g, g.selu(x).unwrap()).to_f64_vec();
        for (o, &d) in selu.iter().zip(&data) {
            let want = if d > 0.0 { s * d } else { s * a * (d.exp() - 1.0) };
            prop_assert!((o - want).abs() < 1e-12);
        }
    }

    #[test]
    fn matmul_against_triple_loop(m in 1usize..6, k in 1usize..6, n in 1usize..6, ta: bool, tb: bool, seed in proptest::collection::vec(-2.0f64..2.0, 50)) {
        let a: Vec<f64> = seed[..m * k].to_vec();
        let b: Vec<f64> = seed[25..25 + k * n].to_vec();
        // a is m×k and b is k×n logically; store transposed when the flag is set.
        let store = |d: &[f64], r: usize, c: usize, t: bool| -> (Vec<usize>, Vec<f64>) {
            if !t { return (vec![r, c], d.to_vec()); }
            let mut o = vec![0.0; r * c];
            for i in 0..r { for j in 0..c { o[j * r + i] = d[i * c + j]; } }
            (vec![c, r], o)
        };
        let (sa, va) = store(&a, m, k, ta);
        let (sb, vb) = store(&b, k, n, tb);
        let g = Graph::new();
        let x = g.constant(Value::from_f64(&sa, va).unwrap()).unwrap();
        let y = g.constant(Value::from_f64(&sb, vb).unwrap()).unwrap();
        let out = run(&g, g.matmul_t(x, y, ta, tb).unwrap());
        prop_assert_eq!(out.shape(), &[m, n]);
        let got = out.to_f64_vec();
        for i in 0..m { for j in 0..n {
            let want: f64 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            prop_assert!((got[i * n + j] - want).abs() < 1e-12);
        }}
    }

    #[test]
    fn reductions_against_loops((shape, data) in arb_tensor(3), axis_pick in any::<proptest::sample::Index>(), keep: bool) {
        prop_assume!(!shape.is_empty());
        let ax = axis_pick.index(shape.len());
        let g = Graph::new();
        let x = g.constant(Value::from_f64(&shape, data.clone()).unwrap()).unwrap();
        let axes = [ax as i64];
        let mut out_shape = shape.clone();
        out_shape[ax] = 1;
        let outs = [
            (run(&g, g.reduce_sum(x, Some(&axes), keep).unwrap()), 0usize),
            (run(&g, g.reduce_mean(x, Some(&axes), keep).unwrap()), 1),
            (run(&g, g.reduce_max(x, Some(&axes), keep).unwrap()), 2),
            (run(&g, g.reduce_min(x, Some(&axes), keep).unwrap()), 3),
        ];
        let n_out: usize = out_shape.iter().product();
        for (v, kind) in outs {
            let mut want_shape = out_shape.clone();
            if !keep { want_shape.remove(ax); }
            prop_assert_eq!(v.shape(), &want_shape[..]);
            let got = v.to_f64_vec();
            for (o, gv) in got.iter().enumerate().take(n_out) {
                let mut idx = unravel(o, &out_shape);
                let lane: Vec<f64> = (0..shape[ax]).map(|i| { idx[ax] = i; data[idx.iter().zip(strides(&shape)).map(|(a, b)| a * b).sum::<usize>()] }).collect();
                let want = match kind {
                    0 => lane.iter().sum::<f64>(),
                    1 => lane.iter().sum::<f64>() / lane.len() as f64,
                    2 => lane.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                    _ => lane.iter().cloned().fold(f64::INFINITY, f64::min),
                };
                prop_assert!((gv - want).abs() < 1e-12, "kind {}: {} vs {}", kind, gv, want);
            }
        }
        let total = run(&g, g.reduce_sum(x, None, false).unwrap()).scalar_value().unwrap();
        prop_assert!((total - data.iter().sum::<f64>()).abs() < 1e-9);
        let am = run(&g, g.argmax(x, ax as i64).unwrap());
        let mut s2 = shape.clone();
        s2.remove(ax);
        prop_assert_eq!(am.shape(), &s2[..]);
    }

    #[test]
    fn data_movement_ops((shape, data) in arb_tensor(3), rows in proptest::collection::vec(0i64..3, 0..5)) {
        prop_assume!(!shape.is_empty());
        let g = Graph::new();
        let x = g.constant(Value::from_f64(&shape, data.clone()).unwrap()).unwrap();
        // transpose (reverse axes)
        let perm: Vec<usize> = (0..shape.len()).rev().collect();
        let t = run(&g, g.transpose(x, &perm).unwrap());
        let tshape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        prop_assert_eq!(t.shape(), &tshape[..]);
        let tv = t.to_f64_vec();
        for (i, v) in tv.iter().enumerate() {
            let ti = unravel(i, &tshape);
            let src: Vec<usize> = (0..shape.len()).map(|d| ti[shape.len() - 1 - d]).collect();
            prop_assert_eq!(*v, data[src.iter().zip(strides(&shape)).map(|(a, b)| a * b).sum::<usize>()]);
        }
        // reshape to flat and back
        let flat = run(&g, g.reshape(x, &[-1]).unwrap());
        prop_assert_eq!(flat.to_f64_vec(), data.clone());
        // concat along 0 with itself
        let c = run(&g, g.concat(&[x, x], 0).unwrap()).to_f64_vec();
        prop_assert_eq!(&c[..data.len()], &data[..]);
        prop_assert_eq!(&c[data.len()..], &data[..]);
        // slice: drop the first row
        let mut begin = vec![0; shape.len()];
        begin[0] = shape[0] - 1;
        let sl = run(&g, g.slice(x, &begin, &vec![-1; shape.len()]).unwrap()).to_f64_vec();
        let row = data.len() / shape[0];
        prop_assert_eq!(&sl[..], &data[data.len() - row..]);
        // gather rows
        let idx: Vec<i64> = rows.iter().map(|&r| r.min(shape[0] as i64 - 1)).collect();
        let gi = g.constant(Value::from_i64(&[idx.len()], idx.clone()).unwrap()).unwrap();
        let ga = run(&g, g.gather(x, gi).unwrap()).to_f64_vec();
        for (k, &r) in idx.iter().enumerate() {
            prop_assert_eq!(&ga[k * row..(k + 1) * row], &data[r as usize * row..(r as usize + 1) * row]);
        }
        // one_hot and cast
        let oh = run(&g, g.one_hot(gi, 3).unwrap()).to_f64_vec();
        for (k, &r) in idx.iter().enumerate() {
            for j in 0..3 { prop_assert_eq!(oh[k * 3 + j], if j as i64 == r { 1.0 } else { 0.0 }); }
        }
        let ci = run(&g, g.cast(x, DType::I64).unwrap());
        prop_assert_eq!(ci.as_i64().unwrap().iter().copied().collect::<Vec<_>>(), data.iter().map(|v| *v as i64).collect::<Vec<_>>());
        // softmax rows sum to one
        let sm = run(&g, g.softmax(x).unwrap()).to_f64_vec();
        let last = *shape.last().unwrap();
        for chunk in sm.chunks(last) { prop_assert!((chunk.iter().sum::<f64>() - 1.0).abs() < 1e-12); }
        let _ = Shape::scalar();
    }
}

/// `L2Loss` over a long input sums fixed blocks split across threads: the same bits with one thread
/// and with two, and within f32 rounding of the exact sum.
#[test]
fn l2_loss_of_long_inputs_does_not_depend_on_the_thread_count() {
    use ferroflow_core::SessionOptions;
    let n = 100_003; // 12 blocks of 8192 and a partial one, above the parallel threshold
    let xs: Vec<f64> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f64 / 250.0 - 2.0)
        .collect();
    let g = Graph::new();
    let x = g.placeholder(DType::F32, [Some(n)]).unwrap();
    let l = g.l2_loss(x).unwrap();
    let feed = Value::from_f32(&[n], xs.iter().map(|&v| v as f32).collect()).unwrap();
    let run = |threads| {
        Session::with_options(&g, SessionOptions::with_threads(threads))
            .run_one(l, &[(x, feed.clone())])
            .unwrap()
            .to_f64_vec()[0]
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.to_bits(), two.to_bits());
    let exact: f64 = xs.iter().map(|v| (*v as f32 as f64).powi(2)).sum::<f64>() / 2.0;
    assert!((one - exact).abs() < 1e-6 * exact, "{one} vs {exact}");
}

/// Column sums (`reduce_sum` over the leading axis) from 256 rows on add each half of the rows in
/// order and then the two halves: the same bits with one, two and four threads, equal to that order
/// computed here; below 256 rows, the rows in order from the first.
#[test]
fn column_sums_add_fixed_halves_of_the_rows() {
    use ferroflow_core::SessionOptions;
    for rows in [200, 255, 256, 1001] {
        let cols = 300; // 256 × 300 and more: above the parallel threshold
        let xs: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 1013) as f32 / 97.0 - 5.0)
            .collect();
        let g = Graph::new();
        let x = g.placeholder(DType::F32, [Some(rows), Some(cols)]).unwrap();
        let s = g.reduce_sum(x, Some(&[0]), false).unwrap();
        let feed = Value::from_f32(&[rows, cols], xs.clone()).unwrap();
        let run = |threads| {
            Session::with_options(&g, SessionOptions::with_threads(threads))
                .run_one(s, &[(x, feed.clone())])
                .unwrap()
                .as_f32()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<u32>>()
        };
        let (one, two, four) = (run(1), run(2), run(4));
        assert_eq!(one, two, "{rows} rows");
        assert_eq!(one, four, "{rows} rows");
        let in_order =
            |r0: usize, r1: usize, j: usize| (r0..r1).fold(0.0f32, |acc, r| acc + xs[r * cols + j]);
        let want: Vec<u32> = (0..cols)
            .map(|j| {
                if rows < 256 {
                    in_order(0, rows, j)
                } else {
                    let mid = rows.div_ceil(2);
                    in_order(0, mid, j) + in_order(mid, rows, j)
                }
                .to_bits()
            })
            .collect();
        assert_eq!(one, want, "{rows} rows");
    }
}
