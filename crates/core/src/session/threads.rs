//! How many threads a plan's next run uses: all of the session's, or one.
//!
//! A step split across threads waits, at every split, for its slowest part. When another process
//! keeps one of the cores busy, the scheduler takes that core from one of the session's threads for
//! milliseconds at a time, and the other thread waits idle for it: on two cores beside one busy
//! process a two-thread step then runs at a third to a half of its quiet speed, below what one
//! thread alone gets (the busy process and the one thread each keep a core). So each plan measures
//! its runs: it runs on the faster of the two choices, and every so often tries the other for a few
//! runs. Results do not depend on the choice (every kernel computes the same bits on any number of
//! threads), so switching changes only the speed.

/// Runs of a plan before any is measured (the first allocates its buffers and packing workspaces).
const WARM_UP: u64 = 2;
/// The run that starts the first trial of one thread.
const FIRST_TRIAL: u64 = 8;
/// Consecutive runs of a trial; their mean replaces the tried choice's mean.
const TRIAL_RUNS: u64 = 2;
/// Runs before the first trial that follows a switch (a switch that a few slow runs caused is
/// undone soon); each trial that keeps the choice doubles the wait, up to [`LONGEST_PERIOD`].
const SWITCH_PERIOD: u64 = 16;
/// The wait before the first trial's wait doubles: when the first trial keeps all threads, the
/// second comes 128 runs later.
const INITIAL_PERIOD: u64 = 64;
/// The longest wait between trials. On a quiet machine the trials of one thread then cost about
/// 0.3% of the runs' time (two runs of 512 at about twice the time); a machine that quiets down is
/// noticed within that many runs.
const LONGEST_PERIOD: u64 = 512;
/// A choice is dropped for the other when the other's mean cost is below this fraction of its own.
const SWITCH_BELOW: f64 = 0.95;
/// Weight of each new run in the running mean of the choice in use; a run counts as at most twice
/// the mean, so that one run slowed by something else (another process's burst, a page fault)
/// does not move the choice: it takes about five runs at twice the cost.
const WEIGHT: f64 = 0.15;
const MOST_OVER_MEAN: f64 = 2.0;

/// One plan's record: the mean cost of its runs on all threads (`[0]`) and on one (`[1]`), and which
/// it uses now. A run's cost is its time per fed element (per second of time when nothing is fed),
/// so that a plan fed batches of different sizes compares like with like.
#[derive(Clone, Debug)]
pub(super) struct ThreadChoice {
    runs: u64,
    mean: [Option<f64>; 2],
    current: usize,
    period: u64,
    next_trial: u64,
    trial_total: f64,
}

impl Default for ThreadChoice {
    fn default() -> Self {
        ThreadChoice {
            runs: 0,
            mean: [None, None],
            current: 0,
            period: INITIAL_PERIOD,
            next_trial: FIRST_TRIAL,
            trial_total: 0.0,
        }
    }
}

impl ThreadChoice {
    /// Whether the next run belongs to a trial of the choice not in use.
    fn in_trial(&self) -> bool {
        (self.next_trial..self.next_trial + TRIAL_RUNS).contains(&self.runs)
    }

    /// The choice (0: all threads, 1: one) of the next run.
    fn choice(&self) -> usize {
        if self.runs < WARM_UP {
            0
        } else if self.in_trial() {
            1 - self.current
        } else {
            self.current
        }
    }

    /// Threads for the next run, of a session with `max` threads.
    pub(super) fn threads(&self, max: usize) -> usize {
        if max < 2 || self.choice() == 1 {
            1
        } else {
            max
        }
    }

