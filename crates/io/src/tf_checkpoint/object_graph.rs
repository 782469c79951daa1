//! TF2's object-based checkpoints (`tf.train.Checkpoint`): the string entry
//! `_CHECKPOINTABLE_OBJECT_GRAPH` holds a `TrackableObjectGraph`, the objects the checkpoint was
//! saved from (the root, a model, its layers, an optimizer, variables) with the names by which
//! each refers to the others and the checkpoint key of each variable's value. A key is the first
//! object path that reached the variable when it was saved (with Keras 3 the model's variables are
//! first reached through the optimizer: `optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE`),
//! so the graph is what tells which layer a key belongs to.

use super::TfCheckpointReader;
use crate::{IoError, Result};
use std::collections::BTreeMap;

/// The key of the object graph in a TF2 checkpoint.
pub const OBJECT_GRAPH_KEY: &str = "_CHECKPOINTABLE_OBJECT_GRAPH";

/// TF's `TrackableObjectGraph`.
#[derive(Clone, PartialEq, prost::Message)]
struct Graph {
    #[prost(message, repeated, tag = "1")]
    nodes: Vec<Object>,
}

/// TF's `TrackableObjectGraph.TrackableObject` (the fields ferroflow uses).
#[derive(Clone, PartialEq, prost::Message)]
struct Object {
    #[prost(message, repeated, tag = "1")]
    children: Vec<Reference>,
    #[prost(message, repeated, tag = "2")]
    attributes: Vec<Attribute>,
}

/// `ObjectReference`: a child and the name its parent calls it by.
#[derive(Clone, PartialEq, prost::Message)]
struct Reference {
    #[prost(int32, tag = "1")]
    node_id: i32,
    #[prost(string, tag = "2")]
    local_name: String,
}

/// `SerializedTensor`: a value saved for the object, under `checkpoint_key`.
#[derive(Clone, PartialEq, prost::Message)]
struct Attribute {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "3")]
    checkpoint_key: String,
}

/// One object of the graph: its children (node, the name it calls each by) and the checkpoint
/// keys of its saved values.
#[derive(Clone, Debug, PartialEq)]
struct Node {
    children: Vec<(usize, String)>,
    keys: Vec<String>,
}

/// A checkpoint's object graph, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectGraph {
    nodes: Vec<Node>,
}

impl ObjectGraph {
    /// The object graph of `reader`'s checkpoint; `None` for a checkpoint without one (TF1's
    /// name-based checkpoints).
    pub fn read(reader: &TfCheckpointReader) -> Result<Option<Self>> {
        let Some(mut elements) = reader.read_strings(OBJECT_GRAPH_KEY)? else {
            return Ok(None);
        };
        let corrupt = |message: String| IoError::Corrupt {
            path: super::switch::index_path(&reader.prefix),
            message: format!("{OBJECT_GRAPH_KEY}: {message}"),
        };
        let bytes = match (elements.pop(), elements.is_empty()) {
            (Some(b), true) => b,
            _ => return Err(corrupt("not a single string".into())),
        };
        let graph = <Graph as prost::Message>::decode(bytes.as_slice())
            .map_err(|e| corrupt(format!("undecodable object graph: {e}")))?;
        let n = graph.nodes.len();
        let nodes = graph
            .nodes
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                let children = o
                    .children
                    .into_iter()
                    .map(|r| match usize::try_from(r.node_id) {
                        Ok(id) if id < n => Ok((id, r.local_name)),
                        _ => Err(corrupt(format!(
                            "node {i} names child {} of {n} nodes",
                            r.node_id
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let keys = o.attributes.into_iter().map(|a| a.checkpoint_key).collect();
                Ok(Node { children, keys })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(ObjectGraph { nodes }))
    }

    /// The object paths of each checkpoint key: a breadth-first walk from the root that expands
    /// each object once, from the first path that reaches it; every reference to an object adds a
    /// path to it (`model/_functional/_operations/1/_kernel` beside
    /// `optimizer/_trainable_variables/0`), in the order the walk meets them.
    pub fn paths(&self) -> BTreeMap<String, Vec<String>> {
        let mut first: Vec<Option<String>> = vec![None; self.nodes.len()];
        let mut into: Vec<Vec<String>> = vec![Vec::new(); self.nodes.len()];
        let mut queue = std::collections::VecDeque::new();
        if let Some(root) = first.first_mut() {
            *root = Some(String::new());
            queue.push_back(0);
        }
        while let Some(i) = queue.pop_front() {
            let base = first.get(i).cloned().flatten().unwrap_or_default();
            let Some(node) = self.nodes.get(i) else {
                continue;
            };
            for (child, name) in &node.children {
                let path = if base.is_empty() {
                    name.clone()
                } else {
                    format!("{base}/{name}")
                };
                if let Some(p) = into.get_mut(*child) {
                    p.push(path.clone());
                }
                if let Some(slot @ None) = first.get_mut(*child) {
                    *slot = Some(path);
                    queue.push_back(*child);
                }
            }
        }
        let mut out = BTreeMap::new();
        for (node, paths) in self.nodes.iter().zip(into) {
            for key in &node.keys {
                out.insert(key.clone(), paths.clone());
            }
        }
        out
    }

    /// The checkpoint key of the value saved for the object at `path` (any of its paths), for a
    /// key map such as `VarList::from(vec![(key, variable)])`.
    pub fn key_of(&self, path: &str) -> Option<String> {
        self.paths()
            .into_iter()
            .find(|(_, paths)| paths.iter().any(|p| p == path))
            .map(|(key, _)| key)
    }
}
