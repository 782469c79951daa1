//! The benchmark models trained as the ranks of a data-parallel job: each rank on its shard of one
//! global batch per step. Written against the `Communicator` trait, so that the same code runs
//! over MPI (`ferroflow bench --mpi`, the MPI tests) and over a `LocalGroup` of threads.

use crate::bench::{build_with, Distribution};
use crate::Result;
use ferroflow::cpu::comm::{CallInfo, CollectiveKind, CommBuf};
use ferroflow::cpu::Communicator;
use ferroflow::nn::broadcast_global_variables;
use ferroflow::prelude::*;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Instant;

/// One rank's part of the job: its communicator and how the model is distributed.
#[derive(Clone, Debug)]
pub struct Rank {
    pub comm: Arc<dyn Communicator>,
    pub distribution: Distribution,
}

/// The global batch of step `step` (seeded by it): `batch` images of 784 values and their labels.
pub fn global_batch(batch: usize, step: u64) -> (Vec<f32>, Vec<i64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(step);
    let xs = (0..batch * 784).map(|_| rng.gen::<f32>()).collect();
    let ys = (0..batch).map(|_| rng.gen_range(0..10)).collect();
    (xs, ys)
}

/// Rank `rank`'s shard of a global batch of `batch`: rows `rank·b/size .. (rank+1)·b/size`.
pub fn shard_feeds(
    m: &crate::bench::BenchModel,
    (xs, ys): &(Vec<f32>, Vec<i64>),
    rank: usize,
    size: usize,
) -> Result<[(Tensor, Value); 2]> {
    let batch = ys.len();
    let (lo, hi) = (rank * batch / size, (rank + 1) * batch / size);
    let x = xs.get(lo * 784..hi * 784).unwrap_or_default().to_vec();
    let y = ys.get(lo..hi).unwrap_or_default().to_vec();
    let x = Value::from_f32(&[hi - lo, 784], x)?;
    let dtype = m.graph.dtype(m.x)?;
    Ok([
        feed(
            m.x,
            if dtype == DType::F32 {
                x
            } else {
                x.cast(dtype)
            },
        ),
        feed(m.y, Value::from_i64(&[hi - lo], y)?),
    ])
}

/// The initial values of `model`'s variables as one process builds it, by name. A distributed
/// graph has more nodes (synchronized batch norm's all-reduces among the layers), and an
/// initializer's seed depends on its place in the graph, as in TF: starting every variant from these
/// values makes their runs comparable.
fn initial_values(model: &str, dtype: DType) -> Result<Vec<(String, Value)>> {
    let m = build_with(model, None, dtype)?;
    let sess = Session::with_options(&m.graph, SessionOptions::with_threads(1));
    sess.run_targets(&[m.graph.global_variables_initializer()?], &[])?;
    let vars: Vec<Variable> = m.graph.get_collection(keys::GLOBAL_VARIABLES, None)?;
    vars.iter()
        .map(|v| Ok((v.op_name(&m.graph), sess.variable_value(*v)?)))
        .collect()
}

/// The model, its session (over `rank`'s communicator when given) and the variables initialized
/// (to [`initial_values`]), then set to rank 0's values.
fn start(
    model: &str,
    dtype: DType,
    threads: usize,
    rank: Option<&Rank>,
) -> Result<(crate::bench::BenchModel, Session)> {
    let m = build_with(model, rank.map(|r| &r.distribution), dtype)?;
    let broadcast = match rank {
        Some(_) => Some(broadcast_global_variables(&m.graph, 0)?),
        None => None,
    };
    let options = SessionOptions {
        communicator: rank.map(|r| r.comm.clone()),
        ..SessionOptions::with_threads(threads)
    };
    let sess = Session::with_options(&m.graph, options);
    sess.run_targets(&[m.graph.global_variables_initializer()?], &[])?;
    let initial: std::collections::HashMap<String, Value> =
        initial_values(model, dtype)?.into_iter().collect();
    for v in m
        .graph
        .get_collection::<Variable>(keys::GLOBAL_VARIABLES, None)?
    {
        if let Some(value) = initial.get(&v.op_name(&m.graph)) {
            sess.set_variable_value(v, value.clone())?;
        }
    }
    if let Some(b) = broadcast {
        sess.run_targets(&[b], &[])?;
    }
    Ok((m, sess))
}

