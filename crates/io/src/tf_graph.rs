//! TensorFlow's graph protobufs (`GraphDef`, `NodeDef`, `AttrValue`, `TensorProto`,
//! `MetaGraphDef` with its collections): the messages, and `export_tf_meta_graph`, which writes the
//! part of a ferroflow graph that computes some outputs as a `.meta` file that
//! `tf.compat.v1.train.import_meta_graph` loads (and Netron opens). TensorBoard's graph view
//! (`summary.rs`) writes the same `GraphDef`.

use crate::tf_checkpoint::{tf_dtype, DimProto, ShapeProto};
use crate::{IoError, Result};
use ferroflow_core::ops::{TfAttr, TfNode};
use ferroflow_core::{keys, Graph, Shape, Tensor, Value, Variable};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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

mod import;
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

fn tensor_proto(v: &Value) -> TensorProto {
    TensorProto {
        dtype: tf_dtype(v.dtype()),
        tensor_shape: Some(shape_proto(&Shape::known(v.shape()))),
        tensor_content: crate::checkpoint::value_bytes(v),
        ..Default::default()
    }
}

fn attr_value(a: &TfAttr) -> AttrValue {
    let kind = match a {
        TfAttr::Type(d) => AttrKind::Type(tf_dtype(*d)),
        TfAttr::Int(i) => AttrKind::I(*i),
        TfAttr::Float(f) => AttrKind::F(*f as f32),
        TfAttr::Bool(b) => AttrKind::B(*b),
        TfAttr::Str(s) => AttrKind::S(s.clone().into_bytes()),
        TfAttr::Ints(v) => AttrKind::List(AttrList {
            i: v.clone(),
            shape: Vec::new(),
        }),
        TfAttr::Shape(s) => AttrKind::Shape(shape_proto(s)),
        TfAttr::Tensor(v) => AttrKind::Tensor(tensor_proto(v)),
    };
    AttrValue { value: Some(kind) }
}

/// The nodes `outputs` need (inputs and control inputs, transitively), with the variables among
/// them, their reads and their initializers (and what those need), in graph order.
fn needed(g: &Graph, outputs: &[Tensor]) -> Result<(BTreeSet<usize>, Vec<Variable>)> {
    let mut keep = BTreeSet::new();
    let mut stack: Vec<usize> = outputs.iter().map(|t| t.index()).collect();
    let walk = |stack: &mut Vec<usize>, keep: &mut BTreeSet<usize>| -> Result<()> {
        while let Some(i) = stack.pop() {
            if keep.insert(i) {
                let n = g.node(i)?;
                stack.extend(n.inputs.iter().chain(&n.control_inputs));
            }
        }
        Ok(())
    };
    walk(&mut stack, &mut keep)?;
    let vars: Vec<Variable> = g
        .get_collection::<Variable>(keys::GLOBAL_VARIABLES, None)?
        .into_iter()
        .filter(|v| keep.contains(&v.var_tensor().index()) || keep.contains(&v.value().index()))
        .collect();
    for v in &vars {
        stack.extend([
            v.var_tensor().index(),
            v.value().index(),
            v.initializer().index(),
        ]);
    }
    walk(&mut stack, &mut keep)?;
    Ok((keep, vars))
}

