//! The execution context every kernel receives: the configuration, how many threads it may use, the
//! pool its output storage comes from and the packing workspaces of the matrix products. A session
//! builds one per run from state it owns; nothing a kernel needs is reached through a thread-local
//! or a global. The communicator of a data-parallel job is one more field; so would a device be.

use crate::comm::Communicator;
use crate::config::CpuConfig;
use crate::error::{Error, Result};
use crate::pool::VecPool;
use crate::simd::Isa;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// The defaults, for a context built without a configuration.
static DEFAULT_CONFIG: CpuConfig = CpuConfig::DEFAULT;

/// What a kernel runs with. Cheap to copy: a few references and a thread count.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    config: &'a CpuConfig,
    threads: usize,
    pool: Option<&'a Mutex<VecPool>>,
    workspaces: Option<&'a Workspaces>,
    budget: Option<&'a MemoryBudget>,
    comm: Option<&'a dyn Communicator>,
}

impl Context<'static> {
    /// One thread, the default configuration, no pool (fresh allocations) and no kept workspaces:
    /// for computing a kernel outside a session (constant folding, tests).
    pub fn serial() -> Self {
        Context {
            config: &DEFAULT_CONFIG,
            threads: 1,
            pool: None,
            workspaces: None,
            budget: None,
            comm: None,
        }
    }
}

impl<'a> Context<'a> {
    /// A context with `config` and `threads` threads (at least one), without a pool or workspaces.
    pub fn new(config: &'a CpuConfig, threads: usize) -> Self {
        Context {
            config,
            threads: threads.max(1),
            pool: None,
            workspaces: None,
            budget: None,
            comm: None,
        }
    }

    /// This context with output storage taken from `pool`.
    pub fn with_pool(self, pool: &'a Mutex<VecPool>) -> Self {
        Context {
            pool: Some(pool),
            ..self
        }
    }

    /// This context with the products' packing buffers kept in `workspaces`.
    pub fn with_workspaces(self, workspaces: &'a Workspaces) -> Self {
        Context {
            workspaces: Some(workspaces),
            ..self
        }
    }

    /// This context with every output it allocates drawn from `budget` (a session's memory limit).
    pub fn with_budget(self, budget: &'a MemoryBudget) -> Self {
        Context {
            budget: Some(budget),
            ..self
        }
    }

    /// This context with collectives run over `comm` (the ranks of a data-parallel job).
    pub fn with_communicator(self, comm: &'a dyn Communicator) -> Self {
        Context {
            comm: Some(comm),
            ..self
        }
    }

