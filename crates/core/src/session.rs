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
use ferroflow_cpu::{Communicator, Context, CpuConfig, MemoryBudget, VecPool, Workers, Workspaces};
use rand::rngs::StdRng;
use rand::SeedableRng;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Session settings.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Run the compiler passes (CSE and constant folding). On by default; they never change results.
    pub optimize: bool,
    /// Threads one kernel may use (TF's intra-op parallelism); defaults to the parallelism the
    /// process may use (`std::thread::available_parallelism`: the CPUs of its affinity mask, within
    /// its cgroup's CPU quota).
    pub threads: usize,
    /// Stop a run at the first op whose float output holds NaN or infinity, with an error naming that
    /// node and its op (the exploding-gradient debugging tool). Off by default: it scans every output.
    pub check_numerics: bool,
    /// Time every step and add it up per op type (TF's `RunMetadata` step stats, summed), for
    /// [`Session::profile`]. Off by default: it reads the clock twice per node.
    pub profile: bool,
    /// Let elementwise kernels write their output into an input buffer that no later node reads and
    /// that nothing else holds (TF's buffer forwarding), and keep the storage of each run's dead
    /// values for the kernels that fill the same slots on the next run, so that a step allocates
    /// nothing after warm-up. On by default; results are identical.
    pub reuse_buffers: bool,
    /// Fuse a matrix product with the bias add (and its `Relu`) or the activation gradient that alone
    /// reads it: one step that runs the second op over each band of rows as soon as the band is
    /// computed (with [`SessionOptions::optimize`]). On by default; results are identical.
    pub fuse_products: bool,
    /// The CPU backend's settings (see [`CpuConfig`]); [`Session::set_cpu_config`] changes them
    /// between runs.
    pub cpu: CpuConfig,
    /// Let each plan choose, from run to run, between all [`SessionOptions::threads`] and one:
    /// it runs on whichever its recent runs found faster and tries the other for two runs every 16
    /// to 512 runs. On a machine where other processes keep cores busy, a step split across threads
    /// waits for the thread whose core was taken, and one thread is then faster. On by default;
    /// results are identical on any number of threads.
    pub adapt_threads: bool,
    /// The worker threads to run on, shared with other sessions; `None` (the default): the session
    /// starts its own on its first run with more than one thread. Sharing matters for a program that
    /// makes many sessions on one thread: that thread joins the first pool built on it as worker 0,
    /// so parallel kernels start on it at once, and later pools are handed each run instead.
    pub workers: Option<Arc<Workers>>,
    /// The most bytes of tensors a run may hold at once (variables, feeds, and the values still
    /// to be read); `None` (the default): no limit. A kernel whose output would pass it fails
    /// before allocating, with TF's "OOM when allocating" error naming the node, as a device out
    /// of memory does in TF. Pooled storage counts as soon as a kernel takes it.
    pub memory_limit: Option<usize>,
    /// The ranks of the data-parallel job this process is one of, for the collective ops
    /// (`all_reduce`, `broadcast`, `all_gather`); `None` (the default): a graph with collectives
    /// fails at the first one, saying it needs a communicator.
    pub communicator: Option<Arc<dyn Communicator>>,
}

/// The profile's totals per (op type, built by `gradients`): calls, time, calls run in place.
type ProfileMap = HashMap<(&'static str, bool), (u64, std::time::Duration, u64)>;

/// One line of [`Session::profile`]: an op type, how many nodes of it ran, and their total time.
/// The nodes that `gradients` built (the backward pass, named under `gradients/`) have lines of their
/// own, apart from the forward nodes of the same op type.
#[derive(Clone, Debug, PartialEq)]
pub struct OpProfile {
    pub op_type: &'static str,
    /// Whether these are nodes of the backward pass (built by `gradients`).
    pub gradient: bool,
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
            fuse_products: true,
            cpu: CpuConfig::default(),
            adapt_threads: true,
            workers: None,
            memory_limit: None,
            communicator: None,
        }
    }
}

impl SessionOptions {
    /// The defaults with `threads` intra-op threads (TF's `intra_op_parallelism_threads`).
    pub fn with_threads(threads: usize) -> Self {
        SessionOptions {
            threads,
            ..Default::default()
        }
    }
}

type PlanKey = (Vec<usize>, Vec<usize>, Vec<usize>);

/// A compiled plan with the memory its runs reuse.
struct Cached {
    key: PlanKey,
    plan: Arc<Plan>,
    /// The slot table, empty between runs (kept for its allocation).
    slots: Vec<Option<Slot>>,
    /// How many threads its runs use (see [`SessionOptions::adapt_threads`]).
    threads: ThreadChoice,
}

