//! Ops as TensorFlow nodes, both ways. Each op says how it is written as a TF `NodeDef`
//! (`OpDef::tf_node`): the attributes TF's op of the same type takes, and the inputs TF takes as
//! tensors where ferroflow keeps attributes (a reshape's shape, a reduction's axes), to be added
//! as constants; ops without a TF op of the same meaning (ferroflow's gradient helpers, fused ops)
//! have none. [`op_from_tf`] is the way back, one function over TF's op types. The protobuf
//! encoding lives in `ferroflow-io` (`tf_graph`).

use super::bias::{BiasAdd, BiasAddGrad};
use super::binary::{Binary, BinaryKind};
use super::conv::pool::{Pool, PoolAttrs, PoolKind};
use super::conv::{Conv, ConvAttrs, ConvKind};
use super::indexing::Concat;
use super::matmul::MatMul;
use super::nn::{Softmax, SparseSoftmaxXent};
use super::random::{Distribution, Random};
use super::reduce::{ArgMax, Reduce, ReduceKind, Size};
use super::shape_ops::{Cast, ExpandDims, Reshape, Squeeze, Transpose};
use super::state::{
    Assign, AssignMode, Const, Identity, NoOp, Placeholder, StopGradient, VariableOp,
};
use super::unary::{Unary, UnaryKind};
use super::{Op, OpDef};
use crate::dtype::{DType, Shape, TensorInfo};
use crate::value::Value;

/// One attribute value of a TF `NodeDef`.
#[derive(Clone, Debug, PartialEq)]
pub enum TfAttr {
    Type(DType),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Ints(Vec<i64>),
    Shape(Shape),
    Tensor(Value),
}