    /// The communicator collectives run over, if the session has one.
    pub fn communicator(&self) -> Option<&'a dyn Communicator> {
        self.comm
    }

    /// This context limited to `threads` threads.
    pub fn with_threads(self, threads: usize) -> Self {
        Context {
            threads: threads.max(1),
            ..self
        }
    }

    /// Whether output storage comes from a pool.
    pub fn has_pool(&self) -> bool {
        self.pool.is_some()
    }

    /// Runs `a` and `b`: with more than one thread, on two when another worker is free (inter-op
    /// parallelism: two independent kernels of a step at once); with one, `a` and then `b` on the
    /// calling thread.
    pub fn join<A: Send, B: Send>(
        &self,
        a: impl FnOnce() -> A + Send,
        b: impl FnOnce() -> B + Send,
    ) -> (A, B) {
        if self.threads > 1 {
            rayon::join(a, b)
        } else {
            (a(), b())
        }
    }

    /// The configuration.
    pub fn config(&self) -> &'a CpuConfig {
        self.config
    }

    /// How many threads a kernel may use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether an elementwise pass over `elements` values splits across threads.
    pub fn parallel(&self, elements: usize) -> bool {
        self.threads > 1 && elements >= self.config.parallel_min_elements
    }

    /// The instruction set the vectorized loops use: what the CPU has, capped by the configuration.
    pub fn isa(&self) -> Isa {
        crate::simd::detected_once().min(self.config.simd)
    }

    /// Runs `f` compiled for [`Context::isa`] (see [`crate::simd::vectorized_with`]).
    #[inline(always)]
    pub fn vectorized<R>(&self, f: impl FnOnce() -> R) -> R {
        crate::simd::vectorized_with(self.isa(), f)
    }

    /// An empty vector with room for `n` elements: a pooled one when one fits, else a new one, or an
    /// error when the allocator refuses it (a legal but larger-than-memory tensor), instead of
    /// aborting the process.
    pub fn try_vec<T: 'static>(&self, n: usize) -> Result<Vec<T>> {
        self.charge::<T>(n)?;
        if let Some(v) = self.take_spare::<T>(n) {
            return Ok(v);
        }
        let mut v = Vec::new();
        v.try_reserve_exact(n)
            .map_err(|_| Error::out_of_memory::<T>("a tensor", n))?;
        Ok(v)
    }

    /// `n` copies of `x`, allocated fallibly (see [`Context::try_vec`]).
    pub fn try_filled_vec<T: Clone + 'static>(&self, n: usize, x: T) -> Result<Vec<T>> {
        let mut v = self.try_vec(n)?;
        v.resize(n, x);
        Ok(v)
    }

    /// An empty vector with room for `n`: pooled when one fits, else new, for kernels whose input
    /// already proves the size is one the allocator can give; an error only beyond the memory
    /// budget (see [`Context::with_budget`]).
    pub fn output_vec<T: 'static>(&self, n: usize) -> Result<Vec<T>> {
        self.charge::<T>(n)?;
        Ok(self
            .take_spare::<T>(n)
            .unwrap_or_else(|| Vec::with_capacity(n)))
    }

    /// Draws `n` values of `T` from the budget, if there is one.
    fn charge<T>(&self, n: usize) -> Result<()> {
        match self.budget {
            Some(b) => b.draw(n.saturating_mul(std::mem::size_of::<T>())),
            None => Ok(()),
        }
    }

    /// Gives a scratch vector back to the pool (dropped when there is none).
    pub fn recycle<T: 'static>(&self, v: Vec<T>) {
        if let Some(mut p) = self.lock_pool() {
            p.put_vec(v);
        }
    }

    fn take_spare<T: 'static>(&self, n: usize) -> Option<Vec<T>> {
        self.lock_pool()?.take::<T>(n)
    }

    fn lock_pool(&self) -> Option<MutexGuard<'a, VecPool>> {
        self.pool
            .map(|p| p.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `f` on at least `lines` cache lines of packing workspace.
    pub(crate) fn with_workspace(&self, lines: usize, f: impl FnOnce(*mut Line)) -> Result<()> {
        match self.workspaces {
            Some(w) => w.with(lines, f),
            None => {
                let mut work = Vec::new();
                grow(&mut work, lines)?;
                f(work.as_mut_ptr());
                Ok(())
            }
        }
    }
}

/// One cache line of workspace (the packed panels start on line boundaries).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [u8; 64]);

/// Grows `work` to at least `lines` cache lines (fallibly).
fn grow(work: &mut Vec<Line>, lines: usize) -> Result<()> {
    if work.len() < lines {
        work.try_reserve_exact(lines - work.len())
            .map_err(|_| Error::out_of_memory::<Line>("a packing workspace", lines))?;
        work.resize(lines, Line([0; 64]));
    }
    Ok(())
}

/// The packing buffers of the matrix products: one per worker thread, grown to the largest product
/// run so far and then reused, so that a product after warm-up allocates nothing.
pub struct Workspaces {
    slots: Vec<Mutex<Vec<Line>>>,
    /// The most lines any product has asked for: [`Workspaces::settle`] grows every slot to it.
    largest: AtomicUsize,
}

