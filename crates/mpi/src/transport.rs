//! The collectives over MPI, as the communication thread runs them: a non-blocking barrier polled
//! until every rank has arrived or the timeout has passed, an all-gather of each rank's
//! description of its call, then the call.

use ferroflow_cpu::comm::{collective_error, mismatch, CallInfo, CollectiveKind, CommBuf, CommVec};
use ferroflow_cpu::Result;
use mpi::collective::SystemOperation;
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Equivalence, Root};
use std::time::{Duration, Instant};

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
    [
        kind,
        root,
        dtype,
        call.len as u64,
        key_hash(&call.key),
        k0,
        k1,
        k2,
    ]
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

/// What runs the collectives: the communication thread's state.
#[derive(Debug)]
pub(crate) struct Transport {
    pub(crate) rank: usize,
    pub(crate) size: usize,
    pub(crate) timeout: Duration,
    /// Spare storage kept between calls: the receive side of the reductions (MPI's all-reduce does
    /// not work in place through rsmpi), the send side of the all-gathers.
    f32: Vec<f32>,
    f64: Vec<f64>,
    i64: Vec<i64>,
}

impl Transport {
    pub(crate) fn new(rank: usize, size: usize, timeout: Duration) -> Self {
        Transport {
            rank,
            size,
            timeout,
            f32: Vec::new(),
            f64: Vec::new(),
            i64: Vec::new(),
        }
    }

    /// Waits, up to the timeout, until every rank has reached this call.
    fn arrive(&self, world: &SimpleCommunicator, call: &CallInfo) -> Result<()> {
        let mut request = world.immediate_barrier();
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_micros(10);
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
                        self.timeout
                    ),
                ));
            }
            // Back off from 10 µs to 1 ms between polls: a rank that arrives early (its
            // communication started while the backward pass goes on) leaves the cores to the
            // session's threads.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
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

/// An all-reduce (sum) of `data`: `data` is sent as it is, the sum is received into `spare`, and the
/// two swap, so the data is never copied and `spare` keeps the old storage for the next call.
fn sum_swapped<T: Equivalence + Copy + Default>(
    world: &SimpleCommunicator,
    spare: &mut Vec<T>,
    data: &mut Vec<T>,
) {
    spare.resize(data.len(), T::default());
    world.all_reduce_into(&data[..], &mut spare[..], SystemOperation::sum());
    std::mem::swap(spare, data);
}

/// The all-gather of segment `rank` of `data` into all of `data`, through `send` (MPI's all-gather
/// does not work in place through rsmpi).
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

impl Transport {
    /// Runs the collective `call` describes over `data`, which then holds the result: the barrier
    /// (with the timeout), the check that every rank makes the same call, then the call.
    pub(crate) fn run(&mut self, call: &CallInfo, data: &mut CommVec) -> Result<()> {
        if mpi::environment::is_finalized() {
            return Err(collective_error(self.rank, call, "MPI has been finalized"));
        }
        let len = data.as_buf().len();
        if i32::try_from(len).is_err() {
            return Err(collective_error(
                self.rank,
                call,
                "MPI counts elements in 32 bits: split the tensor",
            ));
        }
        if call.kind == CollectiveKind::AllGather && !len.is_multiple_of(self.size) {
            return Err(collective_error(
                self.rank,
                call,
                format!("{} elements are not {} equal segments", len, self.size),
            ));
        }
        let world = SimpleCommunicator::world();
        self.arrive(&world, call)?;
        self.agree(&world, call)?;
        let (rank, size) = (self.rank, self.size);
        match (call.kind, data) {
            (CollectiveKind::AllReduceSum, CommVec::F32(d)) => {
                sum_swapped(&world, &mut self.f32, d)
            }
            (CollectiveKind::AllReduceSum, CommVec::F64(d)) => {
                sum_swapped(&world, &mut self.f64, d)
            }
            (CollectiveKind::AllReduceSum, CommVec::I64(d)) => {
                sum_swapped(&world, &mut self.i64, d)
            }
            (CollectiveKind::Broadcast { root }, data) => {
                let root = world.process_at_rank(i32::try_from(root).unwrap_or(i32::MAX));
                match data.as_buf() {
                    CommBuf::F32(d) => root.broadcast_into(d),
                    CommBuf::F64(d) => root.broadcast_into(d),
                    CommBuf::I64(d) => root.broadcast_into(d),
                }
            }
            (CollectiveKind::AllGather, CommVec::F32(d)) => {
                gather_in_place(&world, &mut self.f32, d, rank, size)
            }
            (CollectiveKind::AllGather, CommVec::F64(d)) => {
                gather_in_place(&world, &mut self.f64, d, rank, size)
            }
            (CollectiveKind::AllGather, CommVec::I64(d)) => {
                gather_in_place(&world, &mut self.i64, d, rank, size)
            }
        }
        Ok(())
    }
}