/// Trains `model` built in `dtype` one step per global batch of `batches` (images of 784 values
/// and their labels), as `rank` on its shard of each, or on the whole batch without one; returns
/// every global variable's name and values after the last step.
pub fn train(
    model: &str,
    dtype: DType,
    batches: &[(Vec<f32>, Vec<i64>)],
    threads: usize,
    rank: Option<&Rank>,
) -> Result<Vec<(String, Vec<f64>)>> {
    let (m, sess) = start(model, dtype, threads, rank)?;
    let (r, size) = rank.map_or((0, 1), |r| (r.comm.rank(), r.comm.size()));
    for batch in batches {
        let feeds = shard_feeds(&m, batch, r, size)?;
        sess.run_targets(&[m.train], &feeds)?;
    }
    let vars: Vec<Variable> = m.graph.get_collection(keys::GLOBAL_VARIABLES, None)?;
    vars.iter()
        .map(|v| Ok((v.op_name(&m.graph), sess.variable_value(*v)?.to_f64_vec())))
        .collect()
}

/// One rank's speed in [`run_ranks`].
#[derive(Clone, Debug, PartialEq)]
pub struct RankSpeed {
    pub steps_per_s: f64,
    /// The share of the step spent in collectives (waiting for the other ranks and moving data).
    pub communication: f64,
}

/// Trains `model` at the global batch `batch` on every rank for 20 warm-up steps and then about
/// `seconds` of counted steps (rank 0 chooses the count from its warm-up and broadcasts it, so every
/// rank makes the same calls); `time_in_collectives` reads the seconds this rank's communicator has
/// spent in collectives. Returns every rank's speed, in rank order.
pub fn run_ranks(
    model: &str,
    batch: usize,
    threads: usize,
    seconds: f64,
    rank: &Rank,
    time_in_collectives: &dyn Fn() -> f64,
) -> Result<Vec<RankSpeed>> {
    let (m, sess) = start(model, DType::F32, threads, Some(rank))?;
    let (r, size) = (rank.comm.rank(), rank.comm.size());
    let feeds = shard_feeds(&m, &global_batch(batch, 0), r, size)?;
    let warm = Instant::now();
    for _ in 0..20 {
        sess.run_targets(&[m.train], &feeds)?;
    }
    let per_step = warm.elapsed().as_secs_f64() / 20.0;
    let mut count = [((seconds / per_step).ceil() as i64).max(1)];
    collective(
        rank,
        CollectiveKind::Broadcast { root: 0 },
        "bench/steps",
        CommBuf::I64(&mut count),
    )?;
    let steps = count[0];
    let in_collectives = time_in_collectives();
    let t0 = Instant::now();
    for _ in 0..steps {
        sess.run_targets(&[m.train], &feeds)?;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let waited = time_in_collectives() - in_collectives;
    let mut speeds = vec![0.0f64; 2 * size];
    if let Some(mine) = speeds.get_mut(2 * r..2 * r + 2) {
        mine.copy_from_slice(&[steps as f64 / elapsed, waited / elapsed]);
    }
    collective(
        rank,
        CollectiveKind::AllGather,
        "bench/speeds",
        CommBuf::F64(&mut speeds),
    )?;
    Ok(speeds
        .chunks_exact(2)
        .map(|c| RankSpeed {
            steps_per_s: c.first().copied().unwrap_or(0.0),
            communication: c.get(1).copied().unwrap_or(0.0),
        })
        .collect())
}

/// A collective outside the graph, on `rank`'s communicator.
fn collective(rank: &Rank, kind: CollectiveKind, key: &str, data: CommBuf<'_>) -> Result<()> {
    let call = CallInfo {
        kind,
        key: key.into(),
        dtype: data.dtype_name(),
        len: data.len(),
    };
    rank.comm
        .collective(&call, data)
        .map_err(|e| ferroflow::Error::from(e).into())
}
