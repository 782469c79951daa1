//! Compiler passes over the pruned forward+backward graph: common-subexpression elimination and
//! constant folding. They never change a result; the session can turn them off to prove it.

use crate::graph::GraphInner;
use crate::ops::{Op, OpKind};
use crate::value::Value;
use std::collections::HashMap;

/// Folded results larger than this many elements stay as run-time computations, to keep plans small.
const MAX_FOLDED_ELEMENTS: usize = 1 << 20;

/// Runs CSE and constant folding over `order` (a topological order). Returns the alias map
/// (node → equivalent earlier node) and the folded constants (node → value).
pub(crate) fn optimize(
    g: &GraphInner,
    order: &[usize],
    fed: &HashMap<usize, usize>,
) -> (HashMap<usize, usize>, HashMap<usize, Value>) {
    let mut alias: HashMap<usize, usize> = HashMap::new();
    let mut folded: HashMap<usize, Value> = HashMap::new();
    let mut seen: HashMap<(String, Vec<usize>), usize> = HashMap::new();
    for &id in order {
        if fed.contains_key(&id) {
            continue;
        }
        let n = &g.nodes[id];
        if n.op.kind() != OpKind::Pure || !n.control_inputs.is_empty() {
            continue;
        }
        let inputs: Vec<usize> = n
            .inputs
            .iter()
            .map(|i| alias.get(i).copied().unwrap_or(*i))
            .collect();
        let is_const = matches!(n.op.as_ref(), Op::Const(_));
        // Constant folding: a pure op whose inputs are all constants.
        if !is_const && !inputs.is_empty() {
            let consts: Option<Vec<&Value>> = inputs
                .iter()
                .map(|i| match (folded.get(i), g.nodes[*i].op.as_ref()) {
                    (Some(v), _) => Some(v),
                    (None, Op::Const(c)) if !fed.contains_key(i) => Some(&c.value),
                    _ => None,
                })
                .collect();
            if let Some(vals) = consts {
                if let Ok(v) = n.op.compute(&ferroflow_cpu::Context::serial(), &vals) {
                    if v.len() <= MAX_FOLDED_ELEMENTS {
                        folded.insert(id, v);
                        continue;
                    }
                }
            }
        }
        // CSE: the same op with the same (canonical) inputs computes the same value. Constants are
        // keyed by their value only when small.
        if is_const
            && n.output
                .as_ref()
                .and_then(|o| o.shape.num_elements())
                .is_none_or(|e| e > 16)
        {
            continue;
        }
        let key = (format!("{:?}", n.op), inputs);
        match seen.get(&key) {
            Some(&earlier) => {
                alias.insert(id, earlier);
            }
            None => {
                seen.insert(key, id);
            }
        }
    }
    (alias, folded)
}
