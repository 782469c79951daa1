//! The storage of dead tensors, kept for the kernels that fill the same slots on the next run (TF's
//! allocator keeps freed chunks the same way): vectors by element type and capacity. A kernel takes
//! its output storage through [`crate::Context::try_vec`], which hands out the smallest stored
//! vector that fits; the session puts back each value whose last reader has run. After warm-up a
//! training step finds every buffer it needs here and allocates nothing, and the pool holds no more
//! than the step's peak.

use std::any::Any;
use std::collections::BTreeMap;

/// Stored vectors of the pooled element types (`f32`, `f64`, `i64`, `bool`).
#[derive(Debug, Default)]
pub struct VecPool {
    f32: List<f32>,
    f64: List<f64>,
    i64: List<i64>,
    bool: List<bool>,
    /// Runs ended so far: each stored vector remembers the run it came back in, and a vector no
    /// kernel took within two more runs is freed, so storage of values that no kernel asks for again
    /// (made by a kernel that allocates by itself, or of a size no longer used) does not pile up.
    run: u64,
}

/// Stored vectors of one element type by capacity, each with the run it was stored in; per capacity
/// also the last run that stored or took one (an emptied entry stays while in use, so that steady
/// runs do not rebuild it).
#[derive(Debug)]
struct List<T> {
    by_capacity: BTreeMap<usize, Entry<T>>,
}

/// The stored vectors of one capacity (each with its run) and the last run that used the entry.
type Entry<T> = (Vec<(Vec<T>, u64)>, u64);

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            by_capacity: BTreeMap::new(),
        }
    }
}

impl<T> List<T> {
    fn put(&mut self, v: Vec<T>, run: u64) {
        if v.capacity() > 0 {
            let (list, used) = self.by_capacity.entry(v.capacity()).or_default();
            list.push((v, run));
            *used = run;
        }
    }

    /// The smallest stored vector with room for `n` (and not more than about twice that), emptied.
    fn take(&mut self, n: usize, run: u64) -> Option<Vec<T>> {
        let limit = n.saturating_mul(2).max(64);
        let (_, (list, used)) = self
            .by_capacity
            .range_mut(n..=limit)
            .find(|(_, (l, _))| !l.is_empty())?;
        let (mut v, _) = list.pop()?;
        *used = run;
        v.clear();
        Some(v)
    }

    /// Frees the vectors stored before run `oldest`, and the entries unused since then.
    fn trim(&mut self, oldest: u64) {
        self.by_capacity.retain(|_, (l, used)| {
            l.retain(|(_, r)| *r >= oldest);
            !l.is_empty() || *used >= oldest
        });
    }

    fn len(&self) -> usize {
        self.by_capacity.values().map(|(l, _)| l.len()).sum()
    }
}

impl VecPool {
    /// The smallest stored vector of `T` with room for `n` (not more than about twice that), emptied.
    pub fn take<T: 'static>(&mut self, n: usize) -> Option<Vec<T>> {
        let run = self.run;
        self.list::<T>()?.take(n, run)
    }

    /// Keeps a vector of one of the pooled element types (dropped if `T` is none of them).
    pub fn put_vec<T: 'static>(&mut self, v: Vec<T>) {
        let run = self.run;
        if let Some(list) = self.list::<T>() {
            list.put(v, run);
        }
    }

    /// Moves a vector of `T` with room for `n` into `other`, if one fits.
    pub fn lend_one_to<T: 'static>(&mut self, other: &mut VecPool, n: usize) {
        if let Some(v) = self.take::<T>(n) {
            other.put_vec(v);
        }
    }

    /// The list of vectors of element type `T`, if `T` is one of the pooled types.
    fn list<T: 'static>(&mut self) -> Option<&mut List<T>> {
        let lists: [&mut dyn Any; 4] =
            [&mut self.f32, &mut self.f64, &mut self.i64, &mut self.bool];
        lists.into_iter().find_map(|l| l.downcast_mut::<List<T>>())
    }

    /// Ends a run: frees what no kernel took in this run or the two before.
    pub fn end_run(&mut self) {
        let oldest = self.run.saturating_sub(1);
        self.f32.trim(oldest);
        self.f64.trim(oldest);
        self.i64.trim(oldest);
        self.bool.trim(oldest);
        self.run += 1;
    }

    /// Number of stored vectors.
    pub fn len(&self) -> usize {
        self.f32.len() + self.f64.len() + self.i64.len() + self.bool.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_hands_out_the_smallest_fitting_vector_of_the_right_type() {
        let mut p = VecPool::default();
        for n in [10usize, 1000, 100] {
            p.put_vec(vec![1.0f32; n]);
        }
        p.put_vec(vec![7i64; 50]);
        // Smallest that fits, emptied.
        let v = p.take::<f32>(50).unwrap();
        assert!(v.is_empty() && v.capacity() >= 100 && v.capacity() < 1000);
        // Not more than about twice the request: 1000 is too big for 20 (and 10 too small).
        assert!(p.take::<f32>(20).is_none());
        assert!(p.take::<f32>(5000).is_none());
        assert_eq!(p.take::<f32>(8).map(|v| v.capacity() >= 10), Some(true));
        // Element types never mix; other types are not kept.
        assert!(p.take::<f64>(10).is_none());
        assert!(p.take::<i64>(40).is_some());
        assert!(p.take::<i64>(40).is_none());
        p.put_vec(vec![1u8; 100]);
        assert!(p.take::<u8>(100).is_none());
    }

    #[test]
    fn vectors_no_kernel_takes_are_freed_after_two_more_runs() {
        let mut p = VecPool::default();
        p.put_vec(vec![0.0f32; 100]); // run 0
        p.end_run();
        p.put_vec(vec![0.0f32; 200]); // run 1
        p.end_run();
        assert_eq!(p.len(), 2);
        p.end_run(); // end of run 2: run 0's vector is now three runs old
        assert_eq!(p.len(), 1);
        assert!(p.take::<f32>(100).is_some_and(|v| v.capacity() == 200));
        p.end_run();
        assert!(p.is_empty());
    }
}
