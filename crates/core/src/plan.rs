//! Compiling a (fetches, feeds, targets) signature into an immutable `Plan`: pruning to what the
//! fetches need, topological order (petgraph), the optimization passes, and buffer freeing by liveness.

use crate::dtype::TensorInfo;
use crate::error::{Error, Result};
use crate::graph::GraphInner;
use crate::ops::random::Random;
use crate::ops::state::AssignMode;
use crate::ops::{Op, OpKind};
use crate::passes;
use crate::value::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What one step of a plan does.
#[derive(Debug)]
pub(crate) enum StepKind {
    /// Run a pure kernel.
    Kernel(Arc<Op>),
    /// A constant (from the graph or folded at compile time).
    Const(Arc<Value>),
    /// Read a variable's current value.
    ReadVar,
    /// Write a variable; `var` is its storage node.
    Assign { var: usize, mode: AssignMode },
    /// Draw from a random op's stream.
    Random(Random),
    /// Nothing (NoOp, group): only ordering.
    NoOp,
    /// The output is the input value itself, shared without a copy (Identity, StopGradient, ...).
    Alias,
}

/// One step: a node to execute, its input slots, its output slot and the slots freed after it.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) node: usize,
    pub(crate) name: String,
    pub(crate) op_type: &'static str,
    pub(crate) kind: StepKind,
    pub(crate) inputs: Vec<usize>,
    pub(crate) out: usize,
    /// Static info of a variable written by this step (for run-time shape checks).
    pub(crate) var_info: Option<TensorInfo>,
    pub(crate) free: Vec<usize>,
}

/// An immutable execution plan for one (fetches, feeds, targets) signature.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) steps: Vec<Step>,
    pub(crate) n_slots: usize,
    pub(crate) fetch_slots: Vec<usize>,
    /// For each feed: its slot (`None` when nothing needs it), name and static info (checked against
    /// the fed value on every run).
    pub(crate) feeds: Vec<(Option<usize>, String, TensorInfo)>,
}

/// The nodes a node depends on for execution: data inputs (except the variable reference of an
/// `Assign`) and control inputs.
pub(crate) fn dependencies(g: &GraphInner, id: usize) -> Vec<usize> {
    let n = &g.nodes[id];
    let skip_first = matches!(n.op.as_ref(), Op::Assign(_));
    let mut d: Vec<usize> = n.inputs.iter().skip(usize::from(skip_first)).copied().collect();
    d.extend(&n.control_inputs);
    d
}

fn collect_needed(g: &GraphInner, roots: &[usize], is_leaf: &dyn Fn(usize) -> bool, resolve: &dyn Fn(usize) -> usize) -> HashSet<usize> {
    let mut needed = HashSet::new();
    let mut stack: Vec<usize> = roots.iter().map(|&r| resolve(r)).collect();
    while let Some(id) = stack.pop() {
        if !needed.insert(id) || is_leaf(id) {
            continue;
        }
        for d in dependencies(g, id) {
            let d = resolve(d);
            if !needed.contains(&d) {
                stack.push(d);
            }
        }
    }
    needed
}

fn toposort(g: &GraphInner, needed: &HashSet<usize>, fed: &HashMap<usize, usize>) -> Result<Vec<usize>> {
    let mut ids: Vec<usize> = needed.iter().copied().collect();
    ids.sort_unstable();
    let mut pg = petgraph::graph::DiGraph::<usize, ()>::with_capacity(ids.len(), ids.len() * 2);
    let idx: HashMap<usize, petgraph::graph::NodeIndex> = ids.iter().map(|&i| (i, pg.add_node(i))).collect();
    for &i in &ids {
        if fed.contains_key(&i) {
            continue;
        }
        for d in dependencies(g, i) {
            if let Some(&from) = idx.get(&d) {
                pg.add_edge(from, idx[&i], ());
            }
        }
    }
    let order = petgraph::algo::toposort(&pg, None)
        .map_err(|c| Error::Cycle { node: g.nodes[pg[c.node_id()]].name.clone() })?;
    let mut order: Vec<usize> = order.into_iter().map(|n| pg[n]).collect();
    // Variable reads without control inputs go first, so that every read in a run sees the values
    // from before any assignment of that run (one train op = one step).
    order.sort_by_key(|&i| {
        let n = &g.nodes[i];
        !(matches!(n.op.as_ref(), Op::Variable(_)) && n.control_inputs.is_empty() && !fed.contains_key(&i))
    });
    Ok(order)
}