/// What a node becomes in TF: its attributes, and constant inputs appended after its own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TfNode {
    pub attrs: Vec<(&'static str, TfAttr)>,
    /// Each constant's name under the node (`shape`, `reduction_indices`) and value.
    pub const_inputs: Vec<(&'static str, Value)>,
}

impl TfNode {
    /// A node whose only attribute is its element type `T`, that of input 0.
    pub fn typed(inputs: &[TensorInfo]) -> Option<Self> {
        Some(TfNode::default().with("T", TfAttr::Type(inputs.first()?.dtype)))
    }
    /// This node with one more attribute.
    pub fn with(mut self, name: &'static str, value: TfAttr) -> Self {
        self.attrs.push((name, value));
        self
    }
    /// This node with one more constant input (int64 values, a 1-D list or a scalar).
    pub fn with_const(
        mut self,
        name: &'static str,
        values: Vec<i64>,
        scalar: bool,
    ) -> Option<Self> {
        let shape: Vec<usize> = if scalar { vec![] } else { vec![values.len()] };
        self.const_inputs
            .push((name, Value::from_i64(&shape, values).ok()?));
        Some(self)
    }
}

/// TF's 4-D `strides`/`ksize`/`dilations` list of an NHWC op from its two spatial values.
pub(crate) fn nhwc(spatial: [usize; 2]) -> TfAttr {
    TfAttr::Ints(vec![1, spatial[0] as i64, spatial[1] as i64, 1])
}

/// The most elements of a value that a graph file describes without holding them (a `Fill`, a
/// constant with one value for its whole shape): 2^26, 256 MiB of float32, so that a few bytes of a
/// file cannot ask for gigabytes.
pub const MAX_FILLED: usize = 1 << 26;

/// A TF node's attributes by name, as ferroflow reads them.
pub type TfAttrs = std::collections::BTreeMap<String, TfAttr>;

/// The ferroflow op of a TF node of type `op` with `attrs`: the inverse of [`OpDef::tf_node`].
/// `consts` holds, per input, its value when the input is a constant. Returns the op and how many
/// leading inputs it takes as graph inputs (the others, a reshape's shape or a reduction's axes,
/// are constants it reads as attributes); `Err` says why the node is not supported.
pub fn op_from_tf(
    op: &str,
    attrs: &TfAttrs,
    consts: &[Option<&Value>],
) -> std::result::Result<(Op, usize), String> {
    let n = consts.len();
    let int = |k: usize| -> std::result::Result<Vec<i64>, String> {
        match consts.get(k).copied().flatten() {
            Some(Value::I64(a)) => Ok(a.iter().copied().collect()),
            _ => Err(format!("input {k} must be an integer constant")),
        }
    };
    let ty = |name: &str| match attrs.get(name) {
        Some(TfAttr::Type(d)) => Ok(*d),
        _ => Err(format!("attribute {name} must be a dtype ferroflow has")),
    };
    let ints = |name: &str| match attrs.get(name) {
        Some(TfAttr::Ints(v)) => Ok(v.clone()),
        _ => Err(format!("attribute {name} must be a list of integers")),
    };
    let flag = |name: &str| matches!(attrs.get(name), Some(TfAttr::Bool(true)));
    let nhwc_pair = |name: &str| -> std::result::Result<[usize; 2], String> {
        match ints(name)?.as_slice() {
            [1, h, w, 1] if *h > 0 && *w > 0 => Ok([*h as usize, *w as usize]),
            v => Err(format!("{name} {v:?}: only NHWC [1, h, w, 1] is supported")),
        }
    };
    let padding = || match attrs.get("padding") {
        Some(TfAttr::Str(p)) => super::conv::Padding::parse(p).ok_or(format!("padding {p}")),
        _ => Err("no padding".to_string()),
    };
    let nhwc_only = || match attrs.get("data_format") {
        None => Ok(()),
        Some(TfAttr::Str(f)) if f == "NHWC" => Ok(()),
        Some(other) => Err(format!("data_format {other:?}: only NHWC is supported")),
    };
    let first = |v: Vec<i64>| v.first().copied().ok_or("an empty constant".to_string());
    let assign = |mode| Op::from(Assign { mode });
    let shape = |k: usize| -> std::result::Result<Vec<usize>, String> {
        int(k)?
            .into_iter()
            .map(|d| usize::try_from(d).map_err(|_| format!("dimension {d}")))
            .collect()
    };
    if let Some(kind) = UnaryKind::TF_OPS.iter().find(|k| k.type_name() == op) {
        return Ok((Unary { kind: *kind }.into(), 1));
    }
    if let Some(kind) = BinaryKind::ALL
        .iter()
        .find(|k| Binary { kind: **k }.type_name() == op)
    {
        return Ok((Binary { kind: *kind }.into(), 2));
    }
    Ok(match op {
        "Add" => (
            Binary {
                kind: BinaryKind::Add,
            }
            .into(),
            2,
        ),
        "Div" => (
            Binary {
                kind: BinaryKind::Div,
            }
            .into(),
            2,
        ),
        "LeakyRelu" => {
            let alpha = match attrs.get("alpha") {
                Some(TfAttr::Float(a)) => *a,
                _ => 0.2,
            };
            (
                Unary {
                    kind: UnaryKind::LeakyRelu { alpha },
                }
                .into(),
                1,
            )
        }
        "Const" => match attrs.get("value") {
            Some(TfAttr::Tensor(v)) => (Const { value: v.clone() }.into(), 0),
            _ => return Err("a constant without a value".into()),
        },
        "Placeholder" => {
            let shape = match attrs.get("shape") {
                Some(TfAttr::Shape(s)) => s.clone(),
                _ => Shape::unknown(),
            };
            (
                Placeholder {
                    dtype: ty("dtype")?,
                    shape,
                }
                .into(),
                0,
            )
        }
        // TF2's resource variables (`tf.compat.v1.get_variable` in TF 2.x graphs) are read and
        // assigned through ops of their own; ferroflow reads a variable through an identity.
        "VariableV2" | "VarHandleOp" => match attrs.get("shape") {
            Some(TfAttr::Shape(s)) => (
                VariableOp {
                    dtype: ty("dtype")?,
                    shape: s.clone(),
                }
                .into(),
                0,
            ),
            _ => return Err("a variable without a shape".into()),
        },
        "Assign" | "AssignVariableOp" => (assign(AssignMode::Set), 2),
        "AssignAdd" | "AssignAddVariableOp" => (assign(AssignMode::Add), 2),
        "AssignSub" | "AssignSubVariableOp" => (assign(AssignMode::Sub), 2),
        "Identity" | "ReadVariableOp" => (Identity.into(), 1),
        "BiasAddGrad" => {
            nhwc_only()?;
            (BiasAddGrad.into(), 1)
        }
        "StopGradient" => (StopGradient.into(), 1),
        "NoOp" => (NoOp.into(), 0),
        "MatMul" => (
            MatMul {
                transpose_a: flag("transpose_a"),
                transpose_b: flag("transpose_b"),
            }
            .into(),
            2,
        ),
        "BiasAdd" => {
            nhwc_only()?;
            (BiasAdd.into(), 2)
        }
        "Sum" | "Mean" | "Max" | "Min" => {
            let kind = match op {
                "Sum" => ReduceKind::Sum,
                "Mean" => ReduceKind::Mean,
                "Max" => ReduceKind::Max,
                _ => ReduceKind::Min,
            };
            let axes = Some(int(1)?);
            (
                Reduce {
                    kind,
                    axes,
                    keepdims: flag("keep_dims"),
                }
                .into(),
                1,
            )
        }
        "ArgMax" => (
            ArgMax {
                axis: first(int(1)?)?,
            }
            .into(),
            1,
        ),
        "Reshape" => (Reshape { shape: int(1)? }.into(), 1),
        "Transpose" => {
            let perm = shape(1)?;
            (Transpose { perm }.into(), 1)
        }
        "ExpandDims" => (
            ExpandDims {
                axis: first(int(1)?)?,
            }
            .into(),
            1,
        ),
        "Squeeze" => (
            Squeeze {
                axes: ints("squeeze_dims").unwrap_or_default(),
            }
            .into(),
            1,
        ),
        "ConcatV2" if n >= 2 => (
            Concat {
                axis: first(int(n - 1)?)?,
            }
            .into(),
            n - 1,
        ),
        "Size" => (Size.into(), 1),
        "Softmax" => (Softmax { log: false }.into(), 1),
        "LogSoftmax" => (Softmax { log: true }.into(), 1),
        "SparseSoftmaxCrossEntropyWithLogits" => (SparseSoftmaxXent.into(), 2),
        "Cast" => (Cast { to: ty("DstT")? }.into(), 1),
        "Conv2D" => {
            nhwc_only()?;
            let attrs = ConvAttrs {
                strides: nhwc_pair("strides")?,
                dilations: nhwc_pair("dilations").unwrap_or([1, 1]),
                padding: padding()?,
            };
            (
                Conv {
                    kind: ConvKind::Forward,
                    attrs,
                }
                .into(),
                2,
            )
        }
        "MaxPool" | "AvgPool" => {
            nhwc_only()?;
            let kind = if op == "MaxPool" {
                PoolKind::Max
            } else {
                PoolKind::Avg
            };
            let attrs = PoolAttrs {
                ksize: nhwc_pair("ksize")?,
                strides: nhwc_pair("strides")?,
                padding: padding()?,
            };
            (Pool { kind, attrs }.into(), 1)
        }
        "RandomUniform" | "RandomStandardNormal" | "TruncatedNormal" => {
            let dist = match op {
                "RandomUniform" => Distribution::Uniform,
                "RandomStandardNormal" => Distribution::Normal,
                _ => Distribution::TruncatedNormal,
            };
            let seed = |name: &str| match attrs.get(name) {
                Some(TfAttr::Int(s)) => *s as u64,
                _ => 0,
            };
            let (s1, s2) = (seed("seed"), seed("seed2"));
            let seed = (s1 != 0 || s2 != 0).then_some((s1, s2));
            (
                Random {
                    dist,
                    dtype: ty("dtype")?,
                    shape: shape(0)?,
                    seed,
                }
                .into(),
                0,
            )
        }
        // `tf.zeros`/`tf.fill` of a constant shape: folded into the constant it makes.
        "Fill" => match consts
            .get(1)
            .copied()
            .flatten()
            .and_then(Value::scalar_value)
        {
            Some(x) => {
                let dtype = consts
                    .get(1)
                    .copied()
                    .flatten()
                    .map_or(DType::F32, Value::dtype);
                let dims = shape(0)?;
                let n = Value::checked_len(&dims).map_err(|e| e.to_string())?;
                if n > MAX_FILLED {
                    return Err(format!("a fill of {n} elements (at most {MAX_FILLED})"));
                }
                let value = Value::filled(dtype, &dims, x).map_err(|e| e.to_string())?;
                (Const { value }.into(), 0)
            }
            None => return Err("a fill of a value that is not a constant".into()),
        },
        _ => return Err("not an op ferroflow has".into()),
    })
}
