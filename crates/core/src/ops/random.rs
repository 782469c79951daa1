//! Seeded random ops: uniform, normal and truncated normal (TF's `RandomUniform`,
//! `RandomStandardNormal`, `TruncatedNormal`), with TF's graph-seed/op-seed rule.

use super::tf::{TfAttr, TfNode};
use super::{expect_arity, InferResult, OpDef, OpKind};
use crate::dtype::{DType, Shape, TensorInfo};
use crate::error::{KernelError, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::Context;
use ndarray::{ArrayD, IxDyn};
use rand::Rng;
use rand_distr::{Distribution as _, StandardNormal};
use serde::{Deserialize, Serialize};

/// TF's `DEFAULT_GRAPH_SEED`, used when only an op seed is given.
pub const DEFAULT_GRAPH_SEED: u64 = 87654321;

/// The unit distribution a random op draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Distribution {
    /// Uniform on [0, 1).
    Uniform,
    /// Standard normal.
    Normal,
    /// Standard normal, redrawn while |x| > 2.
    TruncatedNormal,
}

/// Draws a fresh tensor on every run; the sequence is reproducible when a seed is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Random {
    pub dist: Distribution,
    pub dtype: DType,
    /// The static shape; ignored when the op has an input, whose run-time shape is used instead.
    pub shape: Vec<usize>,
    /// (graph seed, op seed), or `None` for a nondeterministic stream.
    pub seed: Option<(u64, u64)>,
}

impl Random {
    /// The seed of this op's random stream, combining graph and op seeds.
    pub fn stream_seed(&self) -> Option<u64> {
        self.seed.map(|(g, o)| {
            g.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ o.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ o
        })
    }

    /// Draws one tensor of `shape` from `rng`; an absurd shape (from a hand-made meta-graph, say) is an
    /// error.
    pub fn sample<R: Rng>(
        &self,
        ctx: &Context<'_>,
        rng: &mut R,
        shape: &[usize],
    ) -> crate::error::OpResult<Value> {
        let n = Value::checked_len(shape)?;
        // Draws in f64 and rounds to the dtype (`x as f32`, what a cast of the f64 draws gives),
        // straight into pooled storage of the dtype.
        let mut draw = || -> f64 {
            match self.dist {
                Distribution::Uniform => rng.gen::<f64>(),
                Distribution::Normal => StandardNormal.sample(rng),
                Distribution::TruncatedNormal => loop {
                    let x: f64 = StandardNormal.sample(rng);
                    if x.abs() <= 2.0 {
                        break x;
                    }
                },
            }
        };
        let dims = IxDyn(shape);
        Ok(match self.dtype {
            DType::F32 => {
                let mut data = ctx.try_vec::<f32>(n)?;
                data.extend((0..n).map(|_| draw() as f32));
                Value::F32(ArrayD::from_shape_vec(dims, data).map_err(KernelError::from)?)
            }
            DType::F64 => {
                let mut data = ctx.try_vec::<f64>(n)?;
                data.extend((0..n).map(|_| draw()));
                Value::F64(ArrayD::from_shape_vec(dims, data).map_err(KernelError::from)?)
            }
            d => {
                return Err(KernelError::DType(format!(
                    "random values must be float32 or float64, got {d}"
                )))
            }
        })
    }
}

impl OpDef for Random {
    fn type_name(&self) -> &'static str {
        match self.dist {
            Distribution::Uniform => "RandomUniform",
            Distribution::Normal => "RandomStandardNormal",
            Distribution::TruncatedNormal => "TruncatedNormal",
        }
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        // The shape is TF's input: the run-time one's when ferroflow has it as an input.
        if !inputs.is_empty() {
            return None;
        }
        let (seed, seed2) = self.seed.map_or((0, 0), |(g, o)| (g as i64, o as i64));
        TfNode::default()
            .with("dtype", TfAttr::Type(self.dtype))
            .with("T", TfAttr::Type(DType::I64))
            .with("seed", TfAttr::Int(seed))
            .with("seed2", TfAttr::Int(seed2))
            .with_const(
                "shape",
                self.shape.iter().map(|&d| d as i64).collect(),
                false,
            )
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        super::expect_float(
            &TensorInfo::new(self.dtype, Shape::scalar()),
            "a random op's dtype",
        )?;
        Value::checked_len(&self.shape).map_err(super::InferError::from)?;
        match inputs {
            [] => Ok(Some(TensorInfo::new(self.dtype, Shape::known(&self.shape)))),
            [like] => Ok(Some(TensorInfo::new(self.dtype, like.shape.clone()))),
            _ => {
                expect_arity(inputs, 1, self.type_name())?;
                Ok(None)
            }
        }
    }
    fn gradient(&self, ctx: &super::GradContext<'_>, _grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![None; ctx.inputs.len()])
    }
    fn kind(&self) -> OpKind {
        OpKind::Stateful
    }
}

