//! Collective communication between the ranks of a data-parallel job: the [`Communicator`] trait
//! that collective kernels reach through their [`Context`](crate::Context), and [`LocalGroup`], a
//! group whose ranks are threads of one process (for tests, and for trying a distributed graph
//! without a cluster). The MPI implementation lives in the `ferroflow-mpi` crate.
//!
//! Every collective is in place on a buffer of one of three dtypes, and every call names what it is
//! (its kind, key, dtype and length): a group whose ranks disagree on any of these fails on every
//! rank with an error naming the ranks and their calls, rather than pairing up the wrong buffers.

use crate::error::{Error, Result};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One rank's buffer in a collective.
#[derive(Debug)]
pub enum CommBuf<'a> {
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
    I64(&'a mut [i64]),
}

impl CommBuf<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            CommBuf::F32(s) => s.len(),
            CommBuf::F64(s) => s.len(),
            CommBuf::I64(s) => s.len(),
        }
    }
    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// TF's name of the dtype.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            CommBuf::F32(_) => "float32",
            CommBuf::F64(_) => "float64",
            CommBuf::I64(_) => "int64",
        }
    }
}

/// Which collective a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollectiveKind {
    /// Every rank's buffer becomes the elementwise sum over the ranks.
    AllReduceSum,
    /// Every rank's buffer becomes the root's.
    Broadcast { root: usize },
    /// The buffer is `size` equal segments; each rank fills its own (segment `rank`) and ends with
    /// every rank's segment.
    AllGather,
}

impl fmt::Display for CollectiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CollectiveKind::AllReduceSum => write!(f, "all-reduce (sum)"),
            CollectiveKind::Broadcast { root } => write!(f, "broadcast from rank {root}"),
            CollectiveKind::AllGather => write!(f, "all-gather"),
        }
    }
}

/// What a rank says it is doing in one collective: every rank of the group must say the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallInfo {
    pub kind: CollectiveKind,
    /// The name the graph gave the collective (the reduced tensor's name, as Horovod's ops).
    pub key: String,
    pub dtype: &'static str,
    pub len: usize,
}

impl fmt::Display for CallInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} '{}' of {} {}",
            self.kind, self.key, self.len, self.dtype
        )
    }
}

/// The message for ranks whose calls differ: each rank's call, or `None` when they all agree.
pub fn mismatch(calls: &[CallInfo]) -> Option<String> {
    let first = calls.first()?;
    if calls.iter().all(|c| c == first) {
        return None;
    }
    let each: Vec<String> = calls
        .iter()
        .enumerate()
        .map(|(r, c)| format!("rank {r}: {c}"))
        .collect();
    Some(format!(
        "the ranks called different collectives ({})",
        each.join("; ")
    ))
}

