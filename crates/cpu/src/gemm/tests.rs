//! The products' tests: against the naive loop, the crate's own driver bit for bit, the depth
//! split, and the vectors filled in place.

use super::*;
use crate::CpuConfig;

/// A context of `threads` threads with the default configuration.
fn ctx_of(threads: usize) -> Context<'static> {
    Context::serial().with_threads(threads)
}

/// Deterministic operands `a` (`m×k`) and `b` (`k×n`) in [-0.5, 0.5) for the products' tests.
pub(super) fn test_operands<T: Float>(m: usize, k: usize, n: usize) -> (Vec<T>, Vec<T>) {
    let a = (0..m * k)
        .map(|i| T::from_f64(((i * 7919) % 97) as f64 / 97.0 - 0.5))
        .collect();
    let b = (0..k * n)
        .map(|i| T::from_f64(((i * 104729) % 89) as f64 / 89.0 - 0.5))
        .collect();
    (a, b)
}

/// Banded multi-threaded products equal the naive triple loop, for every transpose combination,
/// a row count that does not divide evenly, and accumulation.
#[test]
fn banded_parallel_products_match_the_naive_loop() {
    let (m, k, n) = (101, 67, 83);
    let (a, b) = test_operands::<f64>(m, k, n);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        // Store a (m×k) as k×m when it is to be read transposed, and likewise b.
        let at: Vec<f64> = if ta {
            (0..k * m).map(|i| a[(i % m) * k + i / m]).collect()
        } else {
            a.clone()
        };
        let bt: Vec<f64> = if tb {
            (0..n * k).map(|i| b[(i % k) * n + i / k]).collect()
        } else {
            b.clone()
        };
        let (ar, ac) = if ta { (k, m) } else { (m, k) };
        let (br, bc) = if tb { (n, k) } else { (k, n) };
        for threads in [1, 2, 3] {
            let mut c = vec![1.0; m * n];
            gemm(
                &ctx_of(threads),
                &mut c,
                MatRef::row_major(&at, ar, ac, ta),
                MatRef::row_major(&bt, br, bc, tb),
                true,
            )
            .unwrap();
            // The same product written into a vector's spare capacity (no accumulation).
            let mut fresh: Vec<f64> = Vec::new();
            gemm_into_vec(
                &ctx_of(threads),
                &mut fresh,
                MatRef::row_major(&at, ar, ac, ta),
                MatRef::row_major(&bt, br, bc, tb),
            )
            .unwrap();
            assert_eq!(fresh.len(), m * n);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f64>();
                    assert!(
                        (c[i * n + j] - 1.0 - want).abs() < 1e-9,
                        "{ta} {tb} {threads} ({i},{j})"
                    );
                    assert!(
                        (fresh[i * n + j] - want).abs() < 1e-9,
                        "into_vec {ta} {tb} {threads} ({i},{j})"
                    );
                }
            }
        }
    }
}

/// The crate's own driver on one thread, for comparison.
fn crate_product<T: Float>(c: &mut [T], a: MatRef<'_, T>, b: MatRef<'_, T>, accumulate: bool) {
    // SAFETY: the shapes come from valid row-major views; `c` is m×n, initialized, ours.
    unsafe {
        super::crate_product(
            c.as_mut_ptr(),
            b.cols,
            a,
            b,
            accumulate,
            gemm::Parallelism::None,
        )
    };
}

