//! Meta-graphs: the whole graph (nodes with ops and attributes, names, inputs), its collections, the
//! get_variable store and the saver's variable list, so that a program without the model's building
//! code can import it, restore weights, look tensors up by name and train on top.
//!
//! File: magic `FFMETA\r\n`, u32 version, u64 body length, bincode body, CRC-32C of the body. Each op
//! is stored as its TF type name plus its encoded attributes, so an op this build does not know is a
//! clear error naming the node and the op type.

use crate::saver::Saver;
use crate::{IoError, Result};
use ferroflow_core::ops::Op;
use ferroflow_core::{CollectionItem, Graph, Operation, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MAGIC: [u8; 8] = *b"FFMETA\r\n";
pub const VERSION: u32 = 1;
const MAX_BODY: u64 = 1 << 32;

#[derive(Serialize, Deserialize)]
struct NodeDef {
    name: String,
    op_type: String,
    op: Vec<u8>,
    inputs: Vec<String>,
    control_inputs: Vec<String>,
}

#[derive(Serialize, Deserialize)]
enum ItemDef {
    Variable(String, String, String),
    Tensor(String),
    Operation(String),
    Str(String),
}

#[derive(Serialize, Deserialize)]
struct MetaGraphDef {
    nodes: Vec<NodeDef>,
    collections: Vec<(String, Vec<ItemDef>)>,
    variables: Vec<(String, String, String, String)>,
    seed: Option<u64>,
    saver: Option<Vec<(String, String, String, String)>>,
}

fn meta_err(path: &Path, m: impl Into<String>) -> IoError {
    IoError::MetaGraph {
        path: path.into(),
        message: m.into(),
    }
}

/// `tf.train.export_meta_graph(path)`: writes the graph, collections and (optionally) a saver's list.
pub fn export_meta_graph(g: &Graph, path: &Path, saver: Option<&Saver>) -> Result<()> {
    let mut nodes = Vec::with_capacity(g.len());
    for op in g.operations() {
        let n = g.node(op.index())?;
        let name_of = |i: &usize| g.op_name(Operation::from(Tensor::from_index(*i)));
        nodes.push(NodeDef {
            name: n.name.clone(),
            op_type: n.op.type_name().to_string(),
            op: bincode::serialize(n.op.as_ref()).map_err(|e| meta_err(path, e.to_string()))?,
            inputs: n.inputs.iter().map(name_of).collect(),
            control_inputs: n.control_inputs.iter().map(name_of).collect(),
        });
    }
    let var_names = |v| {
        let (a, b, c) = g.variable_names(v);
        (a, b, c)
    };
    let mut collections = Vec::new();
    for key in g.get_all_collection_keys() {
        let items: Vec<CollectionItem> = g.get_collection(&key, None)?;
        let defs = items
            .into_iter()
            .map(|it| match it {
                CollectionItem::Variable(v) => {
                    let (a, b, c) = var_names(v);
                    ItemDef::Variable(a, b, c)
                }
                CollectionItem::Tensor(t) => ItemDef::Tensor(g.op_name(t)),
                CollectionItem::Operation(o) => ItemDef::Operation(g.op_name(o)),
                CollectionItem::Str(s) => ItemDef::Str(s),
            })
            .collect();
        collections.push((key, defs));
    }
    let variables = g
        .get_variable_store()
        .into_iter()
        .map(|(k, v)| {
            let (a, b, c) = var_names(v);
            (k, a, b, c)
        })
        .collect();
    let saver = saver.map(|s| {
        s.entries()
            .iter()
            .map(|(k, v)| {
                let (a, b, c) = var_names(*v);
                (k.clone(), a, b, c)
            })
            .collect()
    });
    let def = MetaGraphDef {
        nodes,
        collections,
        variables,
        seed: g.random_seed(),
        saver,
    };
    let body = bincode::serialize(&def).map_err(|e| meta_err(path, e.to_string()))?;
    let mut bytes = Vec::with_capacity(body.len() + 24);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    let tmp = crate::files::temp_path(path);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| IoError::Io {
        path: path.into(),
        source,
    })
}

