//! `import_tf_meta_graph`: the part of a TensorFlow `MetaGraphDef` that some outputs need, as a
//! ferroflow graph (`ops::tf::op_from_tf` maps each node), with its variables registered as
//! `tf.compat.v1.train.import_meta_graph` registers them, ready for a `Saver` to restore TF's
//! checkpoint into.

use super::{AttrKind, AttrValue, CollectionKind, MetaGraphDef, NodeDef, TensorProto, VariableDef};
use crate::checkpoint::{bytes_value, widened_value, Narrow};
use crate::tf_checkpoint::ShapeProto;
use crate::{IoError, Result};
use ferroflow_core::ops::tf::{op_from_tf, TfAttrs};
use ferroflow_core::ops::TfAttr;
use ferroflow_core::{keys, CollectionItem, DType, Graph, Shape, Tensor, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The largest `.meta` read.
const MAX_META: u64 = 1 << 30;

/// The most elements a constant may have when the file holds fewer values than that (TF fills
/// the rest): 2^26, 256 MiB of float32.
pub(crate) const MAX_FILLED: usize = ferroflow_core::ops::tf::MAX_FILLED;

/// A TF `DataType` as ferroflow holds it: int32 becomes int64, ferroflow's one integer type.
fn dtype(code: i32) -> Option<DType> {
    match code {
        1 => Some(DType::F32),
        2 => Some(DType::F64),
        3 | 9 => Some(DType::I64),
        10 => Some(DType::Bool),
        _ => None,
    }
}

fn shape(p: &ShapeProto) -> Shape {
    if p.unknown_rank {
        return Shape::unknown();
    }
    Shape::new(p.dim.iter().map(|d| usize::try_from(d.size).ok()).collect())
}

/// The value of a `TensorProto`: its `tensor_content`, or its typed list (one value fills the
/// shape; none means zeros).
fn tensor(t: &TensorProto) -> std::result::Result<Value, String> {
    let dims: Vec<usize> = t
        .tensor_shape
        .as_ref()
        .map(|s| s.dim.iter().map(|d| usize::try_from(d.size)).collect())
        .transpose()
        .map_err(|_| "a constant of unknown shape".to_string())?
        .unwrap_or_default();
    let to = dtype(t.dtype).ok_or(format!("a constant of TF dtype {}", t.dtype))?;
    if !t.tensor_content.is_empty() {
        return match t.dtype {
            3 => widened_value(Narrow::Int32, to, &dims, &t.tensor_content),
            _ => bytes_value(to, &dims, &t.tensor_content),
        };
    }
    let list: Vec<f64> = match t.dtype {
        1 => t.float_val.iter().map(|&x| f64::from(x)).collect(),
        2 => t.double_val.clone(),
        3 => t.int_val.iter().map(|&x| f64::from(x)).collect(),
        9 => t.int64_val.iter().map(|&x| x as f64).collect(),
        _ => t.bool_val.iter().map(|&x| f64::from(u8::from(x))).collect(),
    };
    let n = Value::checked_len(&dims).map_err(|e| e.to_string())?;
    // Values the file does not hold (one value filling the shape, or none for zeros) are bounded,
    // so that a few bytes cannot ask for gigabytes.
    if list.len() < n && n > MAX_FILLED {
        return Err(format!(
            "a constant of {n} elements from {} values (at most {MAX_FILLED} are filled in)",
            list.len()
        ));
    }
    // Integers above 2^53 do not survive an f64 list: int64 lists are read directly.
    if t.dtype == 9 && n > 1 && t.int64_val.len() == n {
        return Value::from_i64(&dims, t.int64_val.clone()).map_err(|e| e.to_string());
    }
    match list.len() {
        0 => Value::filled(to, &dims, 0.0).map_err(|e| e.to_string()),
        1 => Value::filled(to, &dims, list.first().copied().unwrap_or(0.0))
            .map_err(|e| e.to_string()),
        k if k == n => Value::from_f64(&dims, list)
            .map(|v| v.cast(to))
            .map_err(|e| e.to_string()),
        k => Err(format!("{k} values for shape {dims:?}")),
    }
}

fn attrs(node: &NodeDef) -> std::result::Result<TfAttrs, String> {
    let mut out = TfAttrs::new();
    for (name, AttrValue { value }) in &node.attr {
        let attr = match value {
            Some(AttrKind::Type(code)) => match dtype(*code) {
                Some(d) => TfAttr::Type(d),
                // A dtype ferroflow lacks: left out, so that an op needing it says so.
                None => continue,
            },
            Some(AttrKind::S(s)) => TfAttr::Str(String::from_utf8_lossy(s).into_owned()),
            Some(AttrKind::I(i)) => TfAttr::Int(*i),
            Some(AttrKind::F(f)) => TfAttr::Float(f64::from(*f)),
            Some(AttrKind::B(b)) => TfAttr::Bool(*b),
            Some(AttrKind::Shape(s)) => TfAttr::Shape(shape(s)),
            Some(AttrKind::Tensor(t)) => TfAttr::Tensor(tensor(t)?),
            Some(AttrKind::List(l)) => TfAttr::Ints(l.i.clone()),
            None => continue,
        };
        out.insert(name.clone(), attr);
    }
    Ok(out)
}

/// An input reference: the node name, and whether it is a control input. Outputs other than the
/// first (`name:1`) are `None`.
fn reference(input: &str) -> Option<(&str, bool)> {
    if let Some(control) = input.strip_prefix('^') {
        return Some((control, true));
    }
    match input.rsplit_once(':') {
        Some((name, "0")) => Some((name, false)),
        Some((_, k)) if k.parse::<u32>().is_ok() => None,
        _ => Some((input, false)),
    }
}

/// A depth-first walk over node inputs that lists nodes after everything they read.
struct Walk<'a> {
    by_name: &'a HashMap<&'a str, &'a NodeDef>,
    /// `false` while a node's inputs are being walked, `true` once it is listed.
    done: HashMap<&'a str, bool>,
    order: Vec<&'a NodeDef>,
    /// Op types (or inputs) ferroflow cannot import, with a node of each.
    unsupported: BTreeMap<String, String>,
}

