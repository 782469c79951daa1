//! The session: owns variable values, random streams and the plan cache, and runs plans with
//! feeds and fetches (TF's `tf.Session`).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::{Graph, Operation, Tensor, Variable};
use crate::ops::apply::ApplyRule;
use crate::ops::kernels::FloatArray;
use crate::ops::state::AssignMode;
use crate::plan::{self, Plan, StepKind};
use crate::value::Value;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Session settings.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Run the compiler passes (CSE and constant folding). On by default; they never change results.
    pub optimize: bool,
    /// Threads one kernel may use (TF's intra-op parallelism); defaults to the machine's cores.
    pub threads: usize,
    /// Stop a run at the first op whose float output holds NaN or infinity, with an error naming that
    /// node and its op (the exploding-gradient debugging tool). Off by default: it scans every output.
    pub check_numerics: bool,
    /// Time every step and add it up per op type (TF's `RunMetadata` step stats, summed), for
    /// [`Session::profile`]. Off by default: it reads the clock twice per node.
    pub profile: bool,
    /// Let elementwise kernels write their output into an input buffer that no later node reads and
    /// that nothing else holds (TF's buffer forwarding). On by default; results are identical.
    pub reuse_buffers: bool,
}

/// One line of [`Session::profile`]: an op type, how many nodes of it ran, and their total time.
#[derive(Clone, Debug, PartialEq)]
pub struct OpProfile {
    pub op_type: &'static str,
    pub calls: u64,
    pub seconds: f64,
    /// How many of the calls wrote their output over a dying input (buffer forwarding).
    pub in_place: u64,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            optimize: true,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            check_numerics: false,
            profile: false,
            reuse_buffers: true,
        }
    }
}

type PlanKey = (Vec<usize>, Vec<usize>, Vec<usize>);

struct State {
    vars: HashMap<usize, Arc<Value>>,
    rngs: HashMap<usize, StdRng>,
    plans: HashMap<PlanKey, Arc<Plan>>,
    graph_version: u64,
    profile: HashMap<&'static str, (u64, std::time::Duration, u64)>,
}

/// Runs a graph. Variables live here, not in the graph, so two sessions over one graph have
/// independent values. `run` takes `&self` and may be called from several threads; runs are
/// serialized, so each run (and so each train op) sees and updates the variables atomically.
pub struct Session {
    graph: Graph,
    options: SessionOptions,
    state: Mutex<State>,
}

/// A slot's value during a run: computed (shared) or borrowed from the caller's feeds.
enum Slot<'a> {
    Owned(Arc<Value>),
    Fed(&'a Value),
}

impl Slot<'_> {
    fn get(&self) -> &Value {
        match self {
            Slot::Owned(v) => v,
            Slot::Fed(v) => v,
        }
    }
}

impl Session {
    /// A session over `graph` with default options.
    pub fn new(graph: &Graph) -> Self {
        Self::with_options(graph, SessionOptions::default())
    }

    /// A session with explicit options.
    pub fn with_options(graph: &Graph, options: SessionOptions) -> Self {
        Session {
            graph: graph.clone(),
            options,
            state: Mutex::new(State {
                vars: HashMap::new(),
                rngs: HashMap::new(),
                plans: HashMap::new(),
                graph_version: 0,
                profile: HashMap::new(),
            }),
        }
    }

