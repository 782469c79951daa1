//! Float element types and the float math the kernels vectorize: a branch-free `exp` and `expm1`
//! for f32 whose loops compile to vector instructions.

/// The float element types kernels are generic over (f32 and f64).
pub trait Float:
    num_traits::Float
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + Default
    + std::fmt::Debug
    + Send
    + Sync
    + crate::gemm::Microkernels
    + 'static
{
    /// Converts from f64 (rounding for f32).
    fn from_f64(x: f64) -> Self;
    /// Converts to f64.
    fn to_f64(self) -> f64;
    /// e^x; for f32 a branch-free polynomial that vectorizes (see [`exp_f32`]).
    fn exp_fast(self) -> Self;
    /// e^x - 1, accurate near 0; for f32 branch-free and vectorizable (see [`exp_m1_f32`]).
    fn exp_m1_fast(self) -> Self;
    /// The error function erf(x) = 2/√π ∫₀ˣ e^(-t²) dt (the `libm` crate's `erff` and `erf`).
    fn erf(self) -> Self;
}
impl Float for f32 {
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn exp_m1_fast(self) -> Self {
        exp_m1_f32(self)
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
}
impl Float for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn exp_fast(self) -> Self {
        self.exp()
    }
    fn exp_m1_fast(self) -> Self {
        self.exp_m1()
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
}

/// e^x for f32 without a libm call, so that loops over it vectorize: x = n·ln2 + r with |r| ≤ ln2/2
/// (ln2 split in two parts so r is exact), e^r by its degree-7 Taylor polynomial (truncation below
/// 2^-24 relative on that interval), 2^n put together in the exponent bits. Relative error about
/// 2e-7 (2 ulp); +inf above ln(f32::MAX) = 88.7228, 0 below -87.3 (where e^x is subnormal), NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-87.3, 88.722_8);
    // Round to nearest by adding and subtracting 1.5·2^23 (plain SSE2 arithmetic, unlike `round`,
    // which is a libm call on the baseline x86-64 target and would stop vectorization).
    const ROUND: f32 = 12_582_912.0;
    let n = (xc * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^n as 2^h·2^(n-h) with h = floor(n/2), so that both factors are normal numbers for every n in
    // [-126, 128] (a single 2^n would overflow the exponent field at 128 and be 0 at -127). All in
    // float and bit arithmetic: a float-to-int `as` cast saturates, which is scalar code.
    let h = (n * 0.5 - 0.25 + ROUND) - ROUND;
    // e + 127 lands in the low mantissa bits of e + 127 + 2^23; shifted up it is the exponent field.
    let pow2 = |e: f32| f32::from_bits(((e + (127.0 + 8_388_608.0)).to_bits() & 0x7f_ffff) << 23);
    let y = p * pow2(h) * pow2(n - h);
    if x > 88.722_8 {
        f32::INFINITY
    } else if x < -87.3 {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// e^x - 1 for f32, vectorizable: a degree-9 Taylor polynomial for |x| < 0.5 (no cancellation, error
/// below 1e-9 relative there), [`exp_f32`]` - 1` elsewhere.
#[inline(always)]
pub fn exp_m1_f32(x: f32) -> f32 {
    let mut p = 1.0 / 362_880.0;
    p = p * x + 1.0 / 40320.0;
    p = p * x + 1.0 / 5040.0;
    p = p * x + 1.0 / 720.0;
    p = p * x + 1.0 / 120.0;
    p = p * x + 1.0 / 24.0;
    p = p * x + 1.0 / 6.0;
    p = p * x + 0.5;
    let small = (p * x + 1.0) * x;
    let large = exp_f32(x) - 1.0;
    if x.abs() < 0.5 {
        small
    } else {
        large
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectorizable f32 exp and expm1 agree with the f64 library functions to 3e-7 relative
    /// over the whole range (and 1e-6 absolute where e^x - 1 is tiny), with the same special values.
    #[test]
    fn fast_exp_matches_the_library() {
        let mut x = -90.0f32;
        while x < 90.0 {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            if (-87.3..=88.722_8).contains(&x) {
                assert!(
                    ((got - want) / want).abs() < 3e-7,
                    "exp({x}) = {got}, want {want}"
                );
            } else if x < -87.3 {
                assert_eq!(got, 0.0, "exp({x})"); // e^x < 1.2e-38 (subnormal) flushed to 0
            } else {
                assert_eq!(got, f64::INFINITY, "exp({x})");
            }
            let want = (x as f64).exp_m1();
            let got = exp_m1_f32(x) as f64;
            if want.is_finite() && want.abs() < 3.4e38 {
                let tol = 3e-7 * want.abs() + 1e-12;
                assert!((got - want).abs() <= tol, "expm1({x}) = {got}, want {want}");
            }
            x += 0.001_37;
        }
        for x in [1e-8f32, -1e-8, 1e-20, 0.0, -0.0] {
            assert!((exp_m1_f32(x) - x).abs() <= x.abs() * 1e-6, "{x}");
        }
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_m1_f32(f32::NAN).is_nan());
        assert_eq!(exp_m1_f32(f32::NEG_INFINITY), -1.0);
        assert_eq!(exp_f32(0.0), 1.0);
    }
}