impl<'a> Walk<'a> {
    fn visit(&mut self, start: &str) -> std::result::Result<(), String> {
        let first = *self
            .by_name
            .get(start)
            .ok_or_else(|| format!("no node named '{start}'"))?;
        let mut stack: Vec<(&'a NodeDef, bool)> = vec![(first, false)];
        while let Some((node, expanded)) = stack.pop() {
            let name = node.name.as_str();
            if expanded {
                self.done.insert(name, true);
                self.order.push(node);
                continue;
            }
            match self.done.get(name) {
                Some(true) => continue,
                Some(false) => return Err(format!("node '{name}' is in a cycle")),
                None => {}
            }
            self.done.insert(name, false);
            stack.push((node, true));
            for input in &node.input {
                let Some((dep, _)) = reference(input) else {
                    self.unsupported
                        .entry(format!("output {input} of a multi-output op"))
                        .or_insert_with(|| node.name.clone());
                    continue;
                };
                if self.done.get(dep) == Some(&true) {
                    continue;
                }
                let dep = *self.by_name.get(dep).ok_or_else(|| {
                    format!("node '{name}' reads '{dep}', which is not in the graph")
                })?;
                stack.push((dep, false));
            }
        }
        Ok(())
    }
}

/// Reads the TensorFlow `MetaGraphDef` at `path` (as `tf.compat.v1.train.export_meta_graph` and
/// `Saver.save` write it) and builds, under TF's names, what the tensors named in `outputs`
/// (`"dnn/outputs/BiasAdd:0"` or `"dnn/outputs/BiasAdd"`) need: their inputs, transitively, and
/// the variables among them with their initializers, registered in `GLOBAL_VARIABLES` (and
/// `TRAINABLE_VARIABLES`) from the meta-graph's `VariableDef`s so that
/// `Saver::new(&g, VarList::All)` restores TF's checkpoint. No outputs: the whole graph, as
/// `tf.compat.v1.train.import_meta_graph` imports it. int32 constants and placeholders become
/// int64, ferroflow's integer type.
///
/// A node ferroflow has no op for is an error listing every such op type with a node of each; the
/// training step of a TF graph (its `gradients/` and optimizer nodes) is left out by naming only
/// inference outputs.
pub fn import_tf_meta_graph(path: &Path, outputs: &[&str]) -> Result<Graph> {
    let bytes = crate::files::read_bounded(path, MAX_META, "TensorFlow meta-graph")?;
    import_tf_bytes(path, &bytes, outputs)
}

/// [`import_tf_meta_graph`] of a file already read (`path` names it in errors).
pub(crate) fn import_tf_bytes(path: &Path, bytes: &[u8], outputs: &[&str]) -> Result<Graph> {
    let err = |message: String| IoError::MetaGraph {
        path: path.into(),
        message,
    };
    if bytes.len() as u64 > MAX_META {
        return Err(err(format!(
            "a TensorFlow meta-graph of {} bytes is more than the {MAX_META} this build reads",
            bytes.len()
        )));
    }
    let meta = <MetaGraphDef as prost::Message>::decode(bytes)
        .map_err(|e| err(format!("not a TensorFlow MetaGraphDef: {e}")))?;
    let nodes = meta.graph_def.map(|d| d.node).unwrap_or_default();
    // Protobuf decoding accepts much that is not one: a file without a node is not a graph.
    if nodes.is_empty() {
        return Err(err("not a TensorFlow MetaGraphDef (no graph nodes)".into()));
    }
    let by_name: HashMap<&str, &NodeDef> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let variables: Vec<(VariableDef, bool)> = ["variables", "trainable_variables"]
        .iter()
        .filter_map(|key| meta.collection_def.get(*key).map(|c| (key, c)))
        .flat_map(|(key, c)| {
            let Some(CollectionKind::BytesList(list)) = &c.kind else {
                return Vec::new();
            };
            list.value
                .iter()
                .filter_map(|b| <VariableDef as prost::Message>::decode(b.as_slice()).ok())
                .map(|v| (v, *key == "trainable_variables"))
                .collect()
        })
        .collect();
    let strip = |t: &str| t.strip_suffix(":0").unwrap_or(t).to_string();

    // What the outputs need, then the variables among it with their reads and initializers.
    let mut walk = Walk {
        by_name: &by_name,
        done: HashMap::new(),
        order: Vec::new(),
        unsupported: BTreeMap::new(),
    };
    if outputs.is_empty() {
        for node in &nodes {
            walk.visit(&node.name).map_err(&err)?;
        }
    }
    for out in outputs {
        walk.visit(&strip(out)).map_err(&err)?;
    }
    let needed: Vec<&VariableDef> = variables
        .iter()
        .filter(|(v, _)| walk.done.get(strip(&v.variable_name).as_str()) == Some(&true))
        .map(|(v, _)| v)
        .collect();
    for v in &needed {
        walk.visit(&strip(&v.snapshot_name)).map_err(&err)?;
        walk.visit(&v.initializer_name).map_err(&err)?;
    }
    let Walk {
        order,
        mut unsupported,
        ..
    } = walk;

    let g = Graph::new();
    let mut values: HashMap<&str, Value> = HashMap::new();
    for node in order {
        let node_attrs = match attrs(node) {
            Ok(a) => a,
            Err(why) => {
                unsupported
                    .entry(format!("{} ({why})", node.op))
                    .or_insert_with(|| node.name.clone());
                continue;
            }
        };
        // A node reading a second output was reported by the walk.
        let Some(refs) = node
            .input
            .iter()
            .map(|i| reference(i))
            .collect::<Option<Vec<(&str, bool)>>>()
        else {
            continue;
        };
        let data: Vec<&str> = refs.iter().filter(|(_, c)| !c).map(|(n, _)| *n).collect();
        let consts: Vec<Option<&Value>> = data.iter().map(|n| values.get(n)).collect();
        let (op, taken) = match op_from_tf(&node.op, &node_attrs, &consts) {
            Ok(found) => found,
            Err(why) => {
                unsupported
                    .entry(format!("{} ({why})", node.op))
                    .or_insert_with(|| node.name.clone());
                continue;
            }
        };
        if let ferroflow_core::ops::Op::Const(c) = &op {
            values.insert(&node.name, c.value.clone());
        }
        let find = |name: &str| g.get_operation_by_name(name).ok();
        let inputs: Option<Vec<Tensor>> = data
            .iter()
            .take(taken)
            .map(|n| find(n).map(|o| Tensor::from_index(o.index())))
            .collect();
        let controls: Option<Vec<_>> = refs
            .iter()
            .filter(|(_, c)| *c)
            .map(|(n, _)| find(n))
            .collect();
        // An input left out for an op ferroflow lacks has already been reported.
        let (Some(inputs), Some(controls)) = (inputs, controls) else {
            continue;
        };
        g.import_node(&node.name, op, &inputs, &controls)
            .map_err(|e| err(format!("node '{}' ({}): {e}", node.name, node.op)))?;
    }
    if !unsupported.is_empty() {
        let list: Vec<String> = unsupported
            .iter()
            .map(|(op, node)| format!("{op} (node '{node}')"))
            .collect();
        return Err(err(format!("ferroflow cannot import: {}", list.join(", "))));
    }
    let mut all = Vec::new();
    let mut trainable = Vec::new();
    for (v, is_trainable) in &variables {
        let name = strip(&v.variable_name);
        // A variable whose nodes the outputs did not need was not imported: it is left out.
        let Ok(var) = g.variable_from_names(&name, &strip(&v.snapshot_name), &v.initializer_name)
        else {
            continue;
        };
        if *is_trainable {
            trainable.push(CollectionItem::Variable(var));
        } else {
            g.register_variable(&name, var);
            all.push(CollectionItem::Variable(var));
        }
    }
    g.set_collection(keys::GLOBAL_VARIABLES, all);
    g.set_collection(keys::TRAINABLE_VARIABLES, trainable);
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::super::{GraphDef, MetaInfoDef, Versions};
    use super::*;

    fn node(name: &str, op: &str, input: &[&str], attr: Vec<(&str, AttrKind)>) -> NodeDef {
        NodeDef {
            name: name.into(),
            op: op.into(),
            input: input.iter().map(|s| s.to_string()).collect(),
            attr: attr
                .into_iter()
                .map(|(k, v)| (k.to_string(), AttrValue { value: Some(v) }))
                .collect(),
        }
    }

    fn constant(name: &str, dtype: i32, dims: &[i64], fill: TensorProto) -> NodeDef {
        let shape = ShapeProto {
            dim: dims
                .iter()
                .map(|&size| crate::tf_checkpoint::DimProto { size })
                .collect(),
            unknown_rank: false,
        };
        let value = TensorProto {
            dtype,
            tensor_shape: Some(shape),
            ..fill
        };
        node(
            name,
            "Const",
            &[],
            vec![
                ("dtype", AttrKind::Type(dtype)),
                ("value", AttrKind::Tensor(value)),
            ],
        )
    }

    fn import(nodes: Vec<NodeDef>) -> Result<Graph> {
        let meta = MetaGraphDef {
            meta_info_def: Some(MetaInfoDef::default()),
            graph_def: Some(GraphDef {
                node: nodes,
                versions: Some(Versions { producer: 1 }),
            }),
            collection_def: BTreeMap::new(),
        };
        let path = std::env::temp_dir().join(format!(
            "ff-tfimport-{}-{:?}.meta",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, prost::Message::encode_to_vec(&meta)).unwrap();
        let g = import_tf_meta_graph(&path, &[]);
        std::fs::remove_file(&path).unwrap();
        g
    }

    #[test]
    fn small_constants_fill_their_shape_within_a_bound() {
        // One float for a [2, 3] constant fills it (TF's small-constant form); int32 widens.
        let g = import(vec![
            constant(
                "six",
                1,
                &[2, 3],
                TensorProto {
                    float_val: vec![1.5],
                    ..Default::default()
                },
            ),
            constant(
                "ints",
                3,
                &[2],
                TensorProto {
                    int_val: vec![7, -8],
                    ..Default::default()
                },
            ),
        ])
        .unwrap();
        let sess = ferroflow_core::Session::new(&g);
        let six = g.get_tensor_by_name("six:0").unwrap();
        let ints = g.get_tensor_by_name("ints:0").unwrap();
        let out = sess.run(&[six, ints], &[], &[]).unwrap();
        assert_eq!(out[0].to_f64_vec(), [1.5; 6]);
        assert_eq!(
            (out[1].dtype(), out[1].to_f64_vec()),
            (DType::I64, vec![7.0, -8.0])
        );
        // One value for 2^30 elements (4 GiB): refused, nothing allocated.
        let e = import(vec![constant(
            "big",
            1,
            &[1 << 30],
            TensorProto {
                float_val: vec![1.0],
                ..Default::default()
            },
        )])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("a constant of 1073741824 elements from 1 values"),
            "{e}"
        );
        // The same through a Fill of a constant shape.
        let e = import(vec![
            constant(
                "dims",
                9,
                &[1],
                TensorProto {
                    int64_val: vec![1 << 30],
                    ..Default::default()
                },
            ),
            constant(
                "one",
                1,
                &[],
                TensorProto {
                    float_val: vec![1.0],
                    ..Default::default()
                },
            ),
            node(
                "fill",
                "Fill",
                &["dims", "one"],
                vec![("T", AttrKind::Type(1))],
            ),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("Fill (a fill of 1073741824 elements") && e.contains("(node 'fill')"),
            "{e}"
        );
        // Protobuf that decodes but holds no graph.
        assert!(import(vec![])
            .unwrap_err()
            .to_string()
            .contains("no graph nodes"));
    }
}