    /// The session's graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Runs `targets` and computes `fetches`, with `feeds` replacing the values of their tensors
    /// (`sess.run(fetches, feed_dict)` plus target ops). Only what the fetches and targets need runs.
    pub fn run(
        &self,
        fetches: &[Tensor],
        feeds: &[(Tensor, Value)],
        targets: &[Operation],
    ) -> Result<Vec<Value>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let plan = self.plan_for(&mut state, fetches, feeds, targets)?;
        crate::ops::kernels::set_intra_op_threads(self.options.threads);
        Self::execute(&mut state, &plan, feeds, &self.options)
    }

    /// Computes one tensor.
    pub fn run_one(&self, fetch: Tensor, feeds: &[(Tensor, Value)]) -> Result<Value> {
        let mut v = self.run(&[fetch], feeds, &[])?;
        v.pop().ok_or_else(|| Error::other("run returned no value"))
    }

    /// Runs ops for their effects (an initializer, a train op).
    pub fn run_targets(&self, targets: &[Operation], feeds: &[(Tensor, Value)]) -> Result<()> {
        self.run(&[], feeds, targets).map(|_| ())
    }

    fn plan_for(
        &self,
        state: &mut State,
        fetches: &[Tensor],
        feeds: &[(Tensor, Value)],
        targets: &[Operation],
    ) -> Result<Arc<Plan>> {
        let version = self.graph.version();
        if version != state.graph_version {
            state.plans.clear();
            state.graph_version = version;
        }
        let key: PlanKey = (
            fetches.iter().map(|t| t.index()).collect(),
            feeds.iter().map(|(t, _)| t.index()).collect(),
            targets.iter().map(|o| o.index()).collect(),
        );
        if let Some(p) = state.plans.get(&key) {
            return Ok(p.clone());
        }
        let plan = self
            .graph
            .with_inner(|g| plan::compile(g, &key.0, &key.1, &key.2, self.options.optimize))?;
        let plan = Arc::new(plan);
        state.plans.insert(key, plan.clone());
        Ok(plan)
    }

    fn execute(
        state: &mut State,
        plan: &Plan,
        feeds: &[(Tensor, Value)],
        options: &SessionOptions,
    ) -> Result<Vec<Value>> {
        let check_numerics = options.check_numerics;
        let mut slots: Vec<Option<Slot<'_>>> = Vec::with_capacity(plan.n_slots);
        slots.resize_with(plan.n_slots, || None);
        for ((slot, name, info), (_, value)) in plan.feeds.iter().zip(feeds) {
            if value.dtype() != info.dtype || !info.shape.accepts(value.shape()) {
                return Err(Error::FeedMismatch {
                    tensor: format!("{name}:0"),
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    got_dtype: value.dtype(),
                    got_shape: value.shape().to_vec(),
                });
            }
            if let Some(s) = slot {
                slots[*s] = Some(Slot::Fed(value));
            }
        }
        for step in &plan.steps {
            let started = options.profile.then(std::time::Instant::now);
            let mut forwarded = false;
            let kernel_err = |message: String| Error::Kernel {
                node: step.name.clone(),
                op: step.op_type.into(),
                message,
            };
            let out: Option<Arc<Value>> = match &step.kind {
                StepKind::Kernel(op) if options.reuse_buffers && !step.free.is_empty() => {
                    match Self::try_in_place(op, step, &mut slots) {
                        Some(r) => {
                            forwarded = true;
                            Some(Arc::new(r.map_err(kernel_err)?))
                        }
                        None => Some(Self::run_kernel(op, step, &slots).map_err(kernel_err)?),
                    }
                }
                StepKind::Kernel(op) => {
                    let mut inputs: Vec<&Value> = Vec::with_capacity(step.inputs.len());
                    for &i in &step.inputs {
                        inputs.push(
                            slots[i]
                                .as_ref()
                                .ok_or_else(|| kernel_err("input not computed".into()))?
                                .get(),
                        );
                    }
                    match op.alias_input(&inputs).and_then(|k| step.inputs.get(k)) {
                        Some(&src) => Some(
                            Self::share(&slots, src)
                                .ok_or_else(|| kernel_err("input not computed".into()))?,
                        ),
                        None => Some(Arc::new(op.compute(&inputs).map_err(kernel_err)?)),
                    }
                }
                StepKind::Alias => Some(
                    Self::share(&slots, step.inputs[0])
                        .ok_or_else(|| kernel_err("input not computed".into()))?,
                ),
                StepKind::Const(v) => Some(v.clone()),
                StepKind::ReadVar => {
                    Some(state.vars.get(&step.node).cloned().ok_or_else(|| {
                        Error::UninitializedVariable {
                            name: step.name.clone(),
                        }
                    })?)
                }
                StepKind::Assign {
                    var,
                    mode,
                    var_name,
                } => {
                    let value = slots[step.inputs[0]]
                        .as_ref()
                        .ok_or_else(|| kernel_err("input not computed".into()))?
                        .get();
                    let info = step
                        .var_info
                        .as_ref()
                        .ok_or_else(|| kernel_err("missing variable info".into()))?;
                    if value.dtype() != info.dtype || !info.shape.accepts(value.shape()) {
                        return Err(kernel_err(format!(
                            "Assign requires shapes of both tensors to match. lhs shape= {} rhs shape= {:?} (dtypes {} and {})",
                            info.shape,
                            value.shape(),
                            info.dtype,
                            value.dtype()
                        )));
                    }
                    let new = match mode {
                        // Values are immutable once computed: the variable shares the value, no copy.
                        AssignMode::Set => Self::share(&slots, step.inputs[0])
                            .ok_or_else(|| kernel_err("input not computed".into()))?,
                        AssignMode::Add | AssignMode::Sub => {
                            let mut cur = state.vars.remove(var).ok_or_else(|| {
                                Error::UninitializedVariable {
                                    name: var_name.clone(),
                                }
                            })?;
                            let r = update_in_place(&mut cur, value, *mode == AssignMode::Add);
                            let out = cur.clone();
                            state.vars.insert(*var, cur);
                            r.map_err(kernel_err)?;
                            out
                        }
                    };
                    state.vars.insert(*var, new.clone());
                    Some(new)
                }
                StepKind::Apply {
                    var,
                    slots: slot_vars,
                    rule,
                    names,
                } => {
                    let get = |i: usize| {
                        slots[step.inputs[i]]
                            .as_ref()
                            .map(|s| s.get())
                            .ok_or_else(|| kernel_err("input not computed".into()))
                    };
                    let (grad, lr) = (get(0)?, get(1)?);
                    for (id, name) in std::iter::once(var).chain(slot_vars).zip(names) {
                        if !state.vars.contains_key(id) {
                            return Err(Error::UninitializedVariable { name: name.clone() });
                        }
                    }
                    let mut w = state
                        .vars
                        .remove(var)
                        .ok_or_else(|| kernel_err("variable vanished".into()))?;
                    let mut ss: Vec<Arc<Value>> = slot_vars
                        .iter()
                        .filter_map(|s| state.vars.remove(s))
                        .collect();
                    let r = apply_in_place(rule, &mut w, &mut ss, grad, lr);
                    let out = w.clone();
                    state.vars.insert(*var, w);
                    for (id, v) in slot_vars.iter().zip(ss) {
                        state.vars.insert(*id, v);
                    }
                    r.map_err(kernel_err)?;
                    Some(out)
                }
                StepKind::Random(r) => {
                    let rng =
                        state
                            .rngs
                            .entry(step.node)
                            .or_insert_with(|| match r.stream_seed() {
                                Some(s) => StdRng::seed_from_u64(s),
                                None => StdRng::from_entropy(),
                            });
                    let shape = match step.inputs.first() {
                        Some(&i) => slots[i]
                            .as_ref()
                            .ok_or_else(|| kernel_err("input not computed".into()))?
                            .get()
                            .shape()
                            .to_vec(),
                        None => r.shape.clone(),
                    };
                    Some(Arc::new(r.sample(rng, &shape).map_err(kernel_err)?))
                }
                StepKind::NoOp => None,
            };
            if let Some(v) = out {
                if check_numerics {
                    if let Some(what) = crate::ops::state::non_finite(&v) {
                        return Err(Error::NonFinite {
                            node: step.name.clone(),
                            op: step.op_type.into(),
                            what: what.into(),
                            message: "check_numerics".into(),
                        });
                    }
                }
                slots[step.out] = Some(Slot::Owned(v));
            }
            for &f in &step.free {
                slots[f] = None;
            }
            if let Some(t0) = started {
                let e = state.profile.entry(step.op_type).or_default();
                e.0 += 1;
                e.1 += t0.elapsed();
                e.2 += u64::from(forwarded);
            }
        }
        plan.fetch_slots
            .iter()
            .map(|&s| match &slots[s] {
                Some(v) => Ok(v.get().clone()),
                None => Err(Error::other("a fetched value was not computed")),
            })
            .collect()
    }

    /// Runs a kernel the ordinary way (or shares its aliased input).
    fn run_kernel(
        op: &crate::ops::Op,
        step: &plan::Step,
        slots: &[Option<Slot<'_>>],
    ) -> std::result::Result<Arc<Value>, String> {
        let mut inputs: Vec<&Value> = Vec::with_capacity(step.inputs.len());
        for &i in &step.inputs {
            inputs.push(
                slots
                    .get(i)
                    .and_then(|s| s.as_ref())
                    .ok_or("input not computed")?
                    .get(),
            );
        }
        match op.alias_input(&inputs).and_then(|k| step.inputs.get(k)) {
            Some(&src) => Self::share(slots, src).ok_or_else(|| "input not computed".into()),
            None => op.compute(&inputs).map(Arc::new),
        }
    }

    /// Buffer forwarding: when the op can write its output over one of its inputs, that input dies at
    /// this step (it is in `step.free`), appears once among the inputs, and the session holds the only
    /// reference to it, the kernel runs in place on it. `None` when any of that does not hold.
    fn try_in_place(
        op: &crate::ops::Op,
        step: &plan::Step,
        slots: &mut [Option<Slot<'_>>],
    ) -> Option<std::result::Result<Value, String>> {
        // Cheap test first (no allocation): is any input a candidate at all?
        let candidate = |src: usize| {
            step.free.contains(&src)
                && step.inputs.iter().filter(|&&i| i == src).count() == 1
                && matches!(
                    slots.get(src).and_then(|s| s.as_ref()),
                    Some(Slot::Owned(a)) if Arc::strong_count(a) == 1 && Arc::weak_count(a) == 0
                )
        };
        if !step.inputs.iter().any(|&i| candidate(i)) {
            return None;
        }
        let k = {
            let mut inputs: Vec<&Value> = Vec::with_capacity(step.inputs.len());
            for &i in &step.inputs {
                inputs.push(slots.get(i)?.as_ref()?.get());
            }
            if op.alias_input(&inputs).is_some() {
                return None;
            }
            op.in_place_input(&inputs)?
        };
        let src = *step.inputs.get(k)?;
        if !candidate(src) {
            return None;
        }
        let Some(Slot::Owned(arc)) = slots.get_mut(src)?.take() else {
            return None;
        };
        let mut target = match Arc::try_unwrap(arc) {
            Ok(v) => v,
            Err(arc) => {
                slots[src] = Some(Slot::Owned(arc));
                return None;
            }
        };
        let mut others: Vec<&Value> = Vec::with_capacity(step.inputs.len());
        for &i in step.inputs.iter().filter(|&&i| i != src) {
            match slots.get(i).and_then(|s| s.as_ref()) {
                Some(s) => others.push(s.get()),
                None => return Some(Err("input not computed".into())),
            }
        }
        Some(
            op.compute_in_place(k, &mut target, &others)
                .map(|()| target),
        )
    }

    /// The value in `slot` as a shared `Arc` (copied only when it was borrowed from the caller's feeds).
    fn share(slots: &[Option<Slot<'_>>], slot: usize) -> Option<Arc<Value>> {
        match slots.get(slot)?.as_ref()? {
            Slot::Owned(a) => Some(a.clone()),
            Slot::Fed(v) => Some(Arc::new((*v).clone())),
        }
    }

    /// The current value of a variable, without running the graph.
    pub fn variable_value(&self, v: Variable) -> Result<Value> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .vars
            .get(&v.index())
            .map(|x| x.as_ref().clone())
            .ok_or_else(|| Error::UninitializedVariable {
                name: v.op_name(&self.graph),
            })
    }

    /// Sets a variable's value directly (used by `Saver::restore`); the dtype and shape must match.
    pub fn set_variable_value(&self, v: Variable, value: Value) -> Result<()> {
        let info = self.graph.info(v.var_tensor())?;
        if value.dtype() != info.dtype || !info.shape.accepts(value.shape()) {
            return Err(Error::FeedMismatch {
                tensor: v.name(&self.graph),
                dtype: info.dtype,
                shape: info.shape,
                got_dtype: value.dtype(),
                got_shape: value.shape().to_vec(),
            });
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.vars.insert(v.index(), Arc::new(value));
        Ok(())
    }

    /// True when the variable has a value in this session.
    pub fn is_initialized(&self, v: Variable) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.vars.contains_key(&v.index())
    }

    /// Number of cached plans (each distinct signature compiles once).
    /// Time per op type over every run since the session was made (or since [`Self::reset_profile`]),
    /// most expensive first; empty unless [`SessionOptions::profile`] is on.
    pub fn profile(&self) -> Vec<OpProfile> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<OpProfile> = state
            .profile
            .iter()
            .map(|(&op_type, &(calls, d, in_place))| OpProfile {
                op_type,
                calls,
                seconds: d.as_secs_f64(),
                in_place,
            })
            .collect();
        v.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        v
    }

    /// Clears the profile (after warm-up, say).
    pub fn reset_profile(&self) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .profile
            .clear();
    }

    pub fn cached_plans(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .plans
            .len()
    }
}

