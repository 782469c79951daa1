//! Random ops: the same seed gives the same stream, and the samples have the distribution's moments.

use crate::{DType, Graph, Session};

/// 20 000 samples: uniform on [-1, 3) has mean 1 and variance 16/12 = 4/3; a standard normal has
/// mean 0 and variance 1; a truncated normal (within two standard deviations) has variance
/// 0.7737413 and no sample beyond ±2. Each mean is within 5 standard errors (σ/√n ≈ 0.008-0.011).
/// Two sessions with the same graph seed draw the same values; two runs of one session draw new ones.
#[test]
fn seeded_samples_repeat_and_have_their_moments() {
    let g = Graph::new();
    let n = 20_000;
    let u = g
        .random_uniform(&[n], -1.0, 3.0, DType::F64, Some(3))
        .unwrap();
    let z = g
        .random_normal(&[n], 0.0, 1.0, DType::F64, Some(4))
        .unwrap();
    let t = g
        .truncated_normal(&[n], 0.0, 1.0, DType::F64, Some(5))
        .unwrap();
    let moments = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (
            m,
            v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64,
        )
    };
    let sess = Session::new(&g);
    let out = sess.run(&[u, z, t], &[], &[]).unwrap();
    let (uv, zv, tv) = (
        out[0].to_f64_vec(),
        out[1].to_f64_vec(),
        out[2].to_f64_vec(),
    );
    let (m, v) = moments(&uv);
    assert!(
        (m - 1.0).abs() < 0.06 && (v - 4.0 / 3.0).abs() < 0.05,
        "uniform {m} {v}"
    );
    assert!(uv.iter().all(|&x| (-1.0..3.0).contains(&x)));
    let (m, v) = moments(&zv);
    assert!(m.abs() < 0.04 && (v - 1.0).abs() < 0.04, "normal {m} {v}");
    let (m, v) = moments(&tv);
    assert!(
        m.abs() < 0.04 && (v - 0.773_741_3).abs() < 0.04,
        "truncated {m} {v}"
    );
    assert!(tv.iter().all(|x| x.abs() <= 2.0));
    let again = Session::new(&g).run(&[u], &[], &[]).unwrap();
    assert_eq!(again[0].to_f64_vec(), uv, "same seed, same stream");
    let next = sess.run(&[u], &[], &[]).unwrap();
    assert_ne!(next[0].to_f64_vec(), uv, "a second run draws new values");
}
