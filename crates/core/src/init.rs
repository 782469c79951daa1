//! Initializers with TF's exact formulas (zeros, constants, normal, truncated normal, uniform and
//! variance scaling: Glorot/Xavier, He, LeCun), building graph ops for `get_variable`.

use crate::dtype::DType;
use crate::error::Result;
use crate::graph::{Graph, Tensor};
use crate::value::Value;

/// Standard deviation of a standard normal truncated to ±2, TF's correction for truncated draws.
pub const TRUNCATED_NORMAL_STD: f64 = 0.879_625_661_034_239_8;

/// Which fan a variance-scaling initializer divides by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanMode {
    FanIn,
    FanOut,
    FanAvg,
}

/// The distribution of a variance-scaling initializer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VsDistribution {
    /// Truncated normal with TF's 0.8796 std correction (TF's "truncated_normal" and "normal").
    TruncatedNormal,
    /// Plain normal with std √s.
    UntruncatedNormal,
    /// Uniform on ±√(3s).
    Uniform,
}

/// How a variable's initial value is made.
#[derive(Clone, Debug, PartialEq)]
pub enum Initializer {
    Zeros,
    Ones,
    Constant(f64),
    /// A given value (its shape must match the variable's).
    Value(Value),
    /// `random_normal_initializer(mean, stddev)`; TF's default stddev is 1 (the lecture's bad baseline).
    RandomNormal {
        mean: f64,
        stddev: f64,
        seed: Option<u64>,
    },
    /// `truncated_normal_initializer(mean, stddev)`: draws beyond 2 stddev are redrawn.
    TruncatedNormal {
        mean: f64,
        stddev: f64,
        seed: Option<u64>,
    },
    /// `random_uniform_initializer(minval, maxval)`.
    RandomUniform {
        minval: f64,
        maxval: f64,
        seed: Option<u64>,
    },
    /// `VarianceScaling(scale, mode, distribution)`: s = scale / max(1, fan).
    VarianceScaling {
        scale: f64,
        mode: FanMode,
        distribution: VsDistribution,
        seed: Option<u64>,
    },
}

/// TF's `_compute_fans`: rank 0 → (1, 1); rank 1 → (n, n); rank 2 → (in, out); conv kernels
/// `[..., in, out]` multiply by the receptive field (the product of the leading dimensions).
pub fn compute_fans(shape: &[usize]) -> (f64, f64) {
    match shape.len() {
        0 => (1.0, 1.0),
        1 => (shape[0] as f64, shape[0] as f64),
        2 => (shape[0] as f64, shape[1] as f64),
        n => {
            let rf: usize = shape[..n - 2].iter().product();
            ((shape[n - 2] * rf) as f64, (shape[n - 1] * rf) as f64)
        }
    }
}

