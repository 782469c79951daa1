//! The graph: an append-only arena of named nodes, with small `Copy` handles to its tensors,
//! operations and variables.

mod collections;
mod dot;
mod naming;
mod variables;

pub use collections::{keys, CollectionItem, FromCollectionItem, ScopeRegex};
pub use naming::{is_gradient_name, Reuse, ScopeGuard};
pub use variables::{VarOptions, Variable};

use crate::dtype::{DType, Shape, TensorInfo};
use crate::error::{Error, Result};
use crate::ops::{InferError, Op};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A symbolic tensor: the single output of one node (TF's `Tensor`, named `op_name:0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tensor {
    pub(crate) id: usize,
}

/// A node seen as an operation, for running as a target or for control dependencies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Operation {
    pub(crate) id: usize,
}

impl Tensor {
    /// The operation that produces this tensor.
    pub fn op(self) -> Operation {
        Operation { id: self.id }
    }
    /// The node's index in its graph.
    pub fn index(self) -> usize {
        self.id
    }
    /// The handle of node `index` (checked by every API that uses it).
    pub fn from_index(index: usize) -> Tensor {
        Tensor { id: index }
    }
}

impl Operation {
    /// The node's index in its graph.
    pub fn index(self) -> usize {
        self.id
    }
}

impl From<Tensor> for Operation {
    fn from(t: Tensor) -> Self {
        t.op()
    }
}

/// One node of the graph.
#[derive(Clone, Debug)]
pub struct Node {
    /// Unique op name (`dnn/hidden1/MatMul`).
    pub name: String,
    /// The op with its attributes.
    pub op: Arc<Op>,
    /// Data inputs, in order.
    pub inputs: Vec<usize>,
    /// Control inputs: nodes that must run first.
    pub control_inputs: Vec<usize>,
    /// The output's dtype and static shape; `None` for ops without a value (NoOp, group).
    pub output: Option<TensorInfo>,
}

pub(crate) struct GraphInner {
    pub(crate) nodes: Vec<Node>,
    pub(crate) by_name: HashMap<String, usize>,
    pub(crate) names_in_use: HashMap<String, usize>,
    pub(crate) name_stack: String,
    pub(crate) var_scopes: Vec<naming::VarScopeFrame>,
    pub(crate) control_stack: Vec<Vec<usize>>,
    pub(crate) collections: HashMap<String, Vec<CollectionItem>>,
    pub(crate) variables: HashMap<String, Variable>,
    pub(crate) seed: Option<u64>,
    /// A name set by `Graph::named` for the next node created without an explicit name.
    pub(crate) pending_name: Option<String>,
    /// Bumped whenever an existing node changes (control inputs added), which invalidates cached plans.
    pub(crate) version: u64,
}