impl std::fmt::Debug for Workspaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspaces")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl Workspaces {
    /// `n` workspaces (at least one), empty until a product needs them.
    pub fn new(n: usize) -> Self {
        Workspaces {
            slots: (0..n.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            largest: AtomicUsize::new(0),
        }
    }

    /// Grows every workspace to the most lines any product has asked for. The session calls it after
    /// each run, when no product holds one: a workspace that was busy while another grew catches up
    /// then, so a thread that got no large product during warm-up does not allocate later.
    pub fn settle(&self) -> Result<()> {
        self.grow_free(self.largest.load(Ordering::Relaxed))
    }

    /// Grows every workspace no product holds now to at least `lines`.
    fn grow_free(&self, lines: usize) -> Result<()> {
        for slot in &self.slots {
            if let Some(mut work) = try_lock(slot) {
                grow(&mut work, lines)?;
            }
        }
        Ok(())
    }

    /// Runs `f` on at least `lines` lines of a free workspace: the one of the calling worker thread
    /// when it is free, else any free one. A workspace that grows makes every other free one grow
    /// with it (and [`Workspaces::settle`] the busy ones). When all are busy (not expected: there
    /// are as many as threads), `f` gets a fresh buffer.
    fn with(&self, lines: usize, f: impl FnOnce(*mut Line)) -> Result<()> {
        self.largest.fetch_max(lines, Ordering::Relaxed);
        let n = self.slots.len();
        let first = rayon::current_thread_index().unwrap_or(0) % n;
        let held = (0..n).find_map(|i| try_lock(&self.slots[(first + i) % n]));
        let Some(mut work) = held else {
            let mut work = Vec::new();
            grow(&mut work, lines)?;
            f(work.as_mut_ptr());
            return Ok(());
        };
        if work.len() < lines {
            grow(&mut work, lines)?;
            self.grow_free(lines)?;
        }
        f(work.as_mut_ptr());
        Ok(())
    }
}

fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// The threads a session's kernels run on, with a packing workspace for each: a rayon pool that the
/// thread building it joins as worker 0 when it can (parallel kernels then start on the calling
/// thread at once and wake only the other workers), else an ordinary pool that a run is handed to.
pub struct Workers {
    pool: rayon::ThreadPool,
    workspaces: Workspaces,
    threads: usize,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.threads)
            .finish()
    }
}

impl Workers {
    /// A pool of `threads` workers (at least one). The calling thread becomes worker 0 unless it
    /// already belongs to a rayon pool (a thread can join one only, for its whole life); then all
    /// `threads` workers are new threads.
    pub fn new(threads: usize) -> Result<Self> {
        let threads = threads.max(1);
        let builder = || {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("ferroflow-intra-op-{i}"))
        };
        let pool = match builder().use_current_thread().build() {
            Ok(p) => p,
            Err(_) => builder().build().map_err(|e| Error::Threads {
                threads,
                message: e.to_string(),
            })?,
        };
        // Every worker registers with the epoch collector of rayon's deques now (an allocation on
        // its first steal otherwise, which could fall in a later run).
        pool.broadcast(|_| drop(crossbeam_epoch::pin()));
        Ok(Workers {
            pool,
            workspaces: Workspaces::new(threads),
            threads,
        })
    }

    /// How many threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The packing workspaces, one per thread.
    pub fn workspaces(&self) -> &Workspaces {
        &self.workspaces
    }

    /// Runs `f` inside the pool: on the calling thread when it is one of the workers, else on a
    /// worker while the caller waits.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

