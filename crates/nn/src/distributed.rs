//! Synchronous data-parallel training in Horovod's model: every rank builds the same graph, trains on
//! its own shard of each global batch, and averages its gradients with the others' (an all-reduce)
//! before the optimizer applies them, so that every rank takes the same step. The collectives run
//! over the session's communicator (`SessionOptions::communicator`: MPI from `ferroflow-mpi`, or a
//! `LocalGroup` of threads).

use crate::optimizers::Optimizer;
use ferroflow_core::{keys, Graph, Operation, Reduction, Result, Tensor, Variable};

/// Horovod's default fusion threshold: gradients are packed into buffers of up to 64 MiB, one
/// all-reduce per buffer.
pub const DEFAULT_FUSION_THRESHOLD: usize = 64 << 20;

/// `hvd.DistributedOptimizer(opt)`: an optimizer whose gradients are averaged over the ranks before
/// they are applied. Works with every update rule, with clipping between `compute_gradients` and
/// `apply_gradients` (the clip sees the averaged gradients, as Horovod's), and with `var_list`: a
/// variable outside it (a frozen layer) has no gradient, and nothing of it is communicated.
#[derive(Clone, Debug)]
pub struct DistributedOptimizer {
    pub optimizer: Optimizer,
    /// The most bytes of gradients fused into one all-reduce ([`DEFAULT_FUSION_THRESHOLD`]); 0
    /// reduces each gradient on its own.
    pub fusion_threshold: usize,
    /// Start each buffer's all-reduce as soon as its gradients exist and wait for it only when
    /// nothing else is left to compute (`Graph::all_reduce_overlapped`): over MPI the reduction
    /// then overlaps the rest of the backward pass. On by default; the averaged gradients are then
    /// not differentiable.
    pub overlap: bool,
}

impl DistributedOptimizer {
    /// `optimizer` with its gradients averaged over the ranks.
    pub fn new(optimizer: Optimizer) -> Self {
        DistributedOptimizer {
            optimizer,
            fusion_threshold: DEFAULT_FUSION_THRESHOLD,
            overlap: true,
        }
    }

    /// This optimizer with another fusion threshold, in bytes.
    pub fn fusion_threshold(self, bytes: usize) -> Self {
        DistributedOptimizer {
            fusion_threshold: bytes,
            ..self
        }
    }

    /// This optimizer with the all-reduces overlapped with computation or not.
    pub fn overlap(self, overlap: bool) -> Self {
        DistributedOptimizer { overlap, ..self }
    }

    /// The inner optimizer's `compute_gradients`, each gradient then averaged over the ranks.
    pub fn compute_gradients(
        &self,
        g: &Graph,
        loss: Tensor,
        var_list: Option<&[Variable]>,
    ) -> Result<Vec<(Option<Tensor>, Variable)>> {
        let gv = self.optimizer.compute_gradients(g, loss, var_list)?;
        let _s = g.name_scope(&format!("Distributed{}_Allreduce", self.optimizer.name))?;
        average_gradients(g, &gv, self.fusion_threshold, self.overlap)
    }

    /// The inner optimizer's `apply_gradients` (the gradients are averaged already).
    pub fn apply_gradients(
        &self,
        g: &Graph,
        grads_and_vars: &[(Option<Tensor>, Variable)],
        global_step: Option<Variable>,
    ) -> Result<Operation> {
        self.optimizer
            .apply_gradients(g, grads_and_vars, global_step)
    }

    /// `compute_gradients` then `apply_gradients`.
    pub fn minimize(
        &self,
        g: &Graph,
        loss: Tensor,
        var_list: Option<&[Variable]>,
        global_step: Option<Variable>,
    ) -> Result<Operation> {
        let gv = self.compute_gradients(g, loss, var_list)?;
        self.apply_gradients(g, &gv, global_step)
    }
}