/// Our driver around the crate's microkernels (workspaces from the context) gives the crate's own
/// results bit for bit: every transpose combination, with and without accumulation, over shapes
/// that take each of its paths (small products, deep products blocked in depth, packed and
/// unpacked operands, partial tiles, the crate's vector kernels), in f32 and f64, on one, two and
/// three threads: each part (a row band, or a column half below 64 rows) sums over the depth blocks
/// of the whole product. A deep product, summed in two halves on any number of threads, agrees
/// within rounding.
#[test]
fn products_equal_the_crates_bit_for_bit() {
    fn check<T: Float>(what: &str) {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            T::kernels().is_some(),
            std::is_x86_feature_detected!("fma"),
            "{what}: the crate's kernels are used wherever it has some"
        );
        let shapes = [
            (32, 784, 300),
            (64, 300, 10),
            (300, 64, 100),
            (256, 300, 784),
            (77, 1030, 45),
            (5, 9, 200),
            (130, 3, 70),
            (200, 2, 50),
            (1, 50, 70),
            (70, 50, 1),
            (20, 700, 400),
            (2, 2, 2),
            (40, 1000, 50),
        ];
        for (m, k, n) in shapes {
            let (a, b) = test_operands::<T>(m, k, n);
            let start: Vec<T> = (0..m * n)
                .map(|i| T::from_f64(((i * 31) % 13) as f64 / 13.0))
                .collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let (ar, ac) = if ta { (k, m) } else { (m, k) };
                let (br, bc) = if tb { (n, k) } else { (k, n) };
                let av = MatRef::row_major(&a, ar, ac, ta);
                let bv = MatRef::row_major(&b, br, bc, tb);
                for accumulate in [false, true] {
                    let mut want = start.clone();
                    crate_product(&mut want, av, bv, accumulate);
                    for threads in [1, 2, 3] {
                        let mut got = start.clone();
                        gemm(&ctx_of(threads), &mut got, av, bv, accumulate).unwrap();
                        if !splits_depth(m, k, n) {
                            assert!(
                                got == want,
                                "{what} {m}x{k}x{n} ta {ta} tb {tb} acc {accumulate}"
                            );
                        } else {
                            for (g, w) in got.iter().zip(&want) {
                                let (g, w) = (Float::to_f64(*g), Float::to_f64(*w));
                                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} {w}");
                            }
                        }
                    }
                }
            }
        }
    }
    check::<f32>("f32");
    check::<f64>("f64");
}

/// A deep product (the weight gradient `Xᵀ·dY` of a large batch, X stored k×m) is, on one, two or
/// three threads, the sum of its two half-depth products (each too small to split again), added
/// once. It agrees with the exact product, as the single sum of the crate does.
#[test]
fn deep_products_split_the_sum_in_two_halves() {
    let (m, k, n) = (40, 2 * DEPTH_SPLIT_MIN + 3, 30);
    assert!(splits_depth(m, k, n) && !splits_depth(m, k / 2 + 1, n));
    // X stored k×m (as many values as an m×k operand), dY k×n.
    let (x, dy) = test_operands::<f32>(m, k, n);
    let product_of = |rows: std::ops::Range<usize>, threads: usize| {
        let mut c = Vec::new();
        let (xs, ys) = (
            &x[rows.start * m..rows.end * m],
            &dy[rows.start * n..rows.end * n],
        );
        gemm_into_vec(
            &ctx_of(threads),
            &mut c,
            MatRef::row_major(xs, rows.len(), m, true),
            MatRef::row_major(ys, rows.len(), n, false),
        )
        .unwrap();
        c
    };
    let half = k / 2;
    let (first, second) = (product_of(0..half, 1), product_of(half..k, 1));
    let halves: Vec<f32> = first.iter().zip(&second).map(|(p, q)| p + q).collect();
    let mut one = vec![0.0f32; m * n];
    crate_product(
        &mut one,
        MatRef::row_major(&x, k, m, true),
        MatRef::row_major(&dy, k, n, false),
        false,
    );
    for threads in [1, 2, 3] {
        assert_eq!(product_of(0..k, threads), halves, "{threads} threads");
    }
    for i in 0..m {
        for j in 0..n {
            let exact: f64 = (0..k)
                .map(|r| x[r * m + i] as f64 * dy[r * n + j] as f64)
                .sum();
            for (what, v) in [("halves", halves[i * n + j]), ("one", one[i * n + j])] {
                assert!(
                    (v as f64 - exact).abs() < 1e-3,
                    "{what} ({i},{j}): {v} vs {exact}"
                );
            }
        }
    }
}