/// A computation graph. Cloning gives another handle to the same graph, like passing TF's graph
/// object around; builder methods take `&self` so a session and builders can share it.
#[derive(Clone)]
pub struct Graph {
    inner: Arc<RwLock<GraphInner>>,
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Graph({} nodes)", self.len())
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Graph {
            inner: Arc::new(RwLock::new(GraphInner {
                nodes: Vec::new(),
                by_name: HashMap::new(),
                names_in_use: HashMap::new(),
                name_stack: String::new(),
                var_scopes: Vec::new(),
                control_stack: Vec::new(),
                collections: HashMap::new(),
                variables: HashMap::new(),
                seed: None,
                pending_name: None,
                version: 0,
            })),
        }
    }

    pub(crate) fn with_inner<R>(&self, f: impl FnOnce(&GraphInner) -> R) -> R {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        f(&g)
    }

    pub(crate) fn with_inner_mut<R>(&self, f: impl FnOnce(&mut GraphInner) -> R) -> R {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// True when both handles refer to the same graph.
    pub fn same_graph(&self, other: &Graph) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.with_inner(|g| g.nodes.len())
    }

    /// True when the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the graph-level random seed (TF's `tf.set_random_seed`); ops created afterwards are
    /// reproducible from run to run.
    pub fn set_random_seed(&self, seed: u64) {
        self.with_inner_mut(|g| g.seed = Some(seed));
    }

    /// The graph-level seed, if set.
    pub fn random_seed(&self) -> Option<u64> {
        self.with_inner(|g| g.seed)
    }

    /// Names the next op a builder creates (TF's `name=` argument): `g.named("logits").matmul(a, b)`.
    /// Composite builders use the name for their scope and final op, as TF's composites do.
    ///
    /// The name goes to the *next node created*, so build the inputs first:
    /// `g.named("y").relu(g.matmul(a, b)?)` would name the MatMul, not the Relu.
    pub fn named(&self, name: &str) -> &Self {
        self.with_inner_mut(|g| g.pending_name = Some(name.to_string()));
        self
    }

    /// Takes the name set by `named`, if any (for composite builders, before they create inner ops).
    pub fn take_pending_name(&self) -> Option<String> {
        self.with_inner_mut(|g| g.pending_name.take())
    }

    pub(crate) fn version(&self) -> u64 {
        self.with_inner(|g| g.version)
    }

    /// Adds a node: uniquifies the name under the current name scope, checks the inputs, runs the
    /// op's dtype/shape inference and attaches the active control dependencies.
    ///
    /// `name` is the user's explicit name; `default_name` is used when it is `None`.
    pub fn add_node(
        &self,
        op: Op,
        inputs: &[Tensor],
        name: Option<&str>,
        default_name: &str,
    ) -> Result<Tensor> {
        self.with_inner_mut(|g| g.add_node(op, inputs, name, default_name))
    }

    /// Adds a node with an exact name and explicit control inputs, running shape inference (meta-graph
    /// import). An existing name is an error.
    pub fn import_node(
        &self,
        name: &str,
        op: Op,
        inputs: &[Tensor],
        control_inputs: &[Operation],
    ) -> Result<Tensor> {
        let t = self.with_inner_mut(|g| {
            let saved = std::mem::take(&mut g.name_stack);
            let saved_ctrl = std::mem::take(&mut g.control_stack);
            let r = g.add_node(op, inputs, Some(&format!("{name}/")), "");
            g.name_stack = saved;
            g.control_stack = saved_ctrl;
            r
        })?;
        self.with_inner_mut(|g| -> Result<()> {
            for c in control_inputs {
                g.node_ref(c.id)?;
            }
            g.nodes[t.id].control_inputs = control_inputs.iter().map(|c| c.id).collect();
            Ok(())
        })?;
        Ok(t)
    }

    /// A snapshot of node `id` (name, op, inputs, control inputs, output info).
    pub fn node(&self, id: usize) -> Result<Node> {
        self.with_inner(|g| g.node_ref(id).cloned())
    }

    /// The op name of a node.
    pub fn op_name(&self, op: impl Into<Operation>) -> String {
        let id = op.into().id;
        self.with_inner(|g| {
            g.nodes
                .get(id)
                .map(|n| n.name.clone())
                .unwrap_or_else(|| format!("<unknown node #{id}>"))
        })
    }

    /// The tensor name (`dnn/hidden1/Relu:0`).
    pub fn tensor_name(&self, t: Tensor) -> String {
        format!("{}:0", self.op_name(t))
    }

    /// The op type of a node (`MatMul`, `AddV2`, ...).
    pub fn op_type(&self, op: impl Into<Operation>) -> String {
        let id = op.into().id;
        self.with_inner(|g| {
            g.nodes
                .get(id)
                .map(|n| n.op.type_name().to_string())
                .unwrap_or_default()
        })
    }

    /// Static dtype and shape of a tensor.
    pub fn info(&self, t: Tensor) -> Result<TensorInfo> {
        self.with_inner(|g| g.info(t.id))
    }

    /// Static dtype of a tensor.
    pub fn dtype(&self, t: Tensor) -> Result<DType> {
        Ok(self.info(t)?.dtype)
    }

    /// Static shape of a tensor.
    pub fn shape(&self, t: Tensor) -> Result<Shape> {
        Ok(self.info(t)?.shape)
    }

    /// The data inputs of an operation.
    pub fn inputs(&self, op: impl Into<Operation>) -> Result<Vec<Tensor>> {
        let id = op.into().id;
        self.with_inner(|g| {
            Ok(g.node_ref(id)?
                .inputs
                .iter()
                .map(|&i| Tensor { id: i })
                .collect())
        })
    }

    /// Looks up a tensor by name (`"dnn/hidden1/Relu:0"`). An op name without `:0` is an error, as in TF.
    pub fn get_tensor_by_name(&self, name: &str) -> Result<Tensor> {
        let Some((op, idx)) = name.rsplit_once(':') else {
            return Err(Error::OperationNotTensor {
                name: name.to_string(),
            });
        };
        let id = self.with_inner(|g| g.by_name.get(op).copied());
        match (id, idx) {
            (Some(id), "0") => {
                if self.with_inner(|g| g.nodes[id].output.is_none()) {
                    Err(Error::NotFound {
                        what: format!("tensor '{name}' (operation '{op}' has no outputs)"),
                    })
                } else {
                    Ok(Tensor { id })
                }
            }
            (Some(_), _) => Err(Error::NotFound {
                what: format!("tensor '{name}' (operation '{op}' has one output, :0)"),
            }),
            (None, _) => Err(Error::NotFound {
                what: format!("tensor '{name}' (no operation named '{op}')"),
            }),
        }
    }

    /// Looks up an operation by name (`"dnn/hidden1/MatMul"`).
    pub fn get_operation_by_name(&self, name: &str) -> Result<Operation> {
        self.with_inner(|g| g.by_name.get(name).copied())
            .map(|id| Operation { id })
            .ok_or_else(|| Error::NotFound {
                what: format!("operation '{name}'"),
            })
    }

    /// Every operation in creation order.
    pub fn operations(&self) -> Vec<Operation> {
        (0..self.len()).map(|id| Operation { id }).collect()
    }

    /// Adds a control input to an existing op (TF's `op._add_control_input`). This can create a cycle,
    /// which the session reports when it compiles a plan through it.
    pub fn add_control_input(&self, op: Operation, dep: Operation) -> Result<()> {
        self.with_inner_mut(|g| {
            g.node_ref(dep.id)?;
            let node = g.nodes.get_mut(op.id).ok_or_else(|| Error::NotFound {
                what: format!("operation #{}", op.id),
            })?;
            if !node.control_inputs.contains(&dep.id) {
                node.control_inputs.push(dep.id);
            }
            g.version += 1;
            Ok(())
        })
    }
}

