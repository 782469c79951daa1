//! ferroflow-mpi: data-parallel training over MPI (Horovod's model). [`init`] starts MPI and gives
//! this process's place in the job ([`Mpi::rank`], [`Mpi::size`], [`Mpi::local_rank`]) and the
//! [`MpiCommunicator`] that a session's collective ops run over
//! (`SessionOptions::communicator`).
//!
//! The collectives run on a communication thread (`transport.rs`), so that one started by a
//! session proceeds while the session computes. Each is three MPI calls: a non-blocking barrier
//! polled until every rank has arrived or the timeout has passed (a rank that died, or one that
//! stopped calling, ends the wait with an error), an all-gather of each rank's description of its
//! call (ranks that disagree fail with an error listing every rank's call), and the collective
//! itself.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod transport;

use ferroflow_cpu::comm::{
    collective_error, unknown_ticket, CallInfo, CommBuf, CommVec, Ticket, Tickets,
};
use ferroflow_cpu::{Communicator, Error, Result};
use mpi::environment::Universe;
use mpi::topology::Communicator as _;
use mpi::Threading;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use transport::Transport;

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
    /// The communicator over every rank of the job, for `SessionOptions::communicator`, with its
    /// communication thread (which makes every MPI call of it from then on).
    pub fn communicator(&self, options: MpiOptions) -> Result<Arc<MpiCommunicator>> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let tickets = Arc::new(Tickets::default());
        let done = tickets.clone();
        let mut transport = Transport::new(self.rank, self.size, options.timeout);
        let rank = self.rank;
        let thread = std::thread::Builder::new()
            .name(format!("ferroflow-mpi-{}", self.rank))
            .spawn(move || {
                for job in queue {
                    let Job {
                        ticket,
                        call,
                        mut data,
                    } = job;
                    // A panic in the bindings must not leave the session waiting for a result that
                    // never comes: it becomes this call's error.
                    let run = std::panic::AssertUnwindSafe(|| transport.run(&call, &mut data));
                    let result = match std::panic::catch_unwind(run) {
                        Ok(r) => r.map(|()| data),
                        Err(_) => Err(collective_error(rank, &call, "the MPI bindings panicked")),
                    };
                    done.complete(ticket, result);
                }
            })
            .map_err(|e| {
                mpi_error(
                    self.rank,
                    format!("cannot start the communication thread: {e}"),
                )
            })?;
        Ok(Arc::new(MpiCommunicator {
            rank: self.rank,
            size: self.size,
            jobs: Mutex::new(Some(jobs)),
            thread: Mutex::new(Some(thread)),
            tickets,
            waited_ns: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        }))
    }
}

/// A collective for the communication thread.
struct Job {
    ticket: Ticket,
    call: CallInfo,
    data: CommVec,
}

/// The ranks of an MPI job (`MPI_COMM_WORLD`) as a [`Communicator`]. Its collectives run on a
/// communication thread, in the order they were started: [`Communicator::start`] returns at once,
/// so a session's all-reduce of one layer's gradients proceeds while the backward pass computes the
/// next layer's, and [`Communicator::finish`] waits for it.
#[derive(Debug)]
pub struct MpiCommunicator {
    rank: usize,
    size: usize,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    tickets: Arc<Tickets>,
    waited_ns: AtomicU64,
    calls: AtomicU64,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Job({}, {})", self.ticket, self.call)
    }
}

impl MpiCommunicator {
    /// Seconds the calling threads have spent waiting for collectives to finish, and how many
    /// collectives they have made.
    pub fn time_in_collectives(&self) -> (f64, u64) {
        (
            self.waited_ns.load(Ordering::Relaxed) as f64 * 1e-9,
            self.calls.load(Ordering::Relaxed),
        )
    }
}

impl Communicator for MpiCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn collective(&self, call: &CallInfo, data: CommBuf<'_>) -> Result<()> {
        let ticket = self.start(call.clone(), CommVec::of(&data))?;
        self.finish(ticket)?.copy_into(data);
        Ok(())
    }
    fn start(&self, call: CallInfo, data: CommVec) -> Result<Ticket> {
        if mpi::environment::is_finalized() {
            return Err(collective_error(self.rank, &call, "MPI has been finalized"));
        }
        let ticket = self.tickets.issue();
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let sent = jobs.as_ref().map(|j| {
            j.send(Job {
                ticket,
                call: call.clone(),
                data,
            })
        });
        match sent {
            Some(Ok(())) => {
                self.calls.fetch_add(1, Ordering::Relaxed);
                Ok(ticket)
            }
            _ => Err(collective_error(
                self.rank,
                &call,
                "the communication thread has stopped",
            )),
        }
    }
    fn finish(&self, ticket: Ticket) -> Result<CommVec> {
        let started = Instant::now();
        let result = self
            .tickets
            .wait(ticket)
            .unwrap_or_else(|| Err(unknown_ticket(self.rank, ticket)));
        self.waited_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result
    }
}

impl Drop for MpiCommunicator {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has run what was started.
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}
