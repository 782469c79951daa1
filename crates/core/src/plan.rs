//! Compiling a (fetches, feeds, targets) signature into an immutable `Plan`: pruning to what the
//! fetches need, a prioritized topological order (reads first, writes last), the optimization passes,
//! and buffer freeing by liveness.

use crate::dtype::TensorInfo;
use crate::error::{Error, Result};
use crate::graph::GraphInner;
use crate::ops::apply::ApplyRule;
use crate::ops::random::Random;
use crate::ops::state::AssignMode;
use crate::ops::{Op, OpKind, Schedule};
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
    Assign {
        var: usize,
        mode: AssignMode,
        var_name: String,
    },
    /// A fused optimizer update of `var` and `slots` in place; inputs are the gradient and learning rate.
    /// `names` are the variable's and the slots' names, for errors.
    Apply {
        var: usize,
        slots: Vec<usize>,
        rule: ApplyRule,
        names: Vec<String>,
    },
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
    /// Whether the node was built by `gradients` (for the profile).
    pub(crate) gradient: bool,
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
    let skip = ref_inputs(n.op.as_ref());
    let mut d: Vec<usize> = n.inputs.iter().skip(skip).copied().collect();
    d.extend(&n.control_inputs);
    d
}

/// How many leading inputs of an op are variable references (written, not read).
fn ref_inputs(op: &Op) -> usize {
    match op {
        Op::Assign(_) => 1,
        Op::ApplyUpdate(a) => 1 + a.rule.slot_count(),
        _ => 0,
    }
}

/// True for ops that write variables: scheduled as late as their dependencies allow.
fn is_write(op: &Op) -> bool {
    matches!(op, Op::Assign(_) | Op::ApplyUpdate(_))
}

fn collect_needed(
    g: &GraphInner,
    roots: &[usize],
    is_leaf: &dyn Fn(usize) -> bool,
    resolve: &dyn Fn(usize) -> usize,
) -> HashSet<usize> {
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

/// Kahn's algorithm with priorities: variable reads first, then the ops that declare
/// [`Schedule::Early`], every other op, those that declare [`Schedule::Late`], and writes
/// (assignments, optimizer updates) only when nothing else is ready. So within a run every read sees
/// the values from before the run, and a variable is updated in place once no reader holds it.
/// Among other ops the earliest created runs first; among ready writes the latest created: the
/// optimizer's updates then run from the last layer to the first, so the first layers' weights are
/// the last written and still in the cache when the next step's forward pass reads them.
fn toposort(
    g: &GraphInner,
    needed: &HashSet<usize>,
    fed: &HashMap<usize, usize>,
) -> Result<Vec<usize>> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut ids: Vec<usize> = needed.iter().copied().collect();
    ids.sort_unstable();
    let mut pending: HashMap<usize, usize> = HashMap::with_capacity(ids.len());
    let mut consumers: HashMap<usize, Vec<usize>> = HashMap::with_capacity(ids.len());
    for &i in &ids {
        let deps: Vec<usize> = if fed.contains_key(&i) {
            vec![]
        } else {
            dependencies(g, i)
                .into_iter()
                .filter(|d| needed.contains(d))
                .collect()
        };
        pending.insert(i, deps.len());
        for d in deps {
            consumers.entry(d).or_default().push(i);
        }
    }
    const WRITE: u8 = 4;
    let rank = |i: usize| -> u8 {
        let op = g.nodes[i].op.as_ref();
        if matches!(op, Op::Variable(_)) && !fed.contains_key(&i) {
            0
        } else if is_write(op) {
            WRITE
        } else {
            match op.def().schedule() {
                Schedule::Early => 1,
                Schedule::Normal => 2,
                Schedule::Late => 3,
            }
        }
    };
    // Smallest first: rank, then creation order (reversed for writes), then the node itself.
    let entry = |i: usize| {
        let r = rank(i);
        Reverse((r, if r == WRITE { usize::MAX - i } else { i }, i))
    };
    let mut ready: BinaryHeap<Reverse<(u8, usize, usize)>> = ids
        .iter()
        .filter(|i| pending[i] == 0)
        .map(|&i| entry(i))
        .collect();
    let mut order = Vec::with_capacity(ids.len());
    while let Some(Reverse((_, _, i))) = ready.pop() {
        order.push(i);
        for &c in consumers.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(p) = pending.get_mut(&c) {
                *p -= 1;
                if *p == 0 {
                    ready.push(entry(c));
                }
            }
        }
    }
    if order.len() < ids.len() {
        let stuck = ids
            .iter()
            .find(|i| pending[i] > 0)
            .copied()
            .unwrap_or(ids[0]);
        return Err(Error::Cycle {
            node: g.nodes[stuck].name.clone(),
        });
    }
    Ok(order)
}

