//! Symbolic differentiation (TF's `tf.gradients`): gradient ops are added to the same graph under
//! `gradients/<op>_grad/`, so they can be fetched, clipped, saved and differentiated again.

use crate::dtype::Shape;
use crate::error::{Error, Result};
use crate::graph::{Graph, Tensor};
use crate::ops::{GradContext, Op};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What an x that does not influence any y gets (TF's `unconnected_gradients`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnconnectedGradients {
    /// `None` (TF's default).
    #[default]
    None,
    /// `zeros_like(x)`.
    Zero,
}

/// Options of `gradients_with`.
#[derive(Clone, Debug, Default)]
pub struct GradientOptions {
    /// Upstream gradients for each y (TF's `grad_ys`); ones when `None`.
    pub grad_ys: Option<Vec<Tensor>>,
    /// Tensors treated as constants: no gradient flows through them (TF's `stop_gradients`).
    pub stop_gradients: Vec<Tensor>,
    /// What unconnected xs get.
    pub unconnected: UnconnectedGradients,
}

/// The shape check on every gradient rule's result: the gradient of an input must fit its shape.
fn check_gradient_shape(
    node: &str,
    op: &str,
    input: usize,
    grad: &Shape,
    input_shape: &Shape,
) -> Result<()> {
    if grad.compatible_with(input_shape) {
        Ok(())
    } else {
        Err(Error::GradientShape {
            node: node.into(),
            op: op.into(),
            input,
            grad_shape: grad.clone(),
            input_shape: input_shape.clone(),
        })
    }
}

struct NodeView {
    name: String,
    op: Arc<Op>,
    inputs: Vec<usize>,
}

impl Graph {
    /// `tf.gradients(ys, xs)`: d(sum of ys)/dx for each x, `None` where x does not influence the ys.
    pub fn gradients(&self, ys: &[Tensor], xs: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        self.gradients_with(ys, xs, GradientOptions::default())
    }

