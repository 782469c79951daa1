//! One run of a plan: the step loop, buffer forwarding and recycling, paired products, and the
//! in-place variable updates.

use super::update::{apply_in_place, update_in_place};
use super::*;
use crate::error::{KernelError, OpResult};

/// The session state one run works on (borrowed from [`State`] beside the plan cache).
pub(super) struct Run<'s> {
    pub(super) vars: &'s mut HashMap<usize, Arc<Value>>,
    pub(super) rngs: &'s mut HashMap<usize, StdRng>,
    pub(super) profile: &'s mut super::ProfileMap,
    pub(super) shells: &'s mut Vec<Arc<Value>>,
    /// The storage of dead values (the context's pool).
    pub(super) pool: &'s Mutex<VecPool>,
    /// The pool of the second product of a pair (see `try_pair`).
    pub(super) side_pool: &'s Mutex<VecPool>,
}

impl Run<'_> {
    pub(super) fn execute(
        &mut self,
        ctx: &Context<'_>,
        cached: &mut Cached,
        feeds: &[(Tensor, Value)],
        options: &SessionOptions,
    ) -> Result<Vec<Value>> {
        let plan = cached.plan.clone();
        let mut slots = std::mem::take(&mut cached.slots);
        slots.clear();
        slots.resize_with(plan.n_slots, || None);
        let r = self.execute_steps(ctx, &plan, &mut slots, feeds, options);
        let out = r.and_then(|()| {
            plan.fetch_slots
                .iter()
                .map(|&s| {
                    slot_value(&slots, feeds, s)
                        .cloned()
                        .ok_or_else(|| Error::internal("a fetched value was not computed"))
                })
                .collect()
        });
        // Whatever is left (fetched values, or everything after an error) goes back for reuse.
        for slot in slots.iter_mut() {
            self.release(slot.take(), options.reuse_buffers);
        }
        cached.slots = slots;
        out
    }

    fn execute_steps(
        &mut self,
        ctx: &Context<'_>,
        plan: &Plan,
        slots: &mut [Option<Slot>],
        feeds: &[(Tensor, Value)],
        options: &SessionOptions,
    ) -> Result<()> {
        for (k, ((slot, name, info), (_, value))) in plan.feeds.iter().zip(feeds).enumerate() {
            if value.dtype() != info.dtype || !info.shape.accepts(value.shape()) {
                return Err(Error::FeedMismatch {
                    tensor: format!("{name}:0"),
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    got_dtype: value.dtype(),
                    got_shape: value.shape().to_vec(),
                });
            }
            if let Some(s) = slot.and_then(|s| slots.get_mut(s)) {
                *s = Some(Slot::Fed(k));
            }
        }
        let mut paired_with_previous = false;
        for (i, step) in plan.steps.iter().enumerate() {
            if std::mem::take(&mut paired_with_previous) {
                continue;
            }
            // Under a memory limit, what this step's kernels allocate is drawn from the limit less
            // what the run holds now.
            let budget;
            let ctx = match options.memory_limit {
                Some(limit) => {
                    budget = MemoryBudget::new(limit, self.held_bytes(slots, feeds));
                    ctx.with_budget(&budget)
                }
                None => *ctx,
            };
            let ctx = &ctx;
            let started = options.profile.then(std::time::Instant::now);
            if options.threads > 1 {
                if let Some(next) = plan.steps.get(i + 1) {
                    if let Some(pair) = self.try_pair(ctx, step, next, slots, feeds)? {
                        let half = started.map(|t0| t0.elapsed() / 2);
                        for (st, v) in [(step, pair.0), (next, pair.1)] {
                            self.finish_step(st, Some(v), slots, options, half, false)?;
                        }
                        paired_with_previous = true;
                        continue;
                    }
                }
            }
            let mut forwarded = false;
            let missing =
                || Error::internal(format!("an input of '{}' was not computed", step.name));
            let out: Option<Arc<Value>> = match &step.kind {
                StepKind::Kernel(op) => {
                    let in_place = if options.reuse_buffers && !step.free.is_empty() {
                        try_in_place(ctx, op, step, slots, feeds)
                    } else {
                        None
                    };
                    match in_place {
                        Some(Ok(v)) => {
                            forwarded = true;
                            Some(v)
                        }
                        Some(Err(e)) => return Err(kernel_error(step, slots, feeds, e)),
                        None => match run_kernel(ctx, op, step, slots, feeds) {
                            Ok(KernelOut::Fresh(v)) => Some(self.wrap(v)),
                            Ok(KernelOut::Shared(a)) => Some(a),
                            Err(e) => return Err(kernel_error(step, slots, feeds, e)),
                        },
                    }
                }
                StepKind::Alias => Some(share(slots, feeds, step.inputs[0]).ok_or_else(missing)?),
                StepKind::Const(v) => Some(v.clone()),
                StepKind::ReadVar => Some(self.vars.get(&step.node).cloned().ok_or_else(|| {
                    Error::UninitializedVariable {
                        name: step.name.clone(),
                    }
                })?),
                StepKind::Assign {
                    var,
                    mode,
                    var_name,
                } => {
                    let value = slot_value(slots, feeds, step.inputs[0]).ok_or_else(missing)?;
                    let info = step.var_info.as_ref().ok_or_else(|| {
                        Error::internal(format!("'{}' has no variable info", step.name))
                    })?;
                    if value.dtype() != info.dtype || !info.shape.accepts(value.shape()) {
                        return Err(kernel_error(step, slots, feeds, KernelError::Shape(format!(
                            "Assign requires shapes of both tensors to match. lhs shape= {} rhs shape= {:?} (dtypes {} and {})",
                            info.shape,
                            value.shape(),
                            info.dtype,
                            value.dtype()
                        ))));
                    }
                    let new = match mode {
                        // Values are immutable once computed: the variable shares the value, no copy.
                        AssignMode::Set => {
                            share(slots, feeds, step.inputs[0]).ok_or_else(missing)?
                        }
                        AssignMode::Add | AssignMode::Sub => {
                            let mut cur = self.vars.remove(var).ok_or_else(|| {
                                Error::UninitializedVariable {
                                    name: var_name.clone(),
                                }
                            })?;
                            let r = update_in_place(&mut cur, value, *mode == AssignMode::Add);
                            let out = cur.clone();
                            self.vars.insert(*var, cur);
                            r.map_err(|e| kernel_error(step, slots, feeds, e))?;
                            out
                        }
                    };
                    // The variable's previous value goes back to the pool when nothing else holds it.
                    let old = self.vars.insert(*var, new.clone());
                    self.release(old.map(Slot::Owned), options.reuse_buffers);
                    Some(new)
                }
                StepKind::Apply {
                    var,
                    slots: slot_vars,
                    rule,
                    names,
                } => {
                    let get = |i: usize| {
                        step.inputs
                            .get(i)
                            .and_then(|&s| slot_value(slots, feeds, s))
                            .ok_or_else(missing)
                    };
                    let (grad, lr) = (get(0)?, get(1)?);
                    let scale = if step.inputs.len() > 2 {
                        Some(get(2)?)
                    } else {
                        None
                    };
                    for (id, name) in std::iter::once(var).chain(slot_vars).zip(names) {
                        if !self.vars.contains_key(id) {
                            return Err(Error::UninitializedVariable { name: name.clone() });
                        }
                    }
                    let mut w = self.vars.remove(var).ok_or_else(|| {
                        Error::internal(format!("the variable of '{}' vanished", step.name))
                    })?;
                    let mut ss: SmallVec<[Arc<Value>; 4]> = slot_vars
                        .iter()
                        .filter_map(|s| self.vars.remove(s))
                        .collect();
                    let r = apply_in_place(ctx, rule, &mut w, &mut ss, grad, (lr, scale));
                    let out = w.clone();
                    self.vars.insert(*var, w);
                    for (id, v) in slot_vars.iter().zip(ss) {
                        self.vars.insert(*id, v);
                    }
                    r.map_err(|e| kernel_error(step, slots, feeds, e))?;
                    Some(out)
                }
                StepKind::Random(r) => {
                    let rng = self
                        .rngs
                        .entry(step.node)
                        .or_insert_with(|| match r.stream_seed() {
                            Some(s) => StdRng::seed_from_u64(s),
                            None => StdRng::from_entropy(),
                        });
                    let shape: crate::ops::kernels::Dims = match step.inputs.first() {
                        Some(&i) => slot_value(slots, feeds, i)
                            .ok_or_else(missing)?
                            .shape()
                            .iter()
                            .copied()
                            .collect(),
                        None => r.shape.iter().copied().collect(),
                    };
                    let v = r
                        .sample(ctx, rng, &shape)
                        .map_err(|e| kernel_error(step, slots, feeds, e))?;
                    Some(self.wrap(v))
                }
                StepKind::NoOp => None,
            };
            self.finish_step(
                step,
                out,
                slots,
                options,
                started.map(|t0| t0.elapsed()),
                forwarded,
            )?;
        }
        Ok(())
    }

    /// After a step: checks its output for NaN/Inf when asked, stores it in its slot, releases the
    /// slots it was the last reader of, and adds its time to the profile.
    fn finish_step(
        &mut self,
        step: &plan::Step,
        out: Option<Arc<Value>>,
        slots: &mut [Option<Slot>],
        options: &SessionOptions,
        elapsed: Option<std::time::Duration>,
        forwarded: bool,
    ) -> Result<()> {
        if let Some(v) = out {
            if options.check_numerics {
                if let Some(what) = crate::ops::state::non_finite(&v) {
                    return Err(Error::NonFinite {
                        node: step.name.clone(),
                        op: step.op_type.into(),
                        what: what.into(),
                        message: "check_numerics".into(),
                    });
                }
            }
            if let Some(s) = slots.get_mut(step.out) {
                *s = Some(Slot::Owned(v));
            }
        }
        for &f in &step.free {
            let dead = slots.get_mut(f).and_then(Option::take);
            self.release(dead, options.reuse_buffers);
        }
        if let Some(d) = elapsed {
            let e = self
                .profile
                .entry((step.op_type, step.gradient))
                .or_default();
            e.0 += 1;
            e.1 += d;
            e.2 += u64::from(forwarded);
        }
        Ok(())
    }

    /// Inter-op parallelism for the products of a layer's backward pass: when this step and the next
    /// are both matrix products small enough to run on one thread each (`dW = Xᵀ·dZ` and
    /// `dX = dZ·Wᵀ` read the same gradient and nothing of each other), they run at the same time on
    /// two threads. The second product's output storage comes from the pool through a side pool lent
    /// to the other thread, so the pair allocates nothing the serial order would not.
    fn try_pair(
        &mut self,
        ctx: &Context<'_>,
        a: &plan::Step,
        b: &plan::Step,
        slots: &[Option<Slot>],
        feeds: &[(Tensor, Value)],
    ) -> Result<Option<(Arc<Value>, Arc<Value>)>> {
        let config = ctx.config();
        if !config.pair_products {
            return Ok(None);
        }
        let (StepKind::Kernel(op_a), StepKind::Kernel(op_b)) = (&a.kind, &b.kind) else {
            return Ok(None);
        };
        let (Some(ma), Some(mb)) = (op_a.product(), op_b.product()) else {
            return Ok(None);
        };
        if b.inputs.contains(&a.out) {
            return Ok(None);
        }
        let (Some(in_a), Some(in_b)) = (
            gather_inputs(a, slots, feeds),
            gather_inputs(b, slots, feeds),
        ) else {
            return Ok(None);
        };
        let limit = config.pair_max_macs;
        let (Some((rows_a, depth_a, cols_a)), Some((rows_b, depth_b, cols_b))) =
            (ma.product_size(&in_a), mb.product_size(&in_b))
        else {
            return Ok(None);
        };
        let macs = |m: usize, k: usize, n: usize| m.saturating_mul(k).saturating_mul(n);
        let (macs_a, macs_b) = (macs(rows_a, depth_a, cols_a), macs(rows_b, depth_b, cols_b));
        // Each small enough for one thread, and together worth a second one; neither one that sums
        // over a long depth in halves on two threads (the weight gradients of a large batch).
        let halves = ferroflow_cpu::gemm::splits_depth;
        if macs_a >= limit
            || macs_b >= limit
            || macs_a.saturating_add(macs_b) < 1 << 18
            || halves(rows_a, depth_a, cols_a)
            || halves(rows_b, depth_b, cols_b)
        {
            return Ok(None);
        }
        let Some(dtype) = in_b.first().map(|v| v.dtype()) else {
            return Ok(None);
        };
        if ctx.has_pool() {
            crate::value::lend_one(
                &mut super::lock(self.pool),
                &mut super::lock(self.side_pool),
                dtype,
                rows_b.saturating_mul(cols_b),
            );
        }
        // Each product of the pair on one thread; the second takes its output from the side pool,
        // so that the two threads never take the same storage.
        let ctx_a = ctx.with_threads(1);
        let ctx_b = if ctx.has_pool() {
            ctx_a.with_pool(self.side_pool)
        } else {
            ctx_a
        };
        let (ra, rb) = ctx.join(
            || op_a.compute(&ctx_a, &in_a),
            || op_b.compute(&ctx_b, &in_b),
        );
        let va = ra.map_err(|e| kernel_error(a, slots, feeds, e))?;
        let vb = rb.map_err(|e| kernel_error(b, slots, feeds, e))?;
        Ok(Some((self.wrap(va), self.wrap(vb))))
    }

    /// The bytes of the tensors the run holds: the variables, the feeds and the values still to be
    /// read, each storage counted once however many slots share it.
    fn held_bytes(&self, slots: &[Option<Slot>], feeds: &[(Tensor, Value)]) -> usize {
        let bytes = |v: &Value| v.len().saturating_mul(v.dtype().size_of());
        let mut shared: Vec<&Arc<Value>> = self.vars.values().collect();
        shared.extend(slots.iter().filter_map(|s| match s {
            Some(Slot::Owned(a)) => Some(a),
            _ => None,
        }));
        shared.sort_unstable_by_key(|a| Arc::as_ptr(a));
        shared.dedup_by_key(|a| Arc::as_ptr(a));
        let fed: usize = feeds.iter().map(|(_, v)| bytes(v)).sum();
        shared
            .iter()
            .map(|a| bytes(a))
            .fold(fed, usize::saturating_add)
    }

    /// Gives a dead value back: its storage to the pool and its `Arc` to the shells, when nothing
    /// else holds it (a variable, a fetch, another slot).
    fn release(&mut self, dead: Option<Slot>, reuse: bool) {
        if let (true, Some(Slot::Owned(mut arc))) = (reuse, dead) {
            if let Some(v) = Arc::get_mut(&mut arc) {
                let v = std::mem::replace(v, Value::empty());
                crate::value::recycle(&mut super::lock(self.pool), v);
                self.shells.push(arc);
            }
        }
    }

    /// A new value in an `Arc`, reusing a released one when there is one.
    fn wrap(&mut self, v: Value) -> Arc<Value> {
        match self.shells.pop() {
            Some(mut a) => match Arc::get_mut(&mut a) {
                Some(place) => {
                    *place = v;
                    a
                }
                None => Arc::new(v),
            },
            None => Arc::new(v),
        }
    }
}