/// Compiles a plan. `optimize` turns on common-subexpression elimination, constant folding and the
/// fusions (those of products only with `fuse_products`).
pub(crate) fn compile(
    g: &GraphInner,
    fetches: &[usize],
    feeds: &[usize],
    targets: &[usize],
    optimize: bool,
    fuse_products: bool,
) -> Result<Plan> {
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

    let (alias, folded) = if optimize {
        passes::optimize(g, &order0, &fed)
    } else {
        (HashMap::new(), HashMap::new())
    };
    let resolve = |n: usize| alias.get(&n).copied().unwrap_or(n);
    let is_leaf = |n: usize| fed.contains_key(&n) || folded.contains_key(&n);
    let needed = collect_needed(g, &roots, &is_leaf, &resolve);
    let order: Vec<usize> = order0.into_iter().filter(|n| needed.contains(n)).collect();

    let slot_of: HashMap<usize, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let slot = |n: usize| -> Result<usize> {
        slot_of
            .get(&resolve(n))
            .copied()
            .ok_or_else(|| Error::internal(format!("node '{}' has no slot", g.nodes[n].name)))
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
                    return Err(Error::MissingFeed {
                        placeholder: n.name.clone(),
                        dtype: p.dtype,
                        shape: p.shape.clone(),
                    })
                }
                Op::Variable(_) => StepKind::ReadVar,
                Op::Assign(a) => {
                    inputs.push(slot(n.inputs[1])?);
                    StepKind::Assign {
                        var: n.inputs[0],
                        mode: a.mode,
                        var_name: g.nodes[n.inputs[0]].name.clone(),
                    }
                }
                Op::ApplyUpdate(a) => {
                    let k = a.rule.slot_count();
                    // grad, lr and, when the update scales the gradient, the scale.
                    for &i in &n.inputs[k + 1..] {
                        inputs.push(slot(i)?);
                    }
                    let names = n.inputs[..=k]
                        .iter()
                        .map(|&i| g.nodes[i].name.clone())
                        .collect();
                    StepKind::Apply {
                        var: n.inputs[0],
                        slots: n.inputs[1..=k].to_vec(),
                        rule: a.rule.clone(),
                        names,
                    }
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
                    debug_assert_ne!(op.kind(), OpKind::Stateful);
                    for &i in &n.inputs {
                        inputs.push(slot(i)?);
                    }
                    StepKind::Kernel(n.op.clone())
                }
            }
        };
        let var_info = match &kind {
            StepKind::Assign { var, .. } | StepKind::Apply { var, .. } => Some(g.info(*var)?),
            _ => None,
        };
        steps.push(Step {
            node: id,
            name: n.name.clone(),
            op_type: n.op.type_name(),
            gradient: crate::graph::is_gradient_name(&n.name),
            kind,
            inputs,
            out: slot(id)?,
            var_info,
            free: vec![],
        });
    }
    let fetch_slots = fetches
        .iter()
        .map(|&f| slot(f))
        .collect::<Result<Vec<_>>>()?;
    let n_slots = order.len();
    if optimize {
        fuse_relu(g, &mut steps, &fetch_slots);
        if fuse_products {
            self::fuse_products(g, &mut steps, &fetch_slots);
        }
    }
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
    Ok(Plan {
        steps,
        n_slots,
        fetch_slots,
        feeds: feed_list,
    })
}

/// The steps that read each slot, in order.
fn readers_of(steps: &[Step]) -> HashMap<usize, Vec<usize>> {
    let mut readers: HashMap<usize, Vec<usize>> = HashMap::new();
    for (si, s) in steps.iter().enumerate() {
        for &i in &s.inputs {
            readers.entry(i).or_default().push(si);
        }
    }
    readers
}

/// Removes the steps a fusion marked as merged into another.
fn drop_marked(steps: &mut Vec<Step>, marked: &[bool]) {
    let mut k = 0;
    steps.retain(|_| {
        k += 1;
        !marked[k - 1]
    });
}

/// Fuses each `Relu` whose only input is the output of a float `AddV2` (a bias add) or a
/// `BatchNormalization` that nothing else reads and nobody fetches into that step: the step writes
/// `max(y, 0)` into the `Relu`'s slot as it computes `y`, one pass over the data instead of two, with
/// the same operations (the same bits). The `Relu` step goes; its gradient (`ReluGrad`, which reads
/// the `Relu`'s output) is unchanged. (With `check_numerics`, a -inf before the `Relu` is then no
/// longer seen: the fused step's output holds 0 there.)
fn fuse_relu(g: &GraphInner, steps: &mut Vec<Step>, fetched: &[usize]) {
    let readers = readers_of(steps);
    let mut fused_away = vec![false; steps.len()];
    for i in 0..steps.len() {
        let StepKind::Kernel(op) = &steps[i].kind else {
            continue;
        };
        let float = g.info(steps[i].node).is_ok_and(|t| t.dtype.is_float());
        let Some(fused) = op.def().with_relu().filter(|_| float) else {
            continue;
        };
        let out = steps[i].out;
        let Some(&[j]) = readers.get(&out).map(Vec::as_slice) else {
            continue;
        };
        let relu = matches!(&steps[j].kind, StepKind::Kernel(r) if r.def().is_relu());
        if !relu || steps[j].inputs != [out] || fetched.contains(&out) {
            continue;
        }
        steps[i].op_type = fused.type_name();
        steps[i].kind = StepKind::Kernel(Arc::new(fused));
        steps[i].out = steps[j].out;
        fused_away[j] = true;
    }
    drop_marked(steps, &fused_away);
}

