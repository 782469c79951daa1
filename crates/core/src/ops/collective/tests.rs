//! The collectives on a group of three (or two) ranks that are threads, each building its own graph
//! and session as a process of a real job would.

use super::{CollectiveOp, Reduction};
use crate::{DType, Graph, LocalGroup, Session, SessionOptions, Tensor, Value};
use std::sync::Arc;
use std::time::Duration;

/// Runs `f(rank, graph)` on every rank of a group of `size`, each on its own thread, and evaluates
/// the tensors it returns in a session over the group.
fn on_ranks(size: usize, f: impl Fn(usize, &Graph) -> Vec<Tensor> + Sync) -> Vec<Vec<Vec<f64>>> {
    let ranks = LocalGroup::ranks(size, Duration::from_secs(60));
    std::thread::scope(|s| {
        let handles: Vec<_> = ranks
            .into_iter()
            .enumerate()
            .map(|(r, comm)| {
                let f = &f;
                s.spawn(move || {
                    let g = Graph::new();
                    let fetches = f(r, &g);
                    let options = SessionOptions {
                        communicator: Some(Arc::new(comm)),
                        ..SessionOptions::with_threads(1)
                    };
                    let sess = Session::with_options(&g, options);
                    let out = sess.run(&fetches, &[], &[]).unwrap();
                    out.iter().map(Value::to_f64_vec).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn vector(g: &Graph, data: &[f64]) -> Tensor {
    g.constant(Value::from_f64(&[data.len()], data.to_vec()).unwrap())
        .unwrap()
}

#[test]
fn all_reduce_sums_and_averages_over_the_ranks() {
    // Rank r holds [r, 1]: over ranks 0, 1, 2 the sum is [3, 3] and the mean [1, 1]. The inputs are
    // constants: the plan must not fold a collective away at compile time.
    let out = on_ranks(3, |r, g| {
        let x = vector(g, &[r as f64, 1.0]);
        vec![
            g.all_reduce(x, Reduction::Sum).unwrap(),
            g.all_reduce(x, Reduction::Mean).unwrap(),
        ]
    });
    for rank in out {
        assert_eq!(rank, vec![vec![3.0, 3.0], vec![1.0, 1.0]]);
    }
}

#[test]
fn the_gradient_of_a_sum_all_reduce_is_the_sum_of_every_ranks_gradient() {
    // Rank r's loss is Σ w_r·y with y = Σ_q x_q: the total loss's gradient by x_r is Σ_q w_q, the
    // same on every rank: [1+3, 2+4] for w_0 = [1, 2], w_1 = [3, 4]. With a mean all-reduce it is
    // half that.
    for (reduction, scale) in [(Reduction::Sum, 1.0), (Reduction::Mean, 0.5)] {
        let out = on_ranks(2, |r, g| {
            let x = vector(g, &[5.0, 6.0]);
            let w = vector(g, &[1.0 + 2.0 * r as f64, 2.0 + 2.0 * r as f64]);
            let y = g.all_reduce(x, reduction).unwrap();
            let loss = g.reduce_sum(g.mul(w, y).unwrap(), None, false).unwrap();
            vec![g.gradients(&[loss], &[x]).unwrap()[0].unwrap()]
        });
        for rank in out {
            assert_eq!(rank, vec![vec![4.0 * scale, 6.0 * scale]]);
        }
    }
}

#[test]
fn broadcast_copies_the_root_and_its_gradient_sums_onto_the_root() {
    // y = x_1 on every rank; with rank r's loss Σ (r+1)·y, the total's gradient is 1+2+3 = 6 on the
    // root (rank 1) and 0 on the others.
    let out = on_ranks(3, |r, g| {
        let x = vector(g, &[10.0 * r as f64, 7.0]);
        let y = g.broadcast(x, 1).unwrap();
        let w = g.scalar(DType::F64, (r + 1) as f64).unwrap();
        let loss = g.reduce_sum(g.mul(w, y).unwrap(), None, false).unwrap();
        vec![y, g.gradients(&[loss], &[x]).unwrap()[0].unwrap()]
    });
    for (r, rank) in out.iter().enumerate() {
        assert_eq!(rank[0], vec![10.0, 7.0]);
        let root_grad = if r == 1 { 6.0 } else { 0.0 };
        assert_eq!(rank[1], vec![root_grad, root_grad]);
    }
}

#[test]
fn all_gather_concatenates_in_rank_order_and_its_gradient_scatters_the_sum() {
    // x_r = [[r, -r]]; gathered: [[0, 0], [1, -1], [2, -2]] on every rank, static shape [?, 2].
    // With rank r's loss Σ (r+1)·y, each x_q's gradient is Σ_r (r+1) = 6 in every element.
    let out = on_ranks(3, |r, g| {
        let v = r as f64;
        let x = g
            .constant(Value::from_f64(&[1, 2], vec![v, -v]).unwrap())
            .unwrap();
        let y = g.all_gather(x).unwrap();
        assert_eq!(g.info(y).unwrap().shape.dims(), Some(&[None, Some(2)][..]));
        let w = g.scalar(DType::F64, (r + 1) as f64).unwrap();
        let loss = g.reduce_sum(g.mul(w, y).unwrap(), None, false).unwrap();
        vec![y, g.gradients(&[loss], &[x]).unwrap()[0].unwrap()]
    });
    for rank in out {
        assert_eq!(rank[0], vec![0.0, 0.0, 1.0, -1.0, 2.0, -2.0]);
        assert_eq!(rank[1], vec![6.0, 6.0]);
    }
}

#[test]
fn a_collective_without_a_communicator_names_what_it_needs() {
    let g = Graph::new();
    let y = g.all_reduce(vector(&g, &[1.0]), Reduction::Sum).unwrap();
    let e = Session::new(&g).run_one(y, &[]).unwrap_err().to_string();
    assert!(e.contains("HorovodAllreduce"), "{e}");
    assert!(e.contains("SessionOptions::communicator"), "{e}");
}

#[test]
fn shape_rules_refuse_bool_int_means_and_gathering_scalars() {
    let g = Graph::new();
    let b = g.constant(Value::from(true)).unwrap();
    assert!(g
        .all_reduce(b, Reduction::Sum)
        .unwrap_err()
        .to_string()
        .contains("bool"));
    let i = g.scalar(DType::I64, 1.0).unwrap();
    assert!(g
        .all_reduce(i, Reduction::Mean)
        .unwrap_err()
        .to_string()
        .contains("int64"));
    assert!(g.all_reduce(i, Reduction::Sum).is_ok());
    let f = g.scalar(DType::F32, 1.0).unwrap();
    let e = g
        .collective(f, CollectiveOp::AllGather)
        .unwrap_err()
        .to_string();
    assert!(e.contains("scalar"), "{e}");
}

/// A one-rank communicator that records the keys of the collectives it starts and finishes.
#[derive(Debug, Default)]
struct Recorder {
    log: std::sync::Mutex<Vec<String>>,
    tickets: ferroflow_cpu::comm::Tickets,
}

impl ferroflow_cpu::Communicator for Recorder {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn collective(
        &self,
        call: &ferroflow_cpu::CallInfo,
        _data: ferroflow_cpu::CommBuf<'_>,
    ) -> ferroflow_cpu::Result<()> {
        self.log.lock().unwrap().push(format!("run {}", call.key));
        Ok(())
    }
    fn start(
        &self,
        call: ferroflow_cpu::CallInfo,
        data: ferroflow_cpu::CommVec,
    ) -> ferroflow_cpu::Result<ferroflow_cpu::Ticket> {
        self.log.lock().unwrap().push(format!("start {}", call.key));
        let t = self.tickets.issue();
        self.tickets.complete(t, Ok(data));
        Ok(t)
    }
    fn finish(
        &self,
        ticket: ferroflow_cpu::Ticket,
    ) -> ferroflow_cpu::Result<ferroflow_cpu::CommVec> {
        self.log.lock().unwrap().push(format!("finish {ticket}"));
        self.tickets.wait(ticket).unwrap()
    }
}

#[test]
fn overlapped_all_reduces_start_early_finish_late_and_reduce() {
    // a = mean-reduce(x) starts at once; b = (x·2 + 1)·3 is computed meanwhile and its reduction
    // started too; only then are both waited for. On one rank the mean is the value itself.
    let g = Graph::new();
    let x = g
        .named("x")
        .constant(Value::from_f64(&[2], vec![1.0, 2.0]).unwrap())
        .unwrap();
    let a = g.all_reduce_overlapped(x, Reduction::Mean).unwrap();
    let two = g.scalar(DType::F64, 2.0).unwrap();
    let one = g.scalar(DType::F64, 1.0).unwrap();
    let three = g.scalar(DType::F64, 3.0).unwrap();
    let inner = g.add(g.mul(x, two).unwrap(), one).unwrap();
    let b = g.named("b").mul(inner, three).unwrap();
    let rb = g.all_reduce_overlapped(b, Reduction::Sum).unwrap();
    let total = g.add(a, rb).unwrap();
    let recorder = Arc::new(Recorder::default());
    let options = SessionOptions {
        communicator: Some(recorder.clone()),
        optimize: false,
        ..SessionOptions::with_threads(1)
    };
    let out = Session::with_options(&g, options)
        .run_one(total, &[])
        .unwrap();
    assert_eq!(out.to_f64_vec(), vec![1.0 + 9.0, 2.0 + 15.0]);
    assert_eq!(
        *recorder.log.lock().unwrap(),
        ["start x:0", "start b:0", "finish 0", "finish 1"]
    );
}

#[test]
fn batch_norm_over_global_moments_differentiates_as_one_process_over_the_whole_batch() {
    // Two ranks hold rows 0..2 and 2..4 of x (4×2); each normalizes by the global moments and
    // weights its output by its rows of w. The gradient by each rank's x equals those rows of one
    // process's gradient of Σ w·batch_normalization(x) over all 4 rows, through the fused total
    // derivative (no separate mean and variance gradients).
    let x = [1.0, 10.0, 3.0, 20.0, 5.0, 60.0, 2.0, -4.0];
    let w = [1.0, -2.0, 0.5, 3.0, 2.0, 1.0, -1.0, 0.25];
    let whole = {
        let g = Graph::new();
        let xs = g
            .constant(Value::from_f64(&[4, 2], x.to_vec()).unwrap())
            .unwrap();
        let ws = g
            .constant(Value::from_f64(&[4, 2], w.to_vec()).unwrap())
            .unwrap();
        let (mean, var) = g.moments(xs, &[0], false).unwrap();
        let y = g
            .batch_normalization(xs, mean, var, None, None, 1e-3)
            .unwrap();
        let loss = g.reduce_sum(g.mul(ws, y).unwrap(), None, false).unwrap();
        let dx = g.gradients(&[loss], &[xs]).unwrap()[0].unwrap();
        Session::new(&g).run_one(dx, &[]).unwrap().to_f64_vec()
    };
    let out = on_ranks(2, |r, g| {
        let part = |v: &[f64]| Value::from_f64(&[2, 2], v[4 * r..4 * r + 4].to_vec()).unwrap();
        let xs = g.constant(part(&x)).unwrap();
        let ws = g.constant(part(&w)).unwrap();
        let (mean, var) = g.global_moments(xs).unwrap();
        let y = g
            .batch_normalization(xs, mean, var, None, None, 1e-3)
            .unwrap();
        let loss = g.reduce_sum(g.mul(ws, y).unwrap(), None, false).unwrap();
        let dx = g.gradients(&[loss], &[xs]).unwrap()[0].unwrap();
        let types: Vec<String> = g.operations().iter().map(|&o| g.op_type(o)).collect();
        assert!(types.contains(&"BatchNormGradInput".to_string()));
        // The offset's and scale's gradients only: none for the mean and the variance.
        let params = types.iter().filter(|t| *t == "BatchNormParamGrad").count();
        assert_eq!(params, 2, "{types:?}");
        vec![dx]
    });
    for (r, rank) in out.iter().enumerate() {
        for (got, want) in rank[0].iter().zip(&whole[4 * r..4 * r + 4]) {
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "rank {r}: {got} against {want}"
            );
        }
    }
}
