//! How an op is written as a TensorFlow `NodeDef` (`OpDef::tf_node`): the attributes TF's op of the
//! same type takes, and the inputs TF takes as tensors where ferroflow keeps attributes (a
//! reshape's shape, a reduction's axes), to be added as constants. Ops without a TF op of the
//! same meaning (ferroflow's gradient helpers, fused ops) have none. The protobuf encoding lives
//! in `ferroflow-io` (`tf_graph`).

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