/// Fuses each float product whose output nobody fetches and one step alone reads, when that step
/// can be the product's epilogue (`OpDef::as_epilogue`: a bias add, or the `AddRelu` that
/// [`fuse_relu`] made of it, or an activation gradient whose gradient input is the product, such as
/// the `ReluGrad` of a layer's `dX = dZ·Wᵀ`): one step (`OpDef::with_epilogue`, the `MatMulFused`)
/// that runs the second op over each band of rows as soon as the band is computed (the same
/// operations, the same bits). The step takes the product's place (where a layer's `dX` stays next
/// to its `dW`, to be paired with it), or the second op's when that op's other input is computed
/// after the product (a bias read just before its add).
fn fuse_products(g: &GraphInner, steps: &mut Vec<Step>, fetched: &[usize]) {
    let readers = readers_of(steps);
    let producer: HashMap<usize, usize> = steps
        .iter()
        .enumerate()
        .map(|(si, s)| (s.out, si))
        .collect();
    let mut fused_away = vec![false; steps.len()];
    for i in 0..steps.len() {
        let StepKind::Kernel(op) = &steps[i].kind else {
            continue;
        };
        let float = g.info(steps[i].node).is_ok_and(|t| t.dtype.is_float());
        let out = steps[i].out;
        let Some(&[j]) = readers.get(&out).map(Vec::as_slice) else {
            continue;
        };
        if !float || fetched.contains(&out) || fused_away[j] {
            continue;
        }
        let StepKind::Kernel(second) = &steps[j].kind else {
            continue;
        };
        let (&[a, b], Some(k)) = (
            steps[j].inputs.as_slice(),
            steps[j].inputs.iter().position(|&s| s == out),
        ) else {
            continue;
        };
        let extra = if k == 0 { b } else { a };
        let Some(fused) = second
            .def()
            .as_epilogue(k)
            .and_then(|e| op.def().with_epilogue(e))
        else {
            continue;
        };
        if extra == out {
            continue;
        }
        let mut inputs = steps[i].inputs.clone();
        inputs.push(extra);
        let (at, away) = if producer.get(&extra).is_some_and(|&k| k > i) {
            (j, i)
        } else {
            (i, j)
        };
        let (node, name, gradient) = (steps[i].node, steps[i].name.clone(), steps[i].gradient);
        let out = steps[j].out;
        let s = &mut steps[at];
        (s.node, s.name, s.gradient) = (node, name, gradient);
        s.op_type = fused.type_name();
        s.kind = StepKind::Kernel(Arc::new(fused));
        s.inputs = inputs;
        s.out = out;
        s.var_info = None;
        fused_away[away] = true;
    }
    drop_marked(steps, &fused_away);
}

#[cfg(test)]
mod tests {
    use crate::dtype::DType;
    use crate::graph::Graph;
    use crate::value::Value;

    /// Independent writes run latest created first, after every read; other ops in creation order.
    #[test]
    fn ready_writes_run_latest_created_first() {
        let g = Graph::new();
        let one = || {
            g.constant(Value::filled(DType::F32, &[2], 1.0).unwrap())
                .unwrap()
        };
        let vars: Vec<_> = (0..3)
            .map(|i| g.variable(&format!("v{i}"), one(), true).unwrap())
            .collect();
        let reads: Vec<_> = vars
            .iter()
            .map(|v| g.identity(v.value()).unwrap())
            .collect();
        let writes: Vec<_> = vars
            .iter()
            .map(|&v| g.assign_add(v, one()).unwrap())
            .collect();
        let fetches: Vec<usize> = reads.iter().map(|t| t.index()).collect();
        let targets: Vec<usize> = writes.iter().map(|t| t.op().index()).collect();
        let plan = g
            .with_inner(|gi| super::compile(gi, &fetches, &[], &targets, false, false))
            .unwrap();
        let at = |id: usize| plan.steps.iter().position(|s| s.node == id).unwrap();
        let (r, w): (Vec<usize>, Vec<usize>) = (
            reads.iter().map(|t| at(t.index())).collect(),
            writes.iter().map(|t| at(t.op().index())).collect(),
        );
        assert!(r.windows(2).all(|p| p[0] < p[1]), "reads {r:?}");
        assert!(w.windows(2).all(|p| p[0] > p[1]), "writes {w:?}");
        assert!(r.iter().all(|&ri| w.iter().all(|&wi| ri < wi)));
    }
}