impl Graph {
    /// TF's `get_seed`: the (graph seed, op seed) pair for a new random op.
    pub fn resolve_seed(&self, op_seed: Option<u64>) -> Option<(u64, u64)> {
        match (self.random_seed(), op_seed) {
            (Some(gs), Some(os)) => Some((gs, os)),
            (Some(gs), None) => Some((gs, self.len() as u64)),
            (None, Some(os)) => Some((DEFAULT_GRAPH_SEED, os)),
            (None, None) => None,
        }
    }

    /// Builds `unit_draw * scale + offset` under a `scope` name scope, the final op named as the scope
    /// (TF's layout: `random_uniform/RandomUniform`, `random_uniform/mul`, `random_uniform`).
    #[allow(clippy::too_many_arguments)]
    fn random_scaled(
        &self,
        dist: Distribution,
        scope: &str,
        shape: &[usize],
        dtype: DType,
        scale: f64,
        offset: f64,
        seed: Option<u64>,
    ) -> Result<Tensor> {
        let name = self.take_pending_name();
        let guard = self.name_scope(name.as_deref().unwrap_or(scope))?;
        let scope_name = guard.scope().to_string();
        let seed = self.resolve_seed(seed);
        let rnd = Random {
            dist,
            dtype,
            shape: shape.to_vec(),
            seed,
        };
        let type_name = rnd.type_name();
        let unit = self.add_node(rnd.into(), &[], None, type_name)?;
        let scale = self.scalar(dtype, scale)?;
        let scaled = self.mul(unit, scale)?;
        let offset = self.scalar(dtype, offset)?;
        let out = self.add_node(
            super::binary::Binary {
                kind: super::binary::BinaryKind::Add,
            }
            .into(),
            &[scaled, offset],
            Some(&scope_name),
            "add",
        )?;
        drop(guard);
        Ok(out)
    }

    /// U[0, 1) with the run-time shape of `like` (for dropout masks over a batch of unknown size).
    pub fn random_uniform_like(
        &self,
        like: impl Into<Tensor>,
        seed: Option<u64>,
    ) -> Result<Tensor> {
        let like = like.into();
        let dtype = self.dtype(like)?;
        let seed = self.resolve_seed(seed);
        self.add_node(
            Random {
                dist: Distribution::Uniform,
                dtype,
                shape: vec![],
                seed,
            }
            .into(),
            &[like],
            None,
            "random_uniform",
        )
    }

    /// `tf.random_uniform(shape, minval, maxval, dtype, seed)`: U[minval, maxval).
    pub fn random_uniform(
        &self,
        shape: &[usize],
        minval: f64,
        maxval: f64,
        dtype: DType,
        seed: Option<u64>,
    ) -> Result<Tensor> {
        self.random_scaled(
            Distribution::Uniform,
            "random_uniform",
            shape,
            dtype,
            maxval - minval,
            minval,
            seed,
        )
    }

    /// `tf.random_normal(shape, mean, stddev, dtype, seed)`.
    pub fn random_normal(
        &self,
        shape: &[usize],
        mean: f64,
        stddev: f64,
        dtype: DType,
        seed: Option<u64>,
    ) -> Result<Tensor> {
        self.random_scaled(
            Distribution::Normal,
            "random_normal",
            shape,
            dtype,
            stddev,
            mean,
            seed,
        )
    }

    /// `tf.truncated_normal(shape, mean, stddev, dtype, seed)`: draws beyond 2 stddev are redrawn.
    pub fn truncated_normal(
        &self,
        shape: &[usize],
        mean: f64,
        stddev: f64,
        dtype: DType,
        seed: Option<u64>,
    ) -> Result<Tensor> {
        self.random_scaled(
            Distribution::TruncatedNormal,
            "truncated_normal",
            shape,
            dtype,
            stddev,
            mean,
            seed,
        )
    }
}

#[cfg(test)]
#[path = "random_tests.rs"]
mod tests;