    /// `tf.gradients(ys, xs, grad_ys, stop_gradients, unconnected_gradients)`.
    ///
    /// TF's algorithm: only ops on a path from the xs to the ys take part; they are visited in reverse
    /// topological order; gradients arriving from several consumers are summed with `AddN`; integer and
    /// bool tensors get no gradient; ops marked `stop_gradient` (or listed in `stop_gradients`) pass none.
    /// The work is linear in the size of the graph between xs and ys.
    pub fn gradients_with(
        &self,
        ys: &[Tensor],
        xs: &[Tensor],
        opts: GradientOptions,
    ) -> Result<Vec<Option<Tensor>>> {
        let n = self.len();
        for t in ys.iter().chain(xs).chain(&opts.stop_gradients) {
            if t.index() >= n {
                return Err(Error::NotFound {
                    what: format!("tensor #{} (a handle from another graph?)", t.index()),
                });
            }
        }
        let view: Vec<NodeView> = self.with_inner(|g| {
            g.nodes
                .iter()
                .map(|nd| NodeView {
                    name: nd.name.clone(),
                    op: nd.op.clone(),
                    inputs: nd.inputs.clone(),
                })
                .collect()
        });
        // Forward reachability from the xs.
        let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (id, nd) in view.iter().enumerate() {
            for &i in &nd.inputs {
                consumers[i].push(id);
            }
        }
        let mut from_x = vec![false; n];
        let mut stack: Vec<usize> = xs.iter().map(|t| t.index()).collect();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut from_x[i], true) {
                continue;
            }
            stack.extend(consumers[i].iter().copied().filter(|&c| !from_x[c]));
        }
        // Backward reachability from the ys, restricted to the forward set.
        let mut between = vec![false; n];
        let mut stack: Vec<usize> = ys
            .iter()
            .map(|t| t.index())
            .filter(|&i| from_x[i])
            .collect();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut between[i], true) {
                continue;
            }
            stack.extend(
                view[i]
                    .inputs
                    .iter()
                    .copied()
                    .filter(|&p| from_x[p] && !between[p]),
            );
        }
        let stops: HashSet<usize> = opts.stop_gradients.iter().map(|t| t.index()).collect();
        let x_set: HashSet<usize> = xs.iter().map(|t| t.index()).collect();

        let scope = self.name_scope("gradients")?;
        let mut pending: HashMap<usize, Vec<Tensor>> = HashMap::new();
        for (i, y) in ys.iter().enumerate() {
            if !self.dtype(*y)?.is_float() {
                continue;
            }
            let seed = match &opts.grad_ys {
                Some(gy) => *gy.get(i).ok_or_else(|| Error::InvalidArgument {
                    node: "gradients".into(),
                    op: "gradients".into(),
                    message: format!(
                        "grad_ys has {} entries but there are {} ys",
                        gy.len(),
                        ys.len()
                    ),
                })?,
                // Like TF's `ones(shape(y))`: a constant when the shape is static, so the seed does not
                // make y itself a dependency of its gradients.
                None => match self.info(*y)?.shape.to_known().filter(|s| {
                    // Large seeds stay dynamic rather than becoming huge graph constants.
                    crate::value::Value::checked_len(s).is_ok_and(|n| n <= 1 << 16)
                }) {
                    Some(shape) => {
                        let dt = self.dtype(*y)?;
                        self.named(&format!("grad_ys_{i}")).constant(
                            crate::value::Value::filled(dt, &shape, 1.0).map_err(|e| {
                                crate::error::Error::Internal(format!("grad_ys_{i}: {e}"))
                            })?,
                        )?
                    }
                    None => self.named(&format!("grad_ys_{i}")).ones_like(*y)?,
                },
            };
            pending.entry(y.index()).or_default().push(seed);
        }
        let mut final_grads: HashMap<usize, Tensor> = HashMap::new();
        for id in (0..n).rev() {
            if !between[id] {
                continue;
            }
            let Some(list) = pending.remove(&id) else {
                continue;
            };
            let grad = if list.len() == 1 {
                list[0]
            } else {
                self.add_n(&list)?
            };
            if x_set.contains(&id) {
                final_grads.insert(id, grad);
            }
            if stops.contains(&id) {
                continue;
            }
            let nd = &view[id];
            let output = Tensor { id };
            if !self.dtype(output)?.is_float() {
                continue;
            }
            let input_infos = nd
                .inputs
                .iter()
                .map(|&i| self.info(Tensor { id: i }))
                .collect::<Result<Vec<_>>>()?;
            let ctx = GradContext {
                graph: self,
                name: nd.name.clone(),
                inputs: nd.inputs.iter().map(|&i| Tensor { id: i }).collect(),
                input_infos: input_infos.clone(),
                output,
            };
            let in_grads = {
                let _s = self.name_scope(&format!("{}_grad", nd.name))?;
                nd.op.def().gradient(&ctx, grad)?
            };
            for (k, (&inp, g_in)) in nd.inputs.iter().zip(in_grads).enumerate() {
                let Some(g_in) = g_in else { continue };
                if !between[inp] || !input_infos[k].dtype.is_float() {
                    continue;
                }
                check_gradient_shape(
                    &nd.name,
                    nd.op.type_name(),
                    k,
                    &self.shape(g_in)?,
                    &input_infos[k].shape,
                )?;
                pending.entry(inp).or_default().push(g_in);
            }
        }
        let mut out = Vec::with_capacity(xs.len());
        for x in xs {
            out.push(match (final_grads.get(&x.index()), opts.unconnected) {
                (Some(g), _) => Some(*g),
                (None, UnconnectedGradients::Zero) if self.dtype(*x)?.is_float() => {
                    Some(self.zeros_like(*x)?)
                }
                (None, _) => None,
            });
        }
        drop(scope);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gradient_of_the_wrong_shape_is_an_error_naming_the_op() {
        let e = check_gradient_shape(
            "dnn/h/MatMul",
            "MatMul",
            1,
            &Shape::known(&[3, 2]),
            &Shape::known(&[2, 3]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "gradient of op MatMul (node 'dnn/h/MatMul') for input 1 has shape (3, 2), but the input has shape (2, 3)"
        );
        assert!(check_gradient_shape(
            "n",
            "Relu",
            0,
            &Shape::new(vec![None, Some(3)]),
            &Shape::known(&[5, 3])
        )
        .is_ok());
    }
}