impl Initializer {
    /// Glorot/Xavier uniform: VS(1, fan_avg, uniform), limit √(6/(fan_in+fan_out)). TF's default.
    pub fn glorot_uniform() -> Self {
        Self::variance_scaling(1.0, FanMode::FanAvg, VsDistribution::Uniform)
    }
    /// Glorot/Xavier normal: VS(1, fan_avg, truncated_normal).
    pub fn glorot_normal() -> Self {
        Self::variance_scaling(1.0, FanMode::FanAvg, VsDistribution::TruncatedNormal)
    }
    /// He normal: VS(2, fan_in, truncated_normal).
    pub fn he_normal() -> Self {
        Self::variance_scaling(2.0, FanMode::FanIn, VsDistribution::TruncatedNormal)
    }
    /// He uniform: VS(2, fan_in, uniform).
    pub fn he_uniform() -> Self {
        Self::variance_scaling(2.0, FanMode::FanIn, VsDistribution::Uniform)
    }
    /// LeCun normal: VS(1, fan_in, truncated_normal) (the SELU companion).
    pub fn lecun_normal() -> Self {
        Self::variance_scaling(1.0, FanMode::FanIn, VsDistribution::TruncatedNormal)
    }
    /// LeCun uniform: VS(1, fan_in, uniform).
    pub fn lecun_uniform() -> Self {
        Self::variance_scaling(1.0, FanMode::FanIn, VsDistribution::Uniform)
    }
    /// `VarianceScaling(scale, mode, distribution)` without a seed.
    pub fn variance_scaling(scale: f64, mode: FanMode, distribution: VsDistribution) -> Self {
        Initializer::VarianceScaling {
            scale,
            mode,
            distribution,
            seed: None,
        }
    }
    /// `random_normal_initializer(mean=0, stddev=1)`, TF's defaults.
    pub fn random_normal() -> Self {
        Initializer::RandomNormal {
            mean: 0.0,
            stddev: 1.0,
            seed: None,
        }
    }
    /// Returns the initializer with an op seed (reproducible together with the graph seed).
    pub fn with_seed(self, s: u64) -> Self {
        match self {
            Initializer::RandomNormal { mean, stddev, .. } => Initializer::RandomNormal {
                mean,
                stddev,
                seed: Some(s),
            },
            Initializer::TruncatedNormal { mean, stddev, .. } => Initializer::TruncatedNormal {
                mean,
                stddev,
                seed: Some(s),
            },
            Initializer::RandomUniform { minval, maxval, .. } => Initializer::RandomUniform {
                minval,
                maxval,
                seed: Some(s),
            },
            Initializer::VarianceScaling {
                scale,
                mode,
                distribution,
                ..
            } => Initializer::VarianceScaling {
                scale,
                mode,
                distribution,
                seed: Some(s),
            },
            other => other,
        }
    }

    /// Builds the ops that produce an initial value of `shape` and `dtype` in the current scope.
    /// An absurd shape (overflowing, or more than `value::MAX_ELEMENTS`) is an error.
    pub fn build(&self, g: &Graph, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let refused = |m: crate::error::KernelError| crate::error::Error::InvalidArgument {
            node: g.current_name_scope(),
            op: "initializer".into(),
            message: m.to_string(),
        };
        Value::checked_len(shape).map_err(refused)?;
        let filled = |x: f64| Value::filled(dtype, shape, x).map_err(refused);
        match self {
            Initializer::Zeros => g.named("zeros").constant(filled(0.0)?),
            Initializer::Ones => g.named("ones").constant(filled(1.0)?),
            Initializer::Constant(c) => g.constant(filled(*c)?),
            Initializer::Value(v) => g.constant(v.cast(dtype)),
            Initializer::RandomNormal { mean, stddev, seed } => {
                g.random_normal(shape, *mean, *stddev, dtype, *seed)
            }
            Initializer::TruncatedNormal { mean, stddev, seed } => {
                g.truncated_normal(shape, *mean, *stddev, dtype, *seed)
            }
            Initializer::RandomUniform {
                minval,
                maxval,
                seed,
            } => g.random_uniform(shape, *minval, *maxval, dtype, *seed),
            Initializer::VarianceScaling {
                scale,
                mode,
                distribution,
                seed,
            } => {
                let (fan_in, fan_out) = compute_fans(shape);
                let n = match mode {
                    FanMode::FanIn => fan_in,
                    FanMode::FanOut => fan_out,
                    FanMode::FanAvg => (fan_in + fan_out) / 2.0,
                };
                let s = scale / n.max(1.0);
                match distribution {
                    VsDistribution::TruncatedNormal => g.truncated_normal(
                        shape,
                        0.0,
                        s.sqrt() / TRUNCATED_NORMAL_STD,
                        dtype,
                        *seed,
                    ),
                    VsDistribution::UntruncatedNormal => {
                        g.random_normal(shape, 0.0, s.sqrt(), dtype, *seed)
                    }
                    VsDistribution::Uniform => {
                        let limit = (3.0 * s).sqrt();
                        g.random_uniform(shape, -limit, limit, dtype, *seed)
                    }
                }
            }
        }
    }
}