/// The error of a failed kernel: its node, its op and the shapes of its inputs (those still in their
/// slots; an input a kernel was overwriting in place shows as an empty shape).
fn kernel_error(
    step: &plan::Step,
    slots: &[Option<Slot>],
    feeds: &[(Tensor, Value)],
    source: KernelError,
) -> Error {
    Error::Kernel {
        node: step.name.clone(),
        op: step.op_type.into(),
        input_shapes: step
            .inputs
            .iter()
            .map(|&i| slot_value(slots, feeds, i).map_or_else(Vec::new, |v| v.shape().to_vec()))
            .collect(),
        source,
    }
}

/// The inputs of a step, on the stack.
fn gather_inputs<'a>(
    step: &plan::Step,
    slots: &'a [Option<Slot>],
    feeds: &'a [(Tensor, Value)],
) -> Option<Inputs<'a>> {
    step.inputs
        .iter()
        .map(|&i| slot_value(slots, feeds, i))
        .collect()
}

/// What a kernel step produced: a new value, or a shared input (an alias).
enum KernelOut {
    Fresh(Value),
    Shared(Arc<Value>),
}

/// Runs a kernel the ordinary way (or shares its aliased input).
fn run_kernel(
    ctx: &Context<'_>,
    op: &crate::ops::Op,
    step: &plan::Step,
    slots: &[Option<Slot>],
    feeds: &[(Tensor, Value)],
) -> OpResult<KernelOut> {
    let inputs = gather_inputs(step, slots, feeds).ok_or_else(not_computed)?;
    match op.alias_input(&inputs).and_then(|k| step.inputs.get(k)) {
        Some(&src) => share(slots, feeds, src)
            .map(KernelOut::Shared)
            .ok_or_else(not_computed),
        None => op.compute(ctx, &inputs).map(KernelOut::Fresh),
    }
}

