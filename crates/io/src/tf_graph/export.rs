//! Writing a ferroflow graph as TensorFlow's `MetaGraphDef`: what some outputs need
//! (`export_tf_meta_graph`), or every node TF can represent (what a TF-format `Saver` writes).

use super::{
    shape_proto, AttrKind, AttrList, AttrValue, BytesList, CollectionDef, CollectionKind, GraphDef,
    MetaGraphDef, MetaInfoDef, NodeDef, TensorProto, VariableDef, Versions, PRODUCER,
};
use crate::tf_checkpoint::tf_dtype;
use crate::{IoError, Result};
use ferroflow_core::ops::{TfAttr, TfNode};
use ferroflow_core::{keys, Graph, Shape, Tensor, Value, Variable};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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
    let (keep, vars) = needed(g, outputs)?;
    let written = tf_nodes(g, &keep, false)?;
    if !written.unsupported.is_empty() {
        let list: Vec<String> = written
            .unsupported
            .iter()
            .map(|(op, node)| format!("{op} (node '{node}')"))
            .collect();
        return Err(IoError::MetaGraph {
            path: path.into(),
            message: format!(
                "cannot be written for TensorFlow: TF has no op of the meaning of {}",
                list.join(", ")
            ),
        });
    }
    write_meta(g, path, written.nodes, &vars)
}

/// Writes every node of `g` that TensorFlow can represent, with all its inputs, and the variables
/// among them: what a `Saver` saving in TF's format writes as `<prefix>.meta`. A graph's training
/// step (what `gradients` built, its optimizers' updates) is left out; the model, its
/// initializers and whatever computes from them are there.
pub(crate) fn export_tf_meta_graph_of_all(g: &Graph, path: &Path) -> Result<()> {
    let mut keep = BTreeSet::new();
    for op in g.operations() {
        if !ferroflow_core::graph::is_gradient_name(&g.node(op.index())?.name) {
            keep.insert(op.index());
        }
    }
    let written = tf_nodes(g, &keep, true)?;
    let vars: Vec<Variable> = g
        .get_collection::<Variable>(keys::GLOBAL_VARIABLES, None)?
        .into_iter()
        .filter(|v| {
            [
                v.var_tensor().index(),
                v.value().index(),
                v.initializer().index(),
            ]
            .iter()
            .all(|i| written.indices.contains(i))
        })
        .collect();
    write_meta(g, path, written.nodes, &vars)
}

/// The TF nodes of some of a graph's nodes.
struct Written {
    nodes: Vec<NodeDef>,
    /// The graph nodes written.
    indices: BTreeSet<usize>,
    /// Op types TF has no node for, with a node of each.
    unsupported: BTreeMap<&'static str, String>,
}

/// The TF nodes of the nodes in `keep`, in graph order. With `skip_dependents`, a node that reads
/// a node left out is left out too.
fn tf_nodes(g: &Graph, keep: &BTreeSet<usize>, skip_dependents: bool) -> Result<Written> {
    let mut out = Written {
        nodes: Vec::with_capacity(keep.len()),
        indices: BTreeSet::new(),
        unsupported: BTreeMap::new(),
    };
    for &i in keep {
        let n = g.node(i)?;
        if skip_dependents
            && !n
                .inputs
                .iter()
                .chain(&n.control_inputs)
                .all(|j| out.indices.contains(j))
        {
            continue;
        }
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
            out.unsupported.entry(op).or_insert_with(|| n.name.clone());
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
            out.nodes.push(NodeDef {
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
        out.nodes.push(NodeDef {
            name: n.name.clone(),
            op: op.into(),
            input,
            attr: attrs
                .iter()
                .map(|(k, v)| ((*k).to_string(), attr_value(v)))
                .collect(),
        });
        out.indices.insert(i);
    }
    Ok(out)
}

/// Writes `nodes` with the `variables` and `trainable_variables` collections of `vars`.
fn write_meta(g: &Graph, path: &Path, nodes: Vec<NodeDef>, vars: &[Variable]) -> Result<()> {
    let trainable: BTreeSet<usize> = g
        .trainable_variables()
        .iter()
        .map(|v| v.var_tensor().index())
        .collect();
    let mut all = Vec::new();
    let mut train = Vec::new();
    for v in vars {
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