    /// Records a run that [`ThreadChoice::threads`] chose, which took `cost` (seconds per fed
    /// element).
    pub(super) fn record(&mut self, cost: f64) {
        let (run, choice) = (self.runs, self.choice());
        self.runs += 1;
        if run < WARM_UP || !cost.is_finite() {
            return;
        }
        if choice != self.current {
            self.trial_total += cost;
            if run + 1 == self.next_trial + TRIAL_RUNS {
                self.mean[choice] = Some(self.trial_total / TRIAL_RUNS as f64);
                self.trial_total = 0.0;
                self.period = if self.switch_if_faster() {
                    SWITCH_PERIOD
                } else {
                    (self.period * 2).min(LONGEST_PERIOD)
                };
                self.next_trial = self.runs + self.period;
            }
            return;
        }
        let mean = &mut self.mean[choice];
        *mean = Some(match *mean {
            Some(m) => m + WEIGHT * (cost.min(MOST_OVER_MEAN * m) - m),
            None => cost,
        });
        if self.switch_if_faster() {
            self.period = SWITCH_PERIOD;
            self.next_trial = self.runs + self.period;
        }
    }

    /// Switches to the other choice when its mean is clearly below the current one's.
    fn switch_if_faster(&mut self) -> bool {
        let other = 1 - self.current;
        let faster = match (self.mean[self.current], self.mean[other]) {
            (Some(now), Some(alternative)) => alternative < SWITCH_BELOW * now,
            _ => false,
        };
        if faster {
            self.current = other;
        }
        faster
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `n` runs on a machine where a run costs `on_all` on all threads and `on_one` on one;
    /// returns how many ran on one thread.
    fn simulate(c: &mut ThreadChoice, n: usize, on_all: f64, on_one: f64) -> usize {
        let mut one = 0;
        for _ in 0..n {
            let threads = c.threads(2);
            one += usize::from(threads == 1);
            c.record(if threads == 1 { on_one } else { on_all });
        }
        one
    }

    #[test]
    fn a_quiet_machine_keeps_all_threads_and_tries_one_rarely() {
        let mut c = ThreadChoice::default();
        // Two threads twice as fast: a trial of one thread at runs 8-9, each confirming two threads
        // and doubling the wait, then at 138, 396, 910, 1424 and 1938.
        let one = simulate(&mut c, 2000, 1.0, 2.0);
        assert_eq!(c.threads(2), 2);
        assert_eq!(one, 12);
        // With one thread in the session there is nothing to choose.
        assert_eq!(c.threads(1), 1);
    }

    #[test]
    fn a_busy_machine_moves_to_one_thread_and_back_when_it_quiets() {
        let mut c = ThreadChoice::default();
        simulate(&mut c, 100, 1.0, 1.8);
        assert_eq!(c.threads(2), 2);
        // Another process takes a core: two threads now cost 2.6 a run, one thread still 1.8. The
        // running mean of two threads passes 1.8 / 0.95 within eight runs, and the choice moves.
        let one = simulate(&mut c, 20, 2.6, 1.8);
        assert_eq!(c.threads(2), 1);
        assert!(one >= 12, "{one}");
        // The machine stays busy: trials of two threads confirm one thread, and nearly every run
        // runs on it.
        let one = simulate(&mut c, 1000, 2.6, 1.8);
        assert!(one >= 990, "{one}");
        // The machine quiets: the next trial (at most 512 runs on) finds two threads faster.
        simulate(
            &mut c,
            LONGEST_PERIOD as usize + TRIAL_RUNS as usize,
            1.0,
            1.8,
        );
        assert_eq!(c.threads(2), 2);
    }

    #[test]
    fn one_slow_run_does_not_move_the_choice() {
        let mut c = ThreadChoice::default();
        simulate(&mut c, 100, 1.0, 1.5);
        // A run twenty times slower than usual on two threads (a burst of another process) counts
        // as twice the mean, and the mean stays below 1.5 / 0.95.
        c.record(20.0);
        assert_eq!(c.threads(2), 2);
        assert!(c.mean[0].is_some_and(|m| m < 1.2), "{:?}", c.mean);
    }

    #[test]
    fn warm_up_runs_and_unusable_times_are_not_counted() {
        let mut c = ThreadChoice::default();
        // The first runs are slow (allocation) on all threads: not held against them.
        c.record(100.0);
        c.record(100.0);
        assert_eq!(c.mean, [None, None]);
        c.record(f64::NAN);
        assert_eq!(c.mean, [None, None]);
        simulate(&mut c, 20, 1.0, 2.0);
        assert_eq!(c.mean, [Some(1.0), Some(2.0)]);
        assert_eq!(c.threads(2), 2);
    }
}
