//! ferroflow-mpi: data-parallel training over MPI (Horovod's model). [`init`] starts MPI and gives
//! this process's place in the job ([`Mpi::rank`], [`Mpi::size`], [`Mpi::local_rank`]) and the
//! [`MpiCommunicator`] that a session's collective ops run over
//! (`SessionOptions::communicator`).
//!
//! Each collective is three MPI calls: a non-blocking barrier that this rank polls until every
//! rank has arrived or the timeout has passed (a rank that died, or one that stopped calling, ends
//! the wait with an error naming the ranks), an all-gather of each rank's description of its call
//! (ranks that disagree fail with an error listing every rank's call), and the collective itself.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use ferroflow_cpu::comm::{collective_error, mismatch, CallInfo, CollectiveKind, CommBuf};
use ferroflow_cpu::{Communicator, Error, Result};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Equivalence, Root};
use mpi::Threading;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How this process takes part in the job.
#[derive(Clone, Debug)]
pub struct MpiOptions {
    /// How long a collective waits for the other ranks before it fails (a rank that died or
    /// stopped calling collectives); Horovod's stall time. 60 s by default.
    pub timeout: Duration,
}

impl Default for MpiOptions {
    fn default() -> Self {
        MpiOptions {
            timeout: Duration::from_secs(60),
        }
    }
}

/// MPI, started by [`init`]; dropping it ends MPI (`MPI_Finalize`), after which the communicators
/// it made refuse every call.
pub struct Mpi {
    _universe: Universe,
    rank: usize,
    size: usize,
    local_rank: usize,
    local_size: usize,
}

/// `hvd.init()`: starts MPI (threads may call it one at a time). Fails when MPI was started
/// before, or gives less thread support than that.
pub fn init() -> Result<Mpi> {
    let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
        .ok_or_else(|| mpi_error(0, "MPI is already initialized"))?;
    if threading < Threading::Serialized {
        return Err(mpi_error(
            0,
            format!("the MPI library gives thread support {threading:?}, and ferroflow needs Serialized"),
        ));
    }
    let world = universe.world();
    let node = world.split_shared(0);
    Ok(Mpi {
        rank: index(world.rank()),
        size: index(world.size()),
        local_rank: index(node.rank()),
        local_size: index(node.size()),
        _universe: universe,
    })
}

fn index(r: i32) -> usize {
    usize::try_from(r).unwrap_or(0)
}

fn mpi_error(rank: usize, message: impl Into<String>) -> Error {
    Error::Collective {
        rank,
        message: message.into(),
    }
}

impl Mpi {
    /// `hvd.rank()`: this process's rank in the job, `0..size()`.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// `hvd.size()`: the number of processes in the job.
    pub fn size(&self) -> usize {
        self.size
    }
    /// `hvd.local_rank()`: this process's rank among those on its host.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }
    /// `hvd.local_size()`: the number of processes on this host.
    pub fn local_size(&self) -> usize {
        self.local_size
    }
    /// Whether this is rank 0, the one that writes checkpoints and summaries.
    pub fn is_chief(&self) -> bool {
        self.rank == 0
    }
    /// The communicator over every rank of the job, for `SessionOptions::communicator`.
    pub fn communicator(&self, options: MpiOptions) -> Arc<MpiCommunicator> {
        Arc::new(MpiCommunicator {
            rank: self.rank,
            size: self.size,
            options,
            scratch: Mutex::new(Scratch::default()),
            waited_ns: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        })
    }
}

/// The send buffers of the reductions (MPI's all-reduce does not work in place through rsmpi),
/// kept between calls.
#[derive(Debug, Default)]
struct Scratch {
    f32: Vec<f32>,
    f64: Vec<f64>,
    i64: Vec<i64>,
}

/// The ranks of an MPI job (`MPI_COMM_WORLD`) as a [`Communicator`]. One call at a time (a lock
/// serializes them, as MPI's Serialized thread level asks).
#[derive(Debug)]
pub struct MpiCommunicator {
    rank: usize,
    size: usize,
    options: MpiOptions,
    scratch: Mutex<Scratch>,
    waited_ns: AtomicU64,
    calls: AtomicU64,
}

/// A call's description as each rank sends it: kind, root, dtype, length, a hash of the key and
/// the key's first 24 bytes.
type Description = [u64; 8];

/// FNV-1a: the same on every rank, for keys longer than a description holds.
fn key_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn describe(call: &CallInfo) -> Description {
    let (kind, root) = match call.kind {
        CollectiveKind::AllReduceSum => (1, 0),
        CollectiveKind::Broadcast { root } => (2, root as u64),
        CollectiveKind::AllGather => (3, 0),
    };
    let dtype = match call.dtype {
        "float32" => 1,
        "float64" => 2,
        _ => 3,
    };
    let mut key = [0u64; 3];
    for (word, chunk) in key.iter_mut().zip(call.key.as_bytes().chunks(8)) {
        let mut bytes = [0u8; 8];
        bytes.iter_mut().zip(chunk).for_each(|(b, c)| *b = *c);
        *word = u64::from_le_bytes(bytes);
    }
    let [k0, k1, k2] = key;
    [kind, root, dtype, call.len as u64, key_hash(&call.key), k0, k1, k2]
}