/// What the outputs of one kernel may still allocate under a session's memory limit: the limit
/// less what the run already holds. Kernels running at once draw from it together.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    left: std::sync::atomic::AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes of which `held` are taken.
    pub fn new(limit: usize, held: usize) -> Self {
        MemoryBudget {
            limit,
            left: std::sync::atomic::AtomicUsize::new(limit.saturating_sub(held)),
        }
    }

    /// Takes `bytes`, or refuses them all with [`Error::MemoryLimit`] when fewer are left.
    pub fn draw(&self, bytes: usize) -> Result<()> {
        use std::sync::atomic::Ordering;
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(bytes)
            })
            .map(|_| ())
            .map_err(|left| Error::MemoryLimit {
                bytes,
                held: self.limit.saturating_sub(left),
                limit: self.limit,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_takes_output_storage_from_its_pool() {
        let pool = Mutex::new(VecPool::default());
        pool.lock()
            .unwrap()
            .put_vec(Vec::<f32>::with_capacity(1000));
        let config = CpuConfig::default();
        let ctx = Context::new(&config, 2).with_pool(&pool);
        assert!(ctx.try_vec::<f32>(600).unwrap().capacity() >= 1000);
        // Nothing left that fits: a fresh vector of exactly the size.
        assert_eq!(ctx.try_vec::<f32>(600).unwrap().capacity(), 600);
        ctx.recycle(vec![0i64; 10]);
        assert_eq!(pool.lock().unwrap().len(), 1);
        // Without a pool, always fresh; an impossible size is an error, not an abort.
        assert_eq!(Context::serial().try_vec::<f32>(7).unwrap().capacity(), 7);
        assert_eq!(
            Context::serial().try_vec::<f32>(usize::MAX / 8),
            Err(Error::OutOfMemory {
                what: "a tensor",
                elements: usize::MAX / 8,
                bytes: usize::MAX / 8 * 4,
            })
        );
    }

    #[test]
    fn a_budget_refuses_what_would_pass_the_limit_and_takes_nothing_then() {
        // 100 bytes, 60 held: 40 left. 10 f32 (40 bytes) fit exactly; one more f32 does not.
        let b = MemoryBudget::new(100, 60);
        let ctx = Context::serial().with_budget(&b);
        assert_eq!(ctx.try_vec::<f32>(10).unwrap().capacity(), 10);
        assert_eq!(
            ctx.output_vec::<f32>(1),
            Err(Error::MemoryLimit {
                bytes: 4,
                held: 100,
                limit: 100
            })
        );
        let b = MemoryBudget::new(100, 60);
        let ctx = Context::serial().with_budget(&b);
        assert!(ctx.try_vec::<f64>(6).is_err()); // 48 > 40: refused, nothing taken
        assert!(ctx.try_vec::<f64>(5).is_ok()); // 40 fit
                                                // More held than the limit: nothing fits, not even one byte.
        assert!(MemoryBudget::new(10, 20).draw(1).is_err());
    }

    #[test]
    fn settling_grows_a_workspace_that_was_busy_when_another_grew() {
        let w = Workspaces::new(2);
        let ctx = Context::serial().with_workspaces(&w);
        {
            let _busy = w.slots[1].lock().unwrap();
            ctx.with_workspace(50, |_| ()).unwrap();
        }
        assert_eq!(w.slots[1].lock().unwrap().len(), 0);
        w.settle().unwrap();
        assert!(w.slots.iter().all(|s| s.lock().unwrap().len() == 50));
    }

    #[test]
    fn a_growing_workspace_grows_the_free_ones_with_it() {
        let w = Workspaces::new(3);
        let ctx = Context::serial().with_workspaces(&w);
        ctx.with_workspace(100, |p| assert!(!p.is_null())).unwrap();
        for slot in &w.slots {
            assert_eq!(slot.lock().unwrap().len(), 100);
        }
        // A smaller request grows nothing.
        ctx.with_workspace(10, |_| ()).unwrap();
        assert!(w.slots.iter().all(|s| s.lock().unwrap().len() == 100));
    }

    #[test]
    fn workers_run_a_closure_and_report_their_threads() {
        let w = std::thread::spawn(|| {
            let w = Workers::new(2).unwrap();
            // This thread joined the pool as worker 0: installing runs right here.
            let here = w.install(rayon::current_thread_index);
            (w.threads(), here)
        })
        .join()
        .unwrap();
        assert_eq!(w, (2, Some(0)));
    }
}