/// Compiles a plan. `optimize` turns on common-subexpression elimination and constant folding.
pub(crate) fn compile(g: &GraphInner, fetches: &[usize], feeds: &[usize], targets: &[usize], optimize: bool) -> Result<Plan> {
    for &id in fetches.iter().chain(feeds).chain(targets) {
        g.node_ref(id)?;
    }
    for &f in fetches.iter().chain(feeds) {
        g.info(f)?;
    }
    let fed: HashMap<usize, usize> = feeds.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let roots: Vec<usize> = fetches.iter().chain(targets).copied().collect();
    let identity = |n: usize| n;
    let is_fed = |n: usize| fed.contains_key(&n);
    let needed0 = collect_needed(g, &roots, &is_fed, &identity);
    let order0 = toposort(g, &needed0, &fed)?;

    let (alias, folded) = if optimize { passes::optimize(g, &order0, &fed) } else { (HashMap::new(), HashMap::new()) };
    let resolve = |n: usize| alias.get(&n).copied().unwrap_or(n);
    let is_leaf = |n: usize| fed.contains_key(&n) || folded.contains_key(&n);
    let needed = collect_needed(g, &roots, &is_leaf, &resolve);
    let order: Vec<usize> = order0.into_iter().filter(|n| needed.contains(n)).collect();

    let slot_of: HashMap<usize, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let slot = |n: usize| -> Result<usize> {
        slot_of.get(&resolve(n)).copied().ok_or_else(|| Error::other(format!("internal: node '{}' has no slot", g.nodes[n].name)))
    };

    let mut steps = Vec::with_capacity(order.len());
    let mut feed_list = feeds
        .iter()
        .map(|&f| Ok((None, g.nodes[f].name.clone(), g.info(f)?)))
        .collect::<Result<Vec<(Option<usize>, String, TensorInfo)>>>()?;
    for &id in &order {
        let n = &g.nodes[id];
        if let Some(&fi) = fed.get(&id) {
            feed_list[fi].0 = Some(slot(id)?);
            continue;
        }
        let mut inputs = Vec::new();
        let kind = if let Some(v) = folded.get(&id) {
            StepKind::Const(Arc::new(v.clone()))
        } else {
            match n.op.as_ref() {
                Op::Const(c) => StepKind::Const(Arc::new(c.value.clone())),
                Op::Placeholder(p) => {
                    return Err(Error::MissingFeed { placeholder: n.name.clone(), dtype: p.dtype, shape: p.shape.clone() })
                }
                Op::Variable(_) => StepKind::ReadVar,
                Op::Assign(a) => {
                    inputs.push(slot(n.inputs[1])?);
                    StepKind::Assign { var: n.inputs[0], mode: a.mode }
                }
                Op::Random(r) => {
                    for &i in &n.inputs {
                        inputs.push(slot(i)?);
                    }
                    StepKind::Random(r.clone())
                }
                Op::NoOp(_) => StepKind::NoOp,
                Op::Identity(_) | Op::StopGradient(_) | Op::PlaceholderWithDefault(_) => {
                    inputs.push(slot(n.inputs[0])?);
                    StepKind::Alias
                }
                op => {
                    debug_assert_eq!(op.kind(), OpKind::Pure);
                    for &i in &n.inputs {
                        inputs.push(slot(i)?);
                    }
                    StepKind::Kernel(n.op.clone())
                }
            }
        };
        let var_info = match &kind {
            StepKind::Assign { var, .. } => Some(g.info(*var)?),
            _ => None,
        };
        steps.push(Step { node: id, name: n.name.clone(), op_type: n.op.type_name(), kind, inputs, out: slot(id)?, var_info, free: vec![] });
    }
    let fetch_slots = fetches.iter().map(|&f| slot(f)).collect::<Result<Vec<_>>>()?;
    let n_slots = order.len();
    // Liveness: free each slot after its last reader, unless it is fetched.
    let mut last_use: HashMap<usize, usize> = HashMap::new();
    for (si, s) in steps.iter().enumerate() {
        for &i in &s.inputs {
            last_use.insert(i, si);
        }
    }
    let fetched: HashSet<usize> = fetch_slots.iter().copied().collect();
    for (slot_id, si) in last_use {
        if !fetched.contains(&slot_id) {
            steps[si].free.push(slot_id);
        }
    }
    Ok(Plan { steps, n_slots, fetch_slots, feeds: feed_list })
}