/// The ranks of a data-parallel job, seen from one of them. Calls are collective: every rank of
/// the group makes the same calls in the same order, and a call returns when all have made it (or
/// with an error on every rank when one cannot: a rank gone, a timeout, calls that differ).
pub trait Communicator: Send + Sync + fmt::Debug {
    /// This rank, `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Runs the collective `call` describes over `data` in place. Every rank ends with the same
    /// bits.
    fn collective(&self, call: &CallInfo, data: CommBuf<'_>) -> Result<()>;
    /// Starts the collective `call` describes over `data` and returns a ticket for
    /// [`Communicator::finish`]: at once where the implementation makes progress in the background
    /// (MPI's communication thread), after running it otherwise. Starts count as calls: every rank
    /// makes the same starts and collectives in the same order.
    fn start(&self, call: CallInfo, data: CommVec) -> Result<Ticket>;
    /// Waits for a started collective and returns its result.
    fn finish(&self, ticket: Ticket) -> Result<CommVec>;
}

/// What [`Communicator::start`] returns: the number of a started collective.
pub type Ticket = u64;

/// The started collectives of one rank and their results, for implementations of
/// [`Communicator::start`] and [`Communicator::finish`].
#[derive(Debug, Default)]
pub struct Tickets {
    next: std::sync::atomic::AtomicU64,
    done: Mutex<std::collections::HashMap<Ticket, Result<CommVec>>>,
    finished: Condvar,
}

impl Tickets {
    /// A new ticket.
    pub fn issue(&self) -> Ticket {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
    /// Records the result of `ticket`'s collective.
    pub fn complete(&self, ticket: Ticket, result: Result<CommVec>) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.insert(ticket, result);
        self.finished.notify_all();
    }
    /// Waits for the result of `ticket`'s collective and takes it; `None` for a ticket never
    /// issued.
    pub fn wait(&self, ticket: Ticket) -> Option<Result<CommVec>> {
        if ticket >= self.next.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = done.remove(&ticket) {
                return Some(r);
            }
            done = self.finished.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The error of a failed collective on `rank`.
pub fn collective_error(rank: usize, call: &CallInfo, message: impl Into<String>) -> Error {
    Error::Collective {
        rank,
        message: format!("{call}: {}", message.into()),
    }
}

/// The error for finishing a collective that was never started.
pub fn unknown_ticket(rank: usize, ticket: Ticket) -> Error {
    Error::Collective {
        rank,
        message: format!("no collective was started with ticket {ticket}"),
    }
}

/// A collective's data, owned: what [`Communicator::start`] takes and [`Communicator::finish`]
/// gives back.
#[derive(Clone, Debug, PartialEq)]
pub enum CommVec {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
}

impl CommVec {
    /// A copy of `data`.
    pub fn of(data: &CommBuf<'_>) -> Self {
        match data {
            CommBuf::F32(s) => CommVec::F32(s.to_vec()),
            CommBuf::F64(s) => CommVec::F64(s.to_vec()),
            CommBuf::I64(s) => CommVec::I64(s.to_vec()),
        }
    }
    /// The data as a buffer to run a collective over in place.
    pub fn as_buf(&mut self) -> CommBuf<'_> {
        match self {
            CommVec::F32(v) => CommBuf::F32(v),
            CommVec::F64(v) => CommBuf::F64(v),
            CommVec::I64(v) => CommBuf::I64(v),
        }
    }
    /// Copies the data into `data` (same dtype and length).
    pub fn copy_into(&self, data: CommBuf<'_>) {
        match (self, data) {
            (CommVec::F32(v), CommBuf::F32(s)) => s.copy_from_slice(v),
            (CommVec::F64(v), CommBuf::F64(s)) => s.copy_from_slice(v),
            (CommVec::I64(v), CommBuf::I64(s)) => s.copy_from_slice(v),
            // The calls matched (dtype and length) before any result was made.
            _ => {}
        }
    }
    /// `self += other`, elementwise (same dtype and length: the calls matched).
    fn add(&mut self, other: &CommVec) {
        match (self, other) {
            (CommVec::F32(a), CommVec::F32(b)) => a.iter_mut().zip(b).for_each(|(x, y)| *x += y),
            (CommVec::F64(a), CommVec::F64(b)) => a.iter_mut().zip(b).for_each(|(x, y)| *x += y),
            (CommVec::I64(a), CommVec::I64(b)) => a
                .iter_mut()
                .zip(b)
                .for_each(|(x, y)| *x = x.wrapping_add(*y)),
            _ => {}
        }
    }
    /// Segment `r` of `from` (of `size` segments) copied into segment `r` of `self`.
    fn take_segment(&mut self, from: &CommVec, r: usize, size: usize) {
        fn seg<T: Copy>(a: &mut [T], b: &[T], r: usize, size: usize) {
            let n = a.len() / size.max(1);
            if let (Some(dst), Some(src)) =
                (a.get_mut(r * n..(r + 1) * n), b.get(r * n..(r + 1) * n))
            {
                dst.copy_from_slice(src);
            }
        }
        match (self, from) {
            (CommVec::F32(a), CommVec::F32(b)) => seg(a, b, r, size),
            (CommVec::F64(a), CommVec::F64(b)) => seg(a, b, r, size),
            (CommVec::I64(a), CommVec::I64(b)) => seg(a, b, r, size),
            _ => {}
        }
    }
}

/// The shared state of a [`LocalGroup`]: the call in progress and the last result.
#[derive(Debug)]
struct Round {
    /// Counts completed calls; a waiting rank sees it change.
    generation: u64,
    posted: Vec<Option<(CallInfo, CommVec)>>,
    result: Arc<std::result::Result<CommVec, String>>,
    /// A rank whose handle was dropped: every later call fails, naming it.
    gone: Option<usize>,
}

#[derive(Debug)]
struct Shared {
    round: Mutex<Round>,
    changed: Condvar,
    size: usize,
    timeout: Duration,
}

/// A group of ranks that are threads of one process, each holding one [`LocalRank`]. Sums add the
/// ranks' buffers in rank order, so every rank gets the same bits, whatever the timing.
pub struct LocalGroup;

impl LocalGroup {
    /// The `size` ranks of a new group (at least one); a call waits at most `timeout` for the other
    /// ranks before failing with an error that names the ranks it waited for.
    pub fn ranks(size: usize, timeout: Duration) -> Vec<LocalRank> {
        let size = size.max(1);
        let shared = Arc::new(Shared {
            round: Mutex::new(Round {
                generation: 0,
                posted: vec![None; size],
                result: Arc::new(Err(String::new())),
                gone: None,
            }),
            changed: Condvar::new(),
            size,
            timeout,
        });
        (0..size)
            .map(|rank| LocalRank {
                rank,
                shared: shared.clone(),
                tickets: Tickets::default(),
            })
            .collect()
    }
}

/// One rank of a [`LocalGroup`]. Dropping it (a rank that ends, or panics) makes every other rank's
/// current and later calls fail with an error naming it. Its starts run the collective at once.
#[derive(Debug)]
pub struct LocalRank {
    rank: usize,
    shared: Arc<Shared>,
    tickets: Tickets,
}

impl LocalRank {
    fn lock(&self) -> MutexGuard<'_, Round> {
        // A rank that panicked holding the lock left the round as it was between two statements
        // that cannot fail: the state is still whole.
        self.shared
            .round
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for LocalRank {
    fn drop(&mut self) {
        let mut round = self.lock();
        round.gone.get_or_insert(self.rank);
        drop(round);
        self.shared.changed.notify_all();
    }
}

/// The result every rank of a round gets, from the posted calls in rank order.
fn combine(posted: &[Option<(CallInfo, CommVec)>]) -> std::result::Result<CommVec, String> {
    let calls: Vec<CallInfo> = posted.iter().flatten().map(|(c, _)| c.clone()).collect();
    if let Some(m) = mismatch(&calls) {
        return Err(m);
    }
    let mut each = posted.iter().flatten();
    let (first, data) = each.next().ok_or("no rank posted")?;
    let size = posted.len();
    match first.kind {
        CollectiveKind::AllReduceSum => {
            let mut acc = data.clone();
            each.for_each(|(_, d)| acc.add(d));
            Ok(acc)
        }
        CollectiveKind::Broadcast { root } => posted
            .get(root)
            .and_then(|p| p.as_ref())
            .map(|(_, d)| d.clone())
            .ok_or_else(|| format!("root rank {root} is not in a group of {size}")),
        CollectiveKind::AllGather => {
            let mut acc = data.clone();
            for (r, p) in posted.iter().enumerate().skip(1) {
                if let Some((_, d)) = p {
                    acc.take_segment(d, r, size);
                }
            }
            Ok(acc)
        }
    }
}

impl Communicator for LocalRank {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn collective(&self, call: &CallInfo, data: CommBuf<'_>) -> Result<()> {
        let fail = |m: String| collective_error(self.rank, call, m);
        if call.kind == CollectiveKind::AllGather && !call.len.is_multiple_of(self.shared.size) {
            return Err(fail(format!(
                "an all-gather buffer of {} elements is not {} equal segments",
                call.len, self.shared.size
            )));
        }
        let mut round = self.lock();
        if let Some(r) = round.gone {
            return Err(fail(format!("rank {r} has left the group")));
        }
        let generation = round.generation;
        if let Some(slot) = round.posted.get_mut(self.rank) {
            *slot = Some((call.clone(), CommVec::of(&data)));
        }
        if round.posted.iter().all(Option::is_some) {
            let result = combine(&round.posted);
            round.result = Arc::new(result);
            round.posted.iter_mut().for_each(|p| *p = None);
            round.generation += 1;
            self.shared.changed.notify_all();
        }
        let deadline = Instant::now() + self.shared.timeout;
        while round.generation == generation {
            if let Some(r) = round.gone {
                return Err(fail(format!("rank {r} has left the group")));
            }
            let now = Instant::now();
            if now >= deadline {
                let missing: Vec<usize> = (0..self.shared.size)
                    .filter(|&r| round.posted.get(r).is_some_and(|p| p.is_none()))
                    .collect();
                // Take this rank's call back: the round can no longer complete with it.
                if let Some(slot) = round.posted.get_mut(self.rank) {
                    *slot = None;
                }
                round.gone.get_or_insert(self.rank);
                self.shared.changed.notify_all();
                return Err(fail(format!(
                    "timed out after {:?} waiting for rank(s) {missing:?}",
                    self.shared.timeout
                )));
            }
            round = self
                .shared
                .changed
                .wait_timeout(round, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        match round.result.as_ref() {
            Ok(result) => {
                result.copy_into(data);
                Ok(())
            }
            Err(m) => Err(fail(m.clone())),
        }
    }
    fn start(&self, call: CallInfo, mut data: CommVec) -> Result<Ticket> {
        let ticket = self.tickets.issue();
        let result = self.collective(&call, data.as_buf()).map(|()| data);
        self.tickets.complete(ticket, result);
        Ok(ticket)
    }
    fn finish(&self, ticket: Ticket) -> Result<CommVec> {
        self.tickets
            .wait(ticket)
            .unwrap_or_else(|| Err(unknown_ticket(self.rank, ticket)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(kind: CollectiveKind, key: &str, len: usize) -> CallInfo {
        CallInfo {
            kind,
            key: key.into(),
            dtype: "float32",
            len,
        }
    }

    /// Runs `f(rank)` on every rank of a group of `size`, each on its own thread.
    fn on_ranks<T: Send>(size: usize, f: impl Fn(&LocalRank) -> T + Sync) -> Vec<T> {
        let ranks = LocalGroup::ranks(size, Duration::from_secs(30));
        std::thread::scope(|s| {
            let handles: Vec<_> = ranks
                .iter()
                .map(|r| {
                    let f = &f;
                    s.spawn(move || f(r))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn all_reduce_broadcast_and_gather_give_every_rank_the_same_values() {
        // Rank r holds [r, 10r, 0.1]: the sum over 3 ranks is [0+1+2, 0+10+20, 0.1+0.1+0.1] (the
        // last added in rank order, so every rank has the same bits); the broadcast from rank 2 is
        // [2, 20, 0.1]; the gather of [r] is [0, 1, 2].
        let out = on_ranks(3, |c| {
            let r = c.rank() as f32;
            let mut sum = vec![r, 10.0 * r, 0.1];
            c.collective(
                &call(CollectiveKind::AllReduceSum, "s", 3),
                CommBuf::F32(&mut sum),
            )
            .unwrap();
            let mut b = vec![r, 10.0 * r, 0.1];
            c.collective(
                &call(CollectiveKind::Broadcast { root: 2 }, "b", 3),
                CommBuf::F32(&mut b),
            )
            .unwrap();
            let mut gathered = vec![-1.0; 3];
            gathered[c.rank()] = r;
            c.collective(
                &call(CollectiveKind::AllGather, "g", 3),
                CommBuf::F32(&mut gathered),
            )
            .unwrap();
            (sum, b, gathered)
        });
        for (sum, b, gathered) in out {
            assert_eq!(sum, vec![3.0, 30.0, 0.1f32 + 0.1 + 0.1]);
            assert_eq!(b, vec![2.0, 20.0, 0.1]);
            assert_eq!(gathered, vec![0.0, 1.0, 2.0]);
        }
    }

    #[test]
    fn different_calls_fail_on_every_rank_naming_each() {
        let out = on_ranks(2, |c| {
            let len = 2 + c.rank();
            let mut v = vec![1.0f32; len];
            c.collective(
                &call(CollectiveKind::AllReduceSum, "grad", len),
                CommBuf::F32(&mut v),
            )
            .unwrap_err()
            .to_string()
        });
        for m in out {
            assert!(
                m.contains("rank 0: all-reduce (sum) 'grad' of 2 float32"),
                "{m}"
            );
            assert!(
                m.contains("rank 1: all-reduce (sum) 'grad' of 3 float32"),
                "{m}"
            );
        }
    }

    #[test]
    fn a_rank_that_leaves_fails_the_others_naming_it() {
        let mut ranks = LocalGroup::ranks(2, Duration::from_secs(30));
        let gone = ranks.pop().unwrap();
        let r0 = ranks.pop().unwrap();
        let waiter = std::thread::spawn(move || {
            let mut v = vec![1.0f32];
            r0.collective(
                &call(CollectiveKind::AllReduceSum, "x", 1),
                CommBuf::F32(&mut v),
            )
            .unwrap_err()
            .to_string()
        });
        drop(gone);
        let m = waiter.join().unwrap();
        assert!(m.contains("rank 1 has left the group"), "{m}");
        assert!(m.contains("on rank 0"), "{m}");
    }

    #[test]
    fn a_missing_rank_times_out_naming_it() {
        let ranks = LocalGroup::ranks(3, Duration::from_millis(50));
        let mut v = vec![1.0f32];
        let m = ranks[0]
            .collective(
                &call(CollectiveKind::AllReduceSum, "x", 1),
                CommBuf::F32(&mut v),
            )
            .unwrap_err()
            .to_string();
        assert!(m.contains("waiting for rank(s) [1, 2]"), "{m}");
        // The group is now broken for the others too.
        let m = ranks[1]
            .collective(
                &call(CollectiveKind::AllReduceSum, "x", 1),
                CommBuf::F32(&mut v),
            )
            .unwrap_err()
            .to_string();
        assert!(m.contains("rank 0 has left the group"), "{m}");
    }
}