/// A kernel's input that no earlier step computed (a broken plan).
fn not_computed() -> KernelError {
    KernelError::InvalidArgument("an input was not computed".into())
}

/// Buffer forwarding: when the op can write its output over one of its inputs, that input dies at
/// this step (it is in `step.free`), appears once among the inputs, and the session holds the only
/// reference to it, the kernel runs in place on it (in the same `Arc`). `None` when any of that does
/// not hold.
fn try_in_place(
    ctx: &Context<'_>,
    op: &crate::ops::Op,
    step: &plan::Step,
    slots: &mut [Option<Slot>],
    feeds: &[(Tensor, Value)],
) -> Option<OpResult<Arc<Value>>> {
    // Cheap test first (no allocation): is any input a candidate at all?
    let candidate = |slots: &[Option<Slot>], src: usize| {
        step.free.contains(&src)
            && step.inputs.iter().filter(|&&i| i == src).count() == 1
            && matches!(
                slots.get(src).and_then(|s| s.as_ref()),
                Some(Slot::Owned(a)) if Arc::strong_count(a) == 1 && Arc::weak_count(a) == 0
            )
    };
    if !step.inputs.iter().any(|&i| candidate(slots, i)) {
        return None;
    }
    let k = {
        let inputs = gather_inputs(step, slots, feeds)?;
        if op.alias_input(&inputs).is_some() {
            return None;
        }
        op.in_place_input(&inputs)?
    };
    let src = *step.inputs.get(k)?;
    if !candidate(slots, src) {
        return None;
    }
    let Some(Slot::Owned(mut arc)) = slots.get_mut(src)?.take() else {
        return None;
    };
    let mut others: Inputs<'_> = SmallVec::new();
    for &i in step.inputs.iter().filter(|&&i| i != src) {
        match slot_value(slots, feeds, i) {
            Some(v) => others.push(v),
            None => return Some(Err(not_computed())),
        }
    }
    let Some(target) = Arc::get_mut(&mut arc) else {
        drop(others);
        slots[src] = Some(Slot::Owned(arc));
        return None;
    };
    let r = op.compute_in_place(ctx, k, target, &others);
    Some(r.map(|()| arc))
}

/// The value in `slot` as a shared `Arc` (copied only when it is one of the caller's feeds).
fn share(slots: &[Option<Slot>], feeds: &[(Tensor, Value)], slot: usize) -> Option<Arc<Value>> {
    match slots.get(slot)?.as_ref()? {
        Slot::Owned(a) => Some(a.clone()),
        Slot::Fed(k) => feeds.get(*k).map(|(_, v)| Arc::new(v.clone())),
    }
}