/// `var += value` (or `-=`) in place when no one else holds the variable's value, else on a copy.
fn update_in_place(cur: &mut Arc<Value>, value: &Value, add: bool) -> crate::error::OpResult<()> {
    if cur.shape() != value.shape() {
        return Err(format!(
            "update of shape {:?} does not fit the variable's shape {:?}",
            value.shape(),
            cur.shape()
        ));
    }
    match (Arc::make_mut(cur), value) {
        (Value::F32(a), Value::F32(b)) => {
            a.zip_mut_with(b, |x, &y| *x = if add { *x + y } else { *x - y })
        }
        (Value::F64(a), Value::F64(b)) => {
            a.zip_mut_with(b, |x, &y| *x = if add { *x + y } else { *x - y })
        }
        (Value::I64(a), Value::I64(b)) => a.zip_mut_with(b, |x, &y| {
            *x = if add {
                x.wrapping_add(y)
            } else {
                x.wrapping_sub(y)
            }
        }),
        (a, b) => {
            return Err(format!(
                "cannot update a {} variable with a {} value",
                a.dtype(),
                b.dtype()
            ))
        }
    }
    Ok(())
}

fn slice_mut<T>(a: &mut ndarray::ArrayD<T>) -> crate::error::OpResult<&mut [T]> {
    a.as_slice_mut()
        .ok_or_else(|| "variable storage is not contiguous".to_string())
}