impl GraphInner {
    pub(crate) fn node_ref(&self, id: usize) -> Result<&Node> {
        self.nodes.get(id).ok_or_else(|| Error::NotFound {
            what: format!("node #{id} (a handle from another graph?)"),
        })
    }

    pub(crate) fn info(&self, id: usize) -> Result<TensorInfo> {
        let n = self.node_ref(id)?;
        n.output.clone().ok_or_else(|| Error::NoOutput {
            name: n.name.clone(),
            op: n.op.type_name().into(),
        })
    }

    pub(crate) fn add_node(
        &mut self,
        op: Op,
        inputs: &[Tensor],
        name: Option<&str>,
        default_name: &str,
    ) -> Result<Tensor> {
        let at_root = self.name_stack.is_empty();
        let pending = if name.is_none() {
            self.pending_name.take()
        } else {
            None
        };
        let name = name.or(pending.as_deref());
        // A name ending in '/' is an exact absolute op name (TF's convention for naming the final op of
        // a composite after its scope).
        let exact = name.and_then(|n| n.strip_suffix('/'));
        if let Some(n) = name.filter(|_| exact.is_none()) {
            naming::validate_name(n, at_root)?;
        }
        let infos = inputs
            .iter()
            .map(|t| self.info(t.id))
            .collect::<Result<Vec<_>>>()?;
        let base = name.unwrap_or(default_name);
        // Infer before reserving the name so a failed build leaves the graph's names unchanged.
        let provisional = if self.name_stack.is_empty() {
            base.to_string()
        } else {
            format!("{}/{}", self.name_stack, base)
        };
        let output = op.infer(&infos).map_err(|e| {
            let op_name = op.type_name().to_string();
            let shapes: Vec<String> = infos
                .iter()
                .map(|i| format!("{} {}", i.dtype, i.shape))
                .collect();
            let inputs = shapes.join(", ");
            match e {
                InferError::DType(m) => Error::DType {
                    node: provisional.clone(),
                    op: op_name,
                    message: format!("{m} (inputs: [{inputs}])"),
                },
                InferError::Shape(m) => Error::Shape {
                    node: provisional.clone(),
                    op: op_name,
                    message: format!("{m} (inputs: [{inputs}])"),
                },
            }
        })?;
        let unique = match exact {
            Some(e) => {
                if self.by_name.contains_key(e) {
                    return Err(Error::InvalidName {
                        name: e.to_string(),
                        message: "an op with this name already exists".into(),
                    });
                }
                self.names_in_use.entry(e.to_lowercase()).or_insert(1);
                e.to_string()
            }
            None => self.unique_name(base, true),
        };
        let id = self.nodes.len();
        let mut control_inputs: Vec<usize> = Vec::new();
        for frame in &self.control_stack {
            for &c in frame {
                if !control_inputs.contains(&c) {
                    control_inputs.push(c);
                }
            }
        }
        self.by_name.insert(unique.clone(), id);
        self.nodes.push(Node {
            name: unique,
            op: Arc::new(op),
            inputs: inputs.iter().map(|t| t.id).collect(),
            control_inputs,
            output,
        });
        Ok(Tensor { id })
    }
}
