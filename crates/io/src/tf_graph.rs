//! TensorFlow's graph protobufs (`GraphDef`, `NodeDef`, `AttrValue`, `TensorProto`,
//! `MetaGraphDef` with its collections), and the two ways across: `export.rs` writes a ferroflow
//! graph as a `.meta` file that `tf.compat.v1.train.import_meta_graph` loads (and Netron opens),
//! `import.rs` reads one TensorFlow wrote. TensorBoard's graph view (`summary.rs`) writes the same
//! `GraphDef`.

use crate::tf_checkpoint::{DimProto, ShapeProto};
use ferroflow_core::Shape;
use std::collections::BTreeMap;

/// TF's `NodeDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct NodeDef {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(string, tag = "2")]
    pub(crate) op: String,
    #[prost(string, repeated, tag = "3")]
    pub(crate) input: Vec<String>,
    #[prost(btree_map = "string, message", tag = "5")]
    pub(crate) attr: BTreeMap<String, AttrValue>,
}

/// TF's `AttrValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AttrValue {
    #[prost(oneof = "AttrKind", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub(crate) value: Option<AttrKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum AttrKind {
    #[prost(message, tag = "1")]
    List(AttrList),
    #[prost(bytes = "vec", tag = "2")]
    S(Vec<u8>),
    #[prost(int64, tag = "3")]
    I(i64),
    #[prost(float, tag = "4")]
    F(f32),
    #[prost(bool, tag = "5")]
    B(bool),
    /// A `DataType` enum value.
    #[prost(int32, tag = "6")]
    Type(i32),
    #[prost(message, tag = "7")]
    Shape(ShapeProto),
    #[prost(message, tag = "8")]
    Tensor(TensorProto),
}

/// TF's `AttrValue.ListValue`: the integer and shape lists ferroflow writes.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AttrList {
    #[prost(int64, repeated, tag = "3")]
    pub(crate) i: Vec<i64>,
    #[prost(message, repeated, tag = "7")]
    pub(crate) shape: Vec<ShapeProto>,
}

/// TF's `TensorProto`: ferroflow writes the bytes as `tensor_content` (little-endian, row-major;
/// bool one byte); TensorFlow writes small constants as typed value lists instead.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorProto {
    #[prost(int32, tag = "1")]
    dtype: i32,
    #[prost(message, optional, tag = "2")]
    tensor_shape: Option<ShapeProto>,
    #[prost(bytes = "vec", tag = "4")]
    tensor_content: Vec<u8>,
    #[prost(float, repeated, tag = "5")]
    float_val: Vec<f32>,
    #[prost(double, repeated, tag = "6")]
    double_val: Vec<f64>,
    #[prost(int32, repeated, tag = "7")]
    int_val: Vec<i32>,
    #[prost(int64, repeated, tag = "10")]
    int64_val: Vec<i64>,
    #[prost(bool, repeated, tag = "11")]
    bool_val: Vec<bool>,
}

/// TF's `GraphDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GraphDef {
    #[prost(message, repeated, tag = "1")]
    pub(crate) node: Vec<NodeDef>,
    #[prost(message, optional, tag = "4")]
    pub(crate) versions: Option<Versions>,
}

/// TF's `VersionDef` of a graph.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Versions {
    #[prost(int32, tag = "1")]
    producer: i32,
}

mod export;
mod import;
pub use export::export_tf_meta_graph;
pub(crate) use export::export_tf_meta_graph_of_all;
pub(crate) use import::import_tf_bytes;
pub use import::import_tf_meta_graph;

/// TF's `MetaGraphDef`: the graph and its collections.
#[derive(Clone, PartialEq, prost::Message)]
struct MetaGraphDef {
    #[prost(message, optional, tag = "1")]
    meta_info_def: Option<MetaInfoDef>,
    #[prost(message, optional, tag = "2")]
    graph_def: Option<GraphDef>,
    #[prost(btree_map = "string, message", tag = "4")]
    collection_def: BTreeMap<String, CollectionDef>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MetaInfoDef {
    #[prost(string, tag = "1")]
    meta_graph_version: String,
    #[prost(string, repeated, tag = "4")]
    tags: Vec<String>,
}

/// TF's `CollectionDef`, of serialized protos (`VariableDef`s).
#[derive(Clone, PartialEq, prost::Message)]
struct CollectionDef {
    #[prost(oneof = "CollectionKind", tags = "2")]
    kind: Option<CollectionKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum CollectionKind {
    #[prost(message, tag = "2")]
    BytesList(BytesList),
}

#[derive(Clone, PartialEq, prost::Message)]
struct BytesList {
    #[prost(bytes = "vec", repeated, tag = "1")]
    value: Vec<Vec<u8>>,
}

/// TF's `VariableDef`: how `tf.compat.v1.global_variables()` finds a variable after an import.
#[derive(Clone, PartialEq, prost::Message)]
struct VariableDef {
    #[prost(string, tag = "1")]
    variable_name: String,
    #[prost(string, tag = "2")]
    initializer_name: String,
    #[prost(string, tag = "3")]
    snapshot_name: String,
    #[prost(string, tag = "6")]
    initial_value_name: String,
    #[prost(bool, tag = "7")]
    trainable: bool,
}

/// The graph producer version written: TF 2.x's graphs carry four-digit producers, and the
/// importer fills in the default of every attribute ferroflow leaves out.
const PRODUCER: i32 = 1087;

/// A shape as TF's `TensorShapeProto` (unknown dimensions as -1, an unknown rank as
/// `unknown_rank`).
pub(crate) fn shape_proto(shape: &Shape) -> ShapeProto {
    match shape.dims() {
        Some(dims) => ShapeProto {
            dim: dims
                .iter()
                .map(|d| DimProto {
                    size: d.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
                })
                .collect(),
            unknown_rank: false,
        },
        None => ShapeProto {
            dim: Vec::new(),
            unknown_rank: true,
        },
    }
}