/// Runs a fused optimizer rule on a variable and its slots, in place where no reader holds them.
fn apply_in_place(
    rule: &ApplyRule,
    w: &mut Arc<Value>,
    slots: &mut [Arc<Value>],
    grad: &Value,
    lr: &Value,
) -> crate::error::OpResult<()> {
    if slots.len() != rule.slot_count() {
        return Err("missing slot variables".into());
    }
    let lr = lr
        .scalar_value()
        .ok_or("the learning rate must be a scalar")?;
    match w.dtype() {
        DType::F32 => apply_typed::<f32>(rule, w, slots, grad, lr),
        DType::F64 => apply_typed::<f64>(rule, w, slots, grad, lr),
        d => Err(format!(
            "cannot apply an optimizer update to a {d} variable"
        )),
    }
}

fn apply_typed<T: FloatArray>(
    rule: &ApplyRule,
    w: &mut Arc<Value>,
    slots: &mut [Arc<Value>],
    grad: &Value,
    lr: f64,
) -> crate::error::OpResult<()> {
    let mut ss = Vec::with_capacity(slots.len());
    for s in slots.iter_mut() {
        let dt = s.dtype();
        let a = T::array_mut(Arc::make_mut(s))
            .ok_or_else(|| format!("a slot of dtype {dt} does not match the variable"))?;
        ss.push(slice_mut(a)?);
    }
    let g = T::array(grad).and_then(|a| a.as_slice()).ok_or_else(|| {
        format!(
            "the gradient ({}) does not match the variable's dtype",
            grad.dtype()
        )
    })?;
    let wa = T::array_mut(Arc::make_mut(w)).ok_or("variable dtype changed")?;
    rule.apply(slice_mut(wa)?, &mut ss, g, T::from_f64(lr))
}

/// Convenience: a feed pair.
pub fn feed(t: Tensor, v: impl Into<Value>) -> (Tensor, Value) {
    (t, v.into())
}