/// What a description says, for an error message (the key cut to 24 bytes).
fn undescribe(d: &Description) -> CallInfo {
    let [kind, root, dtype, len, _, k0, k1, k2] = *d;
    let key: Vec<u8> = [k0, k1, k2]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .take_while(|&b| b != 0)
        .collect();
    CallInfo {
        kind: match kind {
            1 => CollectiveKind::AllReduceSum,
            2 => CollectiveKind::Broadcast {
                root: root as usize,
            },
            _ => CollectiveKind::AllGather,
        },
        key: String::from_utf8_lossy(&key).into_owned(),
        dtype: match dtype {
            1 => "float32",
            2 => "float64",
            _ => "int64",
        },
        len: len as usize,
    }
}

impl MpiCommunicator {
    /// Seconds this rank has spent in collectives (waiting for the others and moving data), and
    /// how many it has made.
    pub fn time_in_collectives(&self) -> (f64, u64) {
        (
            self.waited_ns.load(Ordering::Relaxed) as f64 * 1e-9,
            self.calls.load(Ordering::Relaxed),
        )
    }

    /// Waits, up to the timeout, until every rank has reached this call.
    fn arrive(&self, world: &SimpleCommunicator, call: &CallInfo) -> Result<()> {
        let mut request = world.immediate_barrier();
        let deadline = Instant::now() + self.options.timeout;
        loop {
            match request.test() {
                Ok(_) => return Ok(()),
                Err(pending) => request = pending,
            }
            if Instant::now() >= deadline {
                // The barrier holds no buffer: forgetting it is safe, and MPI can no longer complete
                // it anyway.
                std::mem::forget(request);
                return Err(collective_error(
                    self.rank,
                    call,
                    format!(
                        "timed out after {:?} waiting for the other ranks (one has died, or stopped \
                         calling collectives)",
                        self.options.timeout
                    ),
                ));
            }
            std::thread::yield_now();
        }
    }

    /// Fails on every rank when the ranks' calls differ.
    fn agree(&self, world: &SimpleCommunicator, call: &CallInfo) -> Result<()> {
        let mine = describe(call);
        let mut all = vec![0u64; 8 * self.size];
        world.all_gather_into(&mine[..], &mut all[..]);
        let each: Vec<Description> = all
            .chunks_exact(8)
            .map(|c| {
                let mut d = [0u64; 8];
                d.iter_mut().zip(c).for_each(|(a, b)| *a = *b);
                d
            })
            .collect();
        if each.iter().all(|d| *d == mine) {
            return Ok(());
        }
        let calls: Vec<CallInfo> = each.iter().map(undescribe).collect();
        let message = mismatch(&calls).unwrap_or_else(|| {
            "the ranks called collectives whose keys differ past their first 24 bytes".into()
        });
        Err(collective_error(self.rank, call, message))
    }
}

/// An all-reduce (sum) of `data` in place, through `send`.
fn sum_in_place<T: Equivalence + Copy>(world: &SimpleCommunicator, send: &mut Vec<T>, data: &mut [T]) {
    send.clear();
    send.extend_from_slice(data);
    world.all_reduce_into(&send[..], data, SystemOperation::sum());
}

/// The all-gather of segment `rank` of `data` into all of `data`, through `send`.
fn gather_in_place<T: Equivalence + Copy>(
    world: &SimpleCommunicator,
    send: &mut Vec<T>,
    data: &mut [T],
    rank: usize,
    size: usize,
) {
    let n = data.len() / size.max(1);
    send.clear();
    send.extend(data.iter().skip(rank * n).take(n));
    world.all_gather_into(&send[..], data);
}

impl Communicator for MpiCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn collective(&self, call: &CallInfo, data: CommBuf<'_>) -> Result<()> {
        if mpi::environment::is_finalized() {
            return Err(collective_error(self.rank, call, "MPI has been finalized"));
        }
        if i32::try_from(data.len()).is_err() {
            return Err(collective_error(
                self.rank,
                call,
                "MPI counts elements in 32 bits: split the tensor",
            ));
        }
        if call.kind == CollectiveKind::AllGather && !data.len().is_multiple_of(self.size) {
            return Err(collective_error(
                self.rank,
                call,
                format!("{} elements are not {} equal segments", data.len(), self.size),
            ));
        }
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let world = SimpleCommunicator::world();
        self.arrive(&world, call)?;
        self.agree(&world, call)?;
        let (rank, size) = (self.rank, self.size);
        let scratch = &mut *scratch;
        match (call.kind, data) {
            (CollectiveKind::AllReduceSum, CommBuf::F32(d)) => sum_in_place(&world, &mut scratch.f32, d),
            (CollectiveKind::AllReduceSum, CommBuf::F64(d)) => sum_in_place(&world, &mut scratch.f64, d),
            (CollectiveKind::AllReduceSum, CommBuf::I64(d)) => sum_in_place(&world, &mut scratch.i64, d),
            (CollectiveKind::Broadcast { root }, data) => {
                let root = world.process_at_rank(i32::try_from(root).unwrap_or(i32::MAX));
                match data {
                    CommBuf::F32(d) => root.broadcast_into(d),
                    CommBuf::F64(d) => root.broadcast_into(d),
                    CommBuf::I64(d) => root.broadcast_into(d),
                }
            }
            (CollectiveKind::AllGather, CommBuf::F32(d)) => gather_in_place(&world, &mut scratch.f32, d, rank, size),
            (CollectiveKind::AllGather, CommBuf::F64(d)) => gather_in_place(&world, &mut scratch.f64, d, rank, size),
            (CollectiveKind::AllGather, CommBuf::I64(d)) => gather_in_place(&world, &mut scratch.i64, d, rank, size),
        }
        self.waited_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