/// Each gradient averaged over the ranks (`None` stays `None`). Gradients of one dtype are packed,
/// last variable first (the order back-propagation produces them), into buffers of up to
/// `fusion_threshold` bytes: one all-reduce per buffer, its result cut back into the gradients. A
/// gradient larger than the threshold is reduced on its own. With `overlap`, each all-reduce is
/// started as soon as its buffer is full and waited for as late as possible.
pub fn average_gradients(
    g: &Graph,
    grads_and_vars: &[(Option<Tensor>, Variable)],
    fusion_threshold: usize,
    overlap: bool,
) -> Result<Vec<(Option<Tensor>, Variable)>> {
    let mean = |t: Tensor| {
        if overlap {
            g.all_reduce_overlapped(t, Reduction::Mean)
        } else {
            g.all_reduce(t, Reduction::Mean)
        }
    };
    let mut out: Vec<(Option<Tensor>, Variable)> = grads_and_vars.to_vec();
    // (position in `out`, gradient, its static element count when known)
    let mut bucket: Vec<(usize, Tensor, usize)> = Vec::new();
    let mut bucket_bytes = 0;
    for (i, (grad, _)) in grads_and_vars.iter().enumerate().rev() {
        let Some(grad) = *grad else { continue };
        let info = g.info(grad)?;
        let Some(dims) = info.shape.to_known() else {
            // An unknown shape cannot be cut back out of a buffer: reduce it alone.
            out[i].0 = Some(mean(grad)?);
            continue;
        };
        let n: usize = dims.iter().product();
        let bytes = n * info.dtype.size_of();
        let same_dtype = bucket
            .first()
            .is_none_or(|&(_, t, _)| g.dtype(t).is_ok_and(|d| d == info.dtype));
        if !bucket.is_empty() && (!same_dtype || bucket_bytes + bytes > fusion_threshold) {
            reduce_bucket(g, &bucket, &mut out, &mean)?;
            bucket.clear();
            bucket_bytes = 0;
        }
        bucket.push((i, grad, n));
        bucket_bytes += bytes;
    }
    if !bucket.is_empty() {
        reduce_bucket(g, &bucket, &mut out, &mean)?;
    }
    Ok(out)
}

/// One all-reduce (`mean`) over the gradients of `bucket`, packed end to end.
fn reduce_bucket(
    g: &Graph,
    bucket: &[(usize, Tensor, usize)],
    out: &mut [(Option<Tensor>, Variable)],
    mean: &dyn Fn(Tensor) -> Result<Tensor>,
) -> Result<()> {
    if let [(i, grad, _)] = bucket {
        out[*i].0 = Some(mean(*grad)?);
        return Ok(());
    }
    let flat: Vec<Tensor> = bucket
        .iter()
        .map(|&(_, t, _)| g.reshape(t, &[-1]))
        .collect::<Result<_>>()?;
    let fused = mean(g.concat(&flat, 0)?)?;
    let mut offset = 0;
    for &(i, grad, n) in bucket {
        let dims: Vec<i64> = g
            .info(grad)?
            .shape
            .to_known()
            .unwrap_or_default()
            .iter()
            .map(|&d| d as i64)
            .collect();
        let part = g.slice(fused, &[offset], &[n as i64])?;
        out[i].0 = Some(g.reshape(part, &dims)?);
        offset += n;
    }
    Ok(())
}

/// `hvd.broadcast_global_variables(root_rank)`: one op that sets every global variable to the
/// root's value. Run it after the initializer or a restore, so that every rank starts from the same
/// weights.
pub fn broadcast_global_variables(g: &Graph, root: usize) -> Result<Operation> {
    let vars: Vec<Variable> = g.get_collection(keys::GLOBAL_VARIABLES, None)?;
    let _s = g.name_scope("broadcast_global_variables")?;
    let assigns = vars
        .iter()
        .map(|&v| Ok(g.assign(v, g.broadcast(v.value(), root)?)?.op()))
        .collect::<Result<Vec<Operation>>>()?;
    g.group(&assigns)
}