/// Writes what `outputs` need of `g` (their inputs, transitively, and the variables among them
/// with their reads and initializers) as a TensorFlow `MetaGraphDef`: every node under its name
/// with TF's op type and attributes (shapes and axes that TF takes as tensors become constants
/// named under the node), and the `variables` and `trainable_variables` collections as
/// `VariableDef`s, so that after `tf.compat.v1.train.import_meta_graph(path)` a
/// `tf.compat.v1.train.Saver()` restores a ferroflow checkpoint in TF's format into it and the
/// outputs run by their names (`"dnn/outputs/BiasAdd:0"`).
///
/// A node whose op TF does not have (ferroflow's gradient helpers, its batch normalization) is an
/// error that lists every such op type with a node of each; export the inference part of a graph,
/// not its training step.
pub fn export_tf_meta_graph(g: &Graph, path: &Path, outputs: &[Tensor]) -> Result<()> {
    let err = |message: String| IoError::MetaGraph {
        path: path.into(),
        message,
    };
    let (keep, vars) = needed(g, outputs)?;
    let mut nodes = Vec::with_capacity(keep.len());
    let mut unsupported: BTreeMap<&'static str, String> = BTreeMap::new();
    for &i in &keep {
        let n = g.node(i)?;
        let infos = n
            .inputs
            .iter()
            .map(|&j| g.node(j).map(|m| m.output.clone()))
            .collect::<ferroflow_core::Result<Option<Vec<_>>>>()?;
        let op = n.op.type_name();
        let Some(TfNode {
            attrs,
            const_inputs,
        }) = infos.and_then(|infos| n.op.def().tf_node(&infos))
        else {
            unsupported.entry(op).or_insert_with(|| n.name.clone());
            continue;
        };
        let mut input: Vec<String> = n
            .inputs
            .iter()
            .map(|&j| g.op_name(Tensor::from_index(j)))
            .collect();
        for (suffix, value) in const_inputs {
            let mut name = format!("{}/{suffix}", n.name);
            while g.get_operation_by_name(&name).is_ok() {
                name.push_str("_tf");
            }
            let mut attr = BTreeMap::new();
            attr.insert("dtype".into(), attr_value(&TfAttr::Type(value.dtype())));
            attr.insert("value".into(), attr_value(&TfAttr::Tensor(value)));
            nodes.push(NodeDef {
                name: name.clone(),
                op: "Const".into(),
                input: Vec::new(),
                attr,
            });
            input.push(name);
        }
        input.extend(
            n.control_inputs
                .iter()
                .map(|&j| format!("^{}", g.op_name(Tensor::from_index(j)))),
        );
        nodes.push(NodeDef {
            name: n.name.clone(),
            op: op.into(),
            input,
            attr: attrs
                .iter()
                .map(|(k, v)| ((*k).to_string(), attr_value(v)))
                .collect(),
        });
    }
    if !unsupported.is_empty() {
        let list: Vec<String> = unsupported
            .iter()
            .map(|(op, node)| format!("{op} (node '{node}')"))
            .collect();
        return Err(err(format!(
            "cannot be written for TensorFlow: TF has no op of the meaning of {}",
            list.join(", ")
        )));
    }
    let trainable: BTreeSet<usize> = g
        .trainable_variables()
        .iter()
        .map(|v| v.var_tensor().index())
        .collect();
    let mut all = Vec::new();
    let mut train = Vec::new();
    for v in &vars {
        let (var, read, init) = g.variable_names(*v);
        let initial = g
            .node(v.initializer().index())?
            .inputs
            .get(1)
            .map(|&j| format!("{}:0", g.op_name(Tensor::from_index(j))))
            .unwrap_or_default();
        let is_trainable = trainable.contains(&v.var_tensor().index());
        let def = prost::Message::encode_to_vec(&VariableDef {
            variable_name: format!("{var}:0"),
            initializer_name: init,
            snapshot_name: format!("{read}:0"),
            initial_value_name: initial,
            trainable: is_trainable,
        });
        if is_trainable {
            train.push(def.clone());
        }
        all.push(def);
    }
    let bytes_list = |value: Vec<Vec<u8>>| CollectionDef {
        kind: Some(CollectionKind::BytesList(BytesList { value })),
    };
    let mut collection_def = BTreeMap::new();
    collection_def.insert("variables".to_string(), bytes_list(all));
    collection_def.insert("trainable_variables".to_string(), bytes_list(train));
    let meta = MetaGraphDef {
        meta_info_def: Some(MetaInfoDef {
            meta_graph_version: String::new(),
            tags: Vec::new(),
        }),
        graph_def: Some(GraphDef {
            node: nodes,
            versions: Some(Versions { producer: PRODUCER }),
        }),
        collection_def,
    };
    crate::files::write_atomic(path, &prost::Message::encode_to_vec(&meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroflow_core::{DType, Initializer, VarOptions};

    fn decode(path: &Path) -> MetaGraphDef {
        prost::Message::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
    }

    fn attr<'a>(n: &'a NodeDef, key: &str) -> &'a AttrKind {
        n.attr[key].value.as_ref().unwrap()
    }

    #[test]
    fn an_inference_graph_becomes_tf_nodes_with_their_attributes_and_collections() {
        let dir = std::env::temp_dir().join(format!("ff-tfgraph-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let g = Graph::new();
        let x = g
            .named("X")
            .placeholder(DType::F32, [None, Some(3)])
            .unwrap();
        let w = g
            .get_variable_with(
                "w",
                &[3, 2],
                DType::F32,
                VarOptions::init(Initializer::Ones),
            )
            .unwrap();
        let product = g.matmul(x, w).unwrap();
        let flat = g.named("flat").reshape(product, &[-1]).unwrap();
        let total = g.named("total").reduce_sum(flat, None, false).unwrap();
        // Not needed by `total`: left out.
        g.named("unused")
            .placeholder(DType::F32, [Some(1)])
            .unwrap();
        let path = dir.join("m.meta");
        export_tf_meta_graph(&g, &path, &[total]).unwrap();
        let meta = decode(&path);
        let nodes = meta.graph_def.unwrap().node;
        let by_name = |name: &str| {
            nodes
                .iter()
                .find(|n| n.name == name)
                .unwrap_or_else(|| panic!("{name}"))
        };
        let ops: Vec<(&str, &str)> = nodes
            .iter()
            .map(|n| (n.name.as_str(), n.op.as_str()))
            .collect();
        assert!(!ops.iter().any(|(n, _)| *n == "unused"), "{ops:?}");
        // Placeholder: dtype float (1) and shape [-1, 3].
        let p = by_name("X");
        assert_eq!(p.op, "Placeholder");
        assert_eq!(attr(p, "dtype"), &AttrKind::Type(1));
        let AttrKind::Shape(s) = attr(p, "shape") else {
            panic!()
        };
        assert_eq!(s.dim.iter().map(|d| d.size).collect::<Vec<_>>(), [-1, 3]);
        // The variable, its read, its initializer (an Assign of a Const of ones).
        assert_eq!(by_name("w").op, "VariableV2");
        assert_eq!(by_name("w/read").op, "Identity");
        let assign = by_name("w/Assign");
        assert_eq!(assign.op, "Assign");
        assert_eq!(attr(assign, "validate_shape"), &AttrKind::B(true));
        // The product, with its transposes.
        let mm = nodes.iter().find(|n| n.op == "MatMul").unwrap();
        assert_eq!(mm.input, ["X", "w/read"]);
        assert_eq!(attr(mm, "transpose_a"), &AttrKind::B(false));
        assert_eq!(attr(mm, "T"), &AttrKind::Type(1));
        // The reshape's shape and the sum's axes (all of a rank-1 input) become int64 constants.
        let reshape = by_name("flat");
        assert_eq!(reshape.input.last().unwrap(), "flat/shape");
        let AttrKind::Tensor(t) = attr(by_name("flat/shape"), "value") else {
            panic!()
        };
        assert_eq!(
            (t.dtype, t.tensor_content.clone()),
            (9, (-1i64).to_le_bytes().to_vec())
        );
        let sum = by_name("total");
        assert_eq!(
            (sum.op.as_str(), attr(sum, "keep_dims")),
            ("Sum", &AttrKind::B(false))
        );
        let AttrKind::Tensor(t) = attr(by_name("total/reduction_indices"), "value") else {
            panic!()
        };
        assert_eq!(t.tensor_content, 0i64.to_le_bytes());
        // The variables collections hold w's VariableDef.
        for key in ["variables", "trainable_variables"] {
            let Some(CollectionKind::BytesList(list)) = &meta.collection_def[key].kind else {
                panic!()
            };
            let def: VariableDef = prost::Message::decode(list.value[0].as_slice()).unwrap();
            assert_eq!(
                (
                    def.variable_name.as_str(),
                    def.snapshot_name.as_str(),
                    def.initializer_name.as_str()
                ),
                ("w:0", "w/read:0", "w/Assign")
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_training_step_is_refused_with_every_op_tf_lacks() {
        let dir = std::env::temp_dir().join(format!("ff-tfgraph-grad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let g = Graph::new();
        let x = g.placeholder(DType::F32, [None, Some(3)]).unwrap();
        let w = g.get_variable("w", &[3, 2], DType::F32).unwrap();
        let loss = g
            .reduce_mean(g.relu(g.matmul(x, w).unwrap()).unwrap(), None, false)
            .unwrap();
        let grad = g.gradients(&[loss], &[w.value()]).unwrap()[0].unwrap();
        let path = dir.join("train.meta");
        let e = export_tf_meta_graph(&g, &path, &[grad])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot be written for TensorFlow") && e.contains("(node 'gradients/"),
            "{e}"
        );
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