/// A weight gradient `Xᵀ·dY` (X stored k×m) with more than 128 columns, whose `X` the crate packs:
/// read in place after warming (the default) and packed (`gemm_in_place` off) give the same
/// bits as the crate's driver, with and without accumulation, over three depth blocks and a
/// partial tile (the 300 outputs of a row run as four tiles of 64 and one of 44).
#[test]
fn weight_gradients_read_x_in_place_with_the_crates_bits() {
    let (m, k, n) = (1200, 1100, 300);
    assert!(!splits_depth(m, k, n));
    let (x, dy) = test_operands::<f32>(m, k, n);
    let (xt, y) = (
        MatRef::row_major(&x, k, m, true),
        MatRef::row_major(&dy, k, n, false),
    );
    let start: Vec<f32> = (0..m * n).map(|i| (i % 7) as f32 / 7.0).collect();
    for accumulate in [false, true] {
        let mut want = start.clone();
        crate_product(&mut want, xt, y, accumulate);
        let mut results = Vec::new();
        for gemm_in_place in [false, true] {
            let config = CpuConfig {
                gemm_in_place,
                ..CpuConfig::default()
            };
            let mut got = start.clone();
            gemm(&Context::new(&config, 1), &mut got, xt, y, accumulate).unwrap();
            results.push(got);
        }
        assert!(results[0] == want, "packed, accumulate {accumulate}");
        assert!(results[1] == want, "in place, accumulate {accumulate}");
        let exact: f64 = (0..k)
            .map(|r| x[r * m + 7] as f64 * dy[r * n + 11] as f64)
            .sum();
        let base = if accumulate {
            start[7 * n + 11] as f64
        } else {
            0.0
        };
        assert!((results[1][7 * n + 11] as f64 - base - exact).abs() < 1e-3);
    }
}

/// `gemm_into_vec` refuses a vector that already holds elements, and an empty product (k = 0)
/// is all zeros.
#[test]
fn into_vec_checks_its_output_and_fills_empty_sums() {
    let a = [1.0f32; 6];
    let mut full = vec![0.0f32; 4];
    let err = gemm_into_vec(
        &ctx_of(1),
        &mut full,
        MatRef::row_major(&a, 2, 3, false),
        MatRef::row_major(&a, 3, 2, false),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Operands { kernel: "gemm", message } if message.contains("holds 4 elements")),
        "{err}"
    );
    let mut c: Vec<f32> = Vec::new();
    gemm_into_vec(
        &ctx_of(1),
        &mut c,
        MatRef::row_major(&a[..0], 2, 0, false),
        MatRef::row_major(&a[..0], 0, 3, false),
    )
    .unwrap();
    assert_eq!(c, vec![0.0; 6]);
}

/// Rows written straight into the vector's storage equal the same rows collected, on one and
/// three threads; a row shorter than the width is an error that leaves the vector empty.
#[test]
fn rows_into_vec_writes_every_row_or_fails() {
    let (rows, cols) = (7, 5);
    let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5).collect();
    let want: Vec<f32> = src.iter().map(|v| v * 2.0 + 1.0).collect();
    for threads in [1, 3] {
        let mut out = Vec::new();
        rows_into_vec(&ctx_of(threads), &mut out, rows, cols, |r| {
            src[r * cols..(r + 1) * cols].iter().map(|v| v * 2.0 + 1.0)
        })
        .unwrap();
        assert_eq!(out, want);
        let mut short = Vec::new();
        let err = rows_into_vec(&ctx_of(threads), &mut short, rows, cols, |r| {
            src[r * cols..(r + 1) * cols - usize::from(r == 4)]
                .iter()
                .copied()
        })
        .unwrap_err();
        assert!(
            matches!(&err, Error::Operands { kernel: "rows_into_vec", message } if message.contains("fewer than its 5")),
            "{err}"
        );
        assert!(short.is_empty());
    }
    let mut nonempty = vec![1.0f32];
    assert!(rows_into_vec(&ctx_of(1), &mut nonempty, 1, 1, |_| [2.0f32].into_iter()).is_err());
}

/// A tall product split into more row bands than threads (`gemm_tiles_per_thread`), the bands taken
/// by whichever thread is free, gives the bits of one thread: each band sums every element in the
/// same order.
#[test]
fn more_bands_than_threads_give_the_bits_of_one_thread() {
    let (m, k, n) = (1100, 300, 200);
    let (a, b) = test_operands::<f32>(m, k, n);
    let (av, bv) = (
        MatRef::row_major(&a, m, k, false),
        MatRef::row_major(&b, k, n, false),
    );
    let product = |config: &CpuConfig, threads: usize| {
        let mut c = vec![0.0f32; m * n];
        gemm(&Context::new(config, threads), &mut c, av, bv, false).unwrap();
        c
    };
    let one = product(&CpuConfig::default(), 1);
    for tiles in [1, 4, 100] {
        let config = CpuConfig {
            gemm_tiles_per_thread: tiles,
            ..CpuConfig::default()
        };
        assert!(product(&config, 2) == one, "{tiles} bands per thread");
        assert!(
            product(&config, 3) == one,
            "{tiles} bands per thread, 3 threads"
        );
    }
}