struct State {
    vars: HashMap<usize, Arc<Value>>,
    rngs: HashMap<usize, StdRng>,
    plans: Vec<Cached>,
    plan_index: HashMap<PlanKey, usize>,
    /// The plan of the previous run, found again without building its key.
    last_plan: Option<usize>,
    graph_version: u64,
    profile: ProfileMap,
    /// Storage of dead values, where kernels take their outputs from (see [`VecPool`]).
    pool: Mutex<VecPool>,
    /// Emptied `Arc`s of dead values, to wrap new ones without allocating.
    shells: Vec<Arc<Value>>,
    /// The pool of the second product of a pair (see `Run::try_pair`).
    side_pool: Mutex<VecPool>,
    /// The backend's settings for the next run.
    cpu: CpuConfig,
    /// The worker threads, started on the first run with more than one thread.
    workers: Option<Arc<Workers>>,
    /// The packing workspace of runs on one thread.
    workspace: Workspaces,
}

/// Input lists of one kernel call: on the stack for up to 64 inputs (the `AddN` of a global gradient
/// norm has one per variable).
type Inputs<'a> = SmallVec<[&'a Value; 64]>;

/// Runs a graph. Variables live here, not in the graph, so two sessions over one graph have
/// independent values. `run` takes `&self` and may be called from several threads; runs are
/// serialized, so each run (and so each train op) sees and updates the variables atomically.
pub struct Session {
    graph: Graph,
    options: SessionOptions,
    state: Mutex<State>,
}

/// A slot's value during a run: computed (shared) or the caller's feed number `i`.
enum Slot {
    Owned(Arc<Value>),
    Fed(usize),
}

/// The value in slot `i`, if computed.
fn slot_value<'a>(
    slots: &'a [Option<Slot>],
    feeds: &'a [(Tensor, Value)],
    i: usize,
) -> Option<&'a Value> {
    match slots.get(i)?.as_ref()? {
        Slot::Owned(v) => Some(v),
        Slot::Fed(k) => feeds.get(*k).map(|(_, v)| v),
    }
}

impl Session {
    /// A session over `graph` with default options.
    pub fn new(graph: &Graph) -> Self {
        Self::with_options(graph, SessionOptions::default())
    }

