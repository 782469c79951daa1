//! Vector instruction sets chosen at run time for the elementwise loops.
//!
//! The default x86-64 target compiles loops for SSE2 (4 f32 lanes). [`vectorized_with`] runs a closure
//! inside a function compiled with AVX-512 (16 lanes) or AVX2 enabled, whichever the CPU has, so a
//! portable binary gets the wide loops where they exist. The closure and everything it calls must be
//! inlined into that function for its loops to be compiled wide: callers pass closures marked
//! `#[inline(always)]` (allowed on a closure in argument position) and call `#[inline(always)]`
//! functions inside.
//!
//! Results do not depend on the instruction set: Rust never contracts `a * b + c` into a fused
//! multiply-add, and the loops are elementwise or keep their summation order, so every lane computes
//! exactly what the scalar code computes (tested in `vectorized_loops_equal_the_baseline`).
//!
//! [`crate::CpuConfig::simd`] caps the choice, for benchmarking and tests.

/// An instruction set the loops can be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// The target's default (SSE2 on x86-64).
    Baseline,
    /// AVX2 with FMA (8 f32 lanes).
    Avx2,
    /// AVX-512 F/VL/DQ/BW (16 f32 lanes).
    Avx512,
}

/// The widest instruction set this CPU supports.
pub fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        // The scalar extensions both compiled variants also enable.
        let scalar = std::is_x86_feature_detected!("bmi1")
            && std::is_x86_feature_detected!("bmi2")
            && std::is_x86_feature_detected!("lzcnt")
            && std::is_x86_feature_detected!("popcnt");
        if !scalar {
            return Isa::Baseline;
        }
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
        {
            return Isa::Avx512;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Baseline
}

/// [`detected`], computed once.
#[inline(always)]
pub(crate) fn detected_once() -> Isa {
    static DETECTED: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(detected)
}

/// Runs `f` compiled for `isa`; one the CPU lacks falls back to the widest it has below it. `f`
/// should be an `#[inline(always)]` closure whose loops call only inlined code (see the module docs;
/// kernels call it through [`crate::Context::vectorized`]).
#[inline(always)]
pub fn vectorized_with<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512 && detected_at_least(Isa::Avx512) {
            // SAFETY: the CPU has every feature `x86::avx512` enables (checked just above).
            return unsafe { x86::avx512(f) };
        }
        if isa >= Isa::Avx2 && detected_at_least(Isa::Avx2) {
            // SAFETY: the CPU has every feature `x86::avx2` enables (checked just above).
            return unsafe { x86::avx2(f) };
        }
    }
    let _ = isa;
    f()
}

/// Whether the CPU supports `isa` (cached).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn detected_at_least(isa: Isa) -> bool {
    detected_once() >= isa
}

/// Returns `f` itself: lets a closure bound with `let` carry `#[inline(always)]` (attributes on a
/// closure are allowed in argument position only).
#[inline(always)]
pub fn inlined<F>(f: F) -> F {
    f
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(
        enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,avx,fma,bmi1,bmi2,lzcnt,popcnt"
    )]
    pub unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    #[target_feature(enable = "avx2,avx,fma,bmi1,bmi2,lzcnt,popcnt")]
    pub unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::{exp_f32, exp_m1_f32};

    /// Every instruction set this CPU has computes the same bits as the baseline, over values that
    /// cover exp's clamps, NaN, infinities, zeros and subnormals.
    #[test]
    fn vectorized_loops_equal_the_baseline() {
        let mut x: Vec<f32> = (0..5000)
            .map(|i| ((i as f32) * 0.731).sin() * (i as f32 * 0.05))
            .collect();
        x.extend([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            1e-40,
            88.7,
            88.8,
            -87.2,
            -87.4,
            -200.0,
        ]);
        let run = |isa: Isa| {
            vectorized_with(
                isa,
                #[inline(always)]
                || {
                    let mut out: Vec<Vec<u32>> = Vec::new();
                    out.push(x.iter().map(|&v| exp_f32(v).to_bits()).collect());
                    out.push(x.iter().map(|&v| exp_m1_f32(v).to_bits()).collect());
                    out.push(
                        x.iter()
                            .map(|&v| {
                                let w = v * 1.5 - 0.25;
                                ((w * w + 1.0).sqrt() / (v.abs() + 1e-8)).to_bits()
                            })
                            .collect(),
                    );
                    out.push(
                        x.iter()
                            .map(|&v| (if v > 0.0 { v } else { 0.5 * v }).to_bits())
                            .collect(),
                    );
                    out
                },
            )
        };
        let base = run(Isa::Baseline);
        for isa in [Isa::Avx2, Isa::Avx512] {
            if detected() >= isa {
                assert_eq!(run(isa), base, "{isa:?}");
            }
        }
        // The loop did compute something: exp(0) = 1.
        let zero = x.iter().position(|&v| v == 0.0).unwrap();
        assert_eq!(f32::from_bits(base[0][zero]), 1.0);
    }

    #[test]
    fn the_choice_never_exceeds_the_cpu() {
        let ctx = crate::Context::serial();
        assert!(ctx.isa() <= detected());
        let capped = crate::CpuConfig {
            simd: Isa::Baseline,
            ..Default::default()
        };
        assert_eq!(crate::Context::new(&capped, 1).isa(), Isa::Baseline);
    }
}