/// The meta-graph in `bytes`, read from `path` (named in errors).
fn read_def(path: &Path, bytes: &[u8]) -> Result<MetaGraphDef> {
    let word = |range: std::ops::Range<usize>| bytes.get(range).unwrap_or(&[]);
    if bytes.len() < 24 || word(0..8) != MAGIC {
        return Err(meta_err(path, "not a ferroflow meta-graph (bad magic)"));
    }
    let version = u32::from_le_bytes(word(8..12).try_into().unwrap_or([0; 4]));
    if version != VERSION {
        return Err(meta_err(
            path,
            format!("meta-graph version {version} is not supported (this build reads {VERSION})"),
        ));
    }
    let len = u64::from_le_bytes(word(12..20).try_into().unwrap_or([0; 8]));
    if len > MAX_BODY || len + 24 != bytes.len() as u64 {
        return Err(meta_err(
            path,
            format!(
                "body length {len} does not fit a file of {} bytes",
                bytes.len()
            ),
        ));
    }
    let body = word(20..20 + len as usize);
    let crc = u32::from_le_bytes(
        word(20 + len as usize..bytes.len())
            .try_into()
            .unwrap_or([0; 4]),
    );
    if crc32c::crc32c(body) != crc {
        return Err(meta_err(path, "checksum mismatch"));
    }
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(len)
        .deserialize(body)
        .map_err(|e| meta_err(path, format!("undecodable meta-graph: {e}")))
}

/// `tf.train.import_meta_graph(path)`: rebuilds the graph into a fresh `Graph`, with its collections and
/// get_variable store, and returns the saver stored with it (if any). A file in TensorFlow's
/// `MetaGraphDef` format (what a `Saver` writes beside a checkpoint in TF's format, or TensorFlow
/// itself) is imported whole by [`crate::import_tf_meta_graph`], with a saver of all its variables.
pub fn import_meta_graph(path: &Path) -> Result<(Graph, Option<Saver>)> {
    let bytes = crate::files::read_bounded(path, MAX_BODY + 24, "meta-graph")?;
    if !bytes.starts_with(&MAGIC) {
        let g = crate::tf_graph::import_tf_bytes(path, &bytes, &[])?;
        let vars: Vec<ferroflow_core::Variable> =
            g.get_collection(ferroflow_core::keys::GLOBAL_VARIABLES, None)?;
        let saver = if vars.is_empty() {
            None
        } else {
            Some(Saver::new(&g, vars)?)
        };
        return Ok((g, saver));
    }
    let def = read_def(path, &bytes)?;
    let g = Graph::new();
    for n in &def.nodes {
        use bincode::Options;
        let op: Op = bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .allow_trailing_bytes()
            .with_limit(n.op.len() as u64)
            .deserialize(&n.op)
            .map_err(|e| {
                meta_err(
                    path,
                    format!(
                        "node '{}': unknown or undecodable op type '{}' ({e})",
                        n.name, n.op_type
                    ),
                )
            })?;
        if op.type_name() != n.op_type {
            return Err(meta_err(
                path,
                format!(
                    "node '{}': op type '{}' is not known to this build",
                    n.name, n.op_type
                ),
            ));
        }
        let find = |name: &String| -> Result<Tensor> {
            g.get_operation_by_name(name)
                .map(|o| Tensor::from_index(o.index()))
                .map_err(|_| {
                    meta_err(
                        path,
                        format!(
                            "node '{}' refers to '{}', which is not defined before it",
                            n.name, name
                        ),
                    )
                })
        };
        let inputs = n.inputs.iter().map(find).collect::<Result<Vec<_>>>()?;
        let controls = n
            .control_inputs
            .iter()
            .map(|c| find(c).map(|t| t.op()))
            .collect::<Result<Vec<_>>>()?;
        g.import_node(&n.name, op, &inputs, &controls)
            .map_err(|e| meta_err(path, format!("node '{}': {e}", n.name)))?;
    }
    let var = |a: &str, b: &str, c: &str| {
        g.variable_from_names(a, b, c)
            .map_err(|e| meta_err(path, e.to_string()))
    };
    for (key, items) in &def.collections {
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            out.push(match it {
                ItemDef::Variable(a, b, c) => CollectionItem::Variable(var(a, b, c)?),
                ItemDef::Tensor(n) => CollectionItem::Tensor(
                    g.get_tensor_by_name(&format!("{n}:0"))
                        .map_err(|e| meta_err(path, e.to_string()))?,
                ),
                ItemDef::Operation(n) => CollectionItem::Operation(
                    g.get_operation_by_name(n)
                        .map_err(|e| meta_err(path, e.to_string()))?,
                ),
                ItemDef::Str(s) => CollectionItem::Str(s.clone()),
            });
        }
        g.set_collection(key, out);
    }
    for (k, a, b, c) in &def.variables {
        g.register_variable(k, var(a, b, c)?);
    }
    if let Some(seed) = def.seed {
        g.set_random_seed(seed);
    }
    let saver = match &def.saver {
        None => None,
        Some(list) => {
            let map = list
                .iter()
                .map(|(k, a, b, c)| Ok((k.clone(), var(a, b, c)?)))
                .collect::<Result<Vec<_>>>()?;
            Some(Saver::new(&g, map)?)
        }
    };
    Ok((g, saver))
}