    /// A session with explicit options.
    pub fn with_options(graph: &Graph, options: SessionOptions) -> Self {
        let (cpu, workers) = (options.cpu.clone(), options.workers.clone());
        Session {
            graph: graph.clone(),
            options,
            state: Mutex::new(State {
                vars: HashMap::new(),
                rngs: HashMap::new(),
                plans: Vec::new(),
                plan_index: HashMap::new(),
                last_plan: None,
                pool: Mutex::default(),
                shells: Vec::new(),
                side_pool: Mutex::default(),
                cpu,
                workers,
                workspace: Workspaces::new(1),
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
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        let at = self.plan_for(state, fetches, feeds, targets)?;
        let max = self.options.threads.max(1);
        if max > 1 && state.workers.is_none() {
            state.workers = Some(Arc::new(Workers::new(max)?));
        }
        let cached = state
            .plans
            .get_mut(at)
            .ok_or_else(|| Error::internal("plan cache entry vanished"))?;
        let adapt = self.options.adapt_threads && max > 1;
        let threads = if adapt {
            cached.threads.threads(max)
        } else {
            max
        };
        let workers = if max > 1 {
            state.workers.as_deref()
        } else {
            None
        };
        let workspaces = workers.map_or(&state.workspace, Workers::workspaces);
        let mut ctx = Context::new(&state.cpu, threads).with_workspaces(workspaces);
        if self.options.reuse_buffers {
            ctx = ctx.with_pool(&state.pool);
        }
        if let Some(comm) = &self.options.communicator {
            ctx = ctx.with_communicator(&**comm);
        }
        let mut run = Run {
            vars: &mut state.vars,
            rngs: &mut state.rngs,
            profile: &mut state.profile,
            shells: &mut state.shells,
            pool: &state.pool,
            side_pool: &state.side_pool,
        };
        let options = &self.options;
        let started = std::time::Instant::now();
        let out = match workers {
            Some(w) => w.install(|| run.execute(&ctx, cached, feeds, options)),
            None => run.execute(&ctx, cached, feeds, options),
        };
        if adapt && out.is_ok() {
            let fed: usize = feeds.iter().map(|(_, v)| v.len()).sum();
            let cost = started.elapsed().as_secs_f64() / fed.max(1) as f64;
            cached.threads.record(cost);
        }
        if self.options.reuse_buffers {
            lock(&state.pool).end_run();
            lock(&state.side_pool).end_run();
        }
        if let Some(w) = workers {
            w.workspaces().settle()?;
        }
        out
    }

    /// Changes the CPU backend's settings for the runs from now on (none changes a result; see
    /// [`CpuConfig`]).
    pub fn set_cpu_config(&self, config: CpuConfig) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).cpu = config;
    }

    /// Computes one tensor.
    pub fn run_one(&self, fetch: Tensor, feeds: &[(Tensor, Value)]) -> Result<Value> {
        let mut v = self.run(&[fetch], feeds, &[])?;
        v.pop()
            .ok_or_else(|| Error::internal("run returned no value"))
    }

    /// Runs ops for their effects (an initializer, a train op).
    pub fn run_targets(&self, targets: &[Operation], feeds: &[(Tensor, Value)]) -> Result<()> {
        self.run(&[], feeds, targets).map(|_| ())
    }

    /// The cache index of the plan for this signature, compiling it on first use. The previous run's
    /// plan is recognized without allocating.
    fn plan_for(
        &self,
        state: &mut State,
        fetches: &[Tensor],
        feeds: &[(Tensor, Value)],
        targets: &[Operation],
    ) -> Result<usize> {
        let version = self.graph.version();
        if version != state.graph_version {
            state.plans.clear();
            state.plan_index.clear();
            state.last_plan = None;
            state.graph_version = version;
        }
        if let Some(at) = state.last_plan {
            if let Some(c) = state.plans.get(at) {
                let (f, d, t) = &c.key;
                if f.iter().copied().eq(fetches.iter().map(|t| t.index()))
                    && d.iter().copied().eq(feeds.iter().map(|(t, _)| t.index()))
                    && t.iter().copied().eq(targets.iter().map(|o| o.index()))
                {
                    return Ok(at);
                }
            }
        }
        let key: PlanKey = (
            fetches.iter().map(|t| t.index()).collect(),
            feeds.iter().map(|(t, _)| t.index()).collect(),
            targets.iter().map(|o| o.index()).collect(),
        );
        let at = match state.plan_index.get(&key) {
            Some(&at) => at,
            None => {
                let plan = self.graph.with_inner(|g| {
                    plan::compile(
                        g,
                        &key.0,
                        &key.1,
                        &key.2,
                        self.options.optimize,
                        self.options.fuse_products,
                    )
                })?;
                let n = plan.n_slots;
                state.plans.push(Cached {
                    key: key.clone(),
                    plan: Arc::new(plan),
                    slots: Vec::with_capacity(n),
                    threads: ThreadChoice::default(),
                });
                state.plan_index.insert(key, state.plans.len() - 1);
                state.plans.len() - 1
            }
        };
        state.last_plan = Some(at);
        Ok(at)
    }
}

mod run;
mod threads;
mod update;
use run::Run;
use threads::ThreadChoice;

impl Session {
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

    /// Frees the storage the session keeps for reuse between runs (the pool of dead values' buffers,
    /// about the peak of the largest run so far, like TF's allocator keeps its chunks). The next run
    /// allocates afresh.
    pub fn release_memory(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.pool = Mutex::default();
        state.shells = Vec::new();
        state.side_pool = Mutex::default();
    }

    /// Time per op type over every run since the session was made (or since [`Self::reset_profile`]),
    /// most expensive first; empty unless [`SessionOptions::profile`] is on.
    pub fn profile(&self) -> Vec<OpProfile> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<OpProfile> = state
            .profile
            .iter()
            .map(|(&(op_type, gradient), &(calls, d, in_place))| OpProfile {
                op_type,
                gradient,
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

    /// Number of buffers the session keeps for reuse between runs (see [`Self::release_memory`]).
    pub fn pooled_buffers(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let n = lock(&state.pool).len();
        n
    }

    /// Number of cached plans (each distinct signature compiles once).
    pub fn cached_plans(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .plans
            .len()
    }
}

/// Locks a pool (a poisoned one is still a valid pool: it holds only spare storage).
fn lock(pool: &Mutex<VecPool>) -> std::sync::MutexGuard<'_, VecPool> {
    pool.lock().unwrap_or_else(|e| e.into_inner())
}

/// Convenience: a feed pair.
pub fn feed(t: Tensor, v: impl Into<Value>) -> (Tensor, Value) {
    (t, v.into())
}
