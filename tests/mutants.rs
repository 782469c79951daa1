//! The mutation corpus: checkpoints in both formats and a meta-graph, each mutated 1,500 ways (bit
//! flips, overwritten bytes and 4-byte lengths, truncations, extensions, zeroed and swapped ranges),
//! read as `ferroflow inspect` reads them and restored into a session whose variables hold other
//! values. For every mutant:
//! - no panic (each read runs under `catch_unwind`) and no abort (the test would die);
//! - no silent corruption: a restore that succeeds gives exactly the saved values;
//! - no half-restore: a restore that fails leaves every variable as it was;
//! - bounded memory: the most heap the read holds at once stays below 4 times the larger of the
//!   file's size and the variables' size (a peak-tracking global allocator measures it), plus
//!   64 KiB for the reader's own bookkeeping.
//!
//! This file is a test binary of its own: its global allocator measures the whole process, so its
//! one test runs alone.

use ferroflow::io::{import_meta_graph, AnyCheckpoint, SaveFormat, Saver, VarList};
use ferroflow::prelude::*;
use rand::{Rng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Peak;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

// SAFETY: every call forwards to the system allocator with the caller's own arguments, so each
// method keeps `GlobalAlloc`'s contract exactly as `System` does; the counters only observe sizes.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size);
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: `ptr` was allocated by this allocator (hence `System`) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: `ptr` was allocated by this allocator (hence `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Peak = Peak;

/// Runs `f` under `catch_unwind` and returns its result (`None`: it panicked) and the most heap
/// it held beyond what was live when it started.
fn measured<R>(f: impl FnOnce() -> R) -> (Option<R>, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let r = catch_unwind(AssertUnwindSafe(f)).ok();
    (r, PEAK.load(Ordering::SeqCst).saturating_sub(base))
}

/// One way to damage a file, chosen by `rng`.
fn mutate(bytes: &[u8], rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    let mut m = bytes.to_vec();
    let n = m.len();
    // Half the mutations land in the first 512 bytes, where headers, lengths and indexes are.
    let pos = |rng: &mut rand::rngs::StdRng| {
        if rng.gen_bool(0.5) {
            rng.gen_range(0..n.min(512))
        } else {
            rng.gen_range(0..n)
        }
    };
    match rng.gen_range(0..7) {
        0 => {
            let p = pos(rng);
            m[p] ^= 1 << rng.gen_range(0..8);
        }
        1 => {
            let p = pos(rng);
            m[p] = rng.gen();
        }
        2 => {
            // A lying length: a large or random 32-bit number over 4 bytes.
            let p = pos(rng).min(n - 4);
            let v: u32 = if rng.gen_bool(0.5) {
                u32::MAX - rng.gen_range(0..16)
            } else {
                rng.gen()
            };
            m[p..p + 4].copy_from_slice(&v.to_le_bytes());
        }
        3 => m.truncate(rng.gen_range(0..n)),
        4 => m.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>())),
        5 => {
            let p = pos(rng);
            let end = (p + rng.gen_range(1..64)).min(n);
            m[p..end].fill(0);
        }
        _ => {
            let len = rng.gen_range(1..=16.min(n / 2));
            let (a, b) = (rng.gen_range(0..n - len), rng.gen_range(0..n - len));
            let chunk = m[a..a + len].to_vec();
            m.copy_within(b..b + len, a);
            m[b..b + len].copy_from_slice(&chunk);
        }
    }
    m
}

/// What inspect does: open the prefix in either format, list it, read every tensor.
fn inspect(prefix: &str) -> ferroflow::io::Result<()> {
    let mut ckpt = AnyCheckpoint::open(prefix)?;
    for (name, _, _) in ckpt.entries()? {
        ckpt.read(&name)?;
    }
    Ok(())
}

struct Model {
    graph: Graph,
    vars: Vec<Variable>,
    saved: Vec<Vec<f64>>,
    bytes: usize,
}

/// Two dense layers' variables (784·64 + 64 + 64·10 + 10 floats, 203 kB) holding distinct values.
fn model() -> Model {
    let graph = Graph::new();
    let shapes: [&[usize]; 4] = [&[784, 64], &[64], &[64, 10], &[10]];
    let names = ["hidden/kernel", "hidden/bias", "out/kernel", "out/bias"];
    let vars: Vec<Variable> = names
        .iter()
        .zip(shapes)
        .map(|(n, s)| {
            graph
                .get_variable_with(n, s, DType::F32, VarOptions::init(Initializer::Zeros))
                .unwrap()
        })
        .collect();
    let saved: Vec<Vec<f64>> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let n: usize = s.iter().product();
            (0..n)
                .map(|i| ((i * 31 + k * 7) % 97) as f64 / 97.0 - 0.5)
                .collect()
        })
        .collect();
    let bytes = saved.iter().map(|v| v.len() * 4).sum();
    Model {
        graph,
        vars,
        saved,
        bytes,
    }
}

fn set_all(m: &Model, sess: &Session, values: impl Fn(usize) -> Vec<f64>) {
    for (k, v) in m.vars.iter().enumerate() {
        let shape = sess.variable_value(*v).unwrap().shape().to_vec();
        let value = Value::from_f64(&shape, values(k)).unwrap().cast(DType::F32);
        sess.set_variable_value(*v, value).unwrap();
    }
}

fn current(m: &Model, sess: &Session) -> Vec<Vec<f64>> {
    m.vars
        .iter()
        .map(|v| sess.variable_value(*v).unwrap().to_f64_vec())
        .collect()
}

#[derive(Default, Debug)]
struct Tally {
    mutants: usize,
    /// Read (and restored) whole: the mutation did not touch what the reader uses.
    read_whole: usize,
    refused: usize,
    worst_peak_ratio: f64,
}

#[test]
fn mutated_checkpoints_and_meta_graphs_are_refused_or_read_whole_in_bounded_memory() {
    let dir = std::env::temp_dir().join(format!("ff-mutants-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let m = model();
    let sess = Session::new(&m.graph);
    sess.run_targets(&[m.graph.global_variables_initializer().unwrap()], &[])
        .unwrap();
    set_all(&m, &sess, |k| m.saved[k].clone());
    let saved_f32 = current(&m, &sess);
    let mut originals: Vec<(PathBuf, String)> = Vec::new();
    for (format, name) in [
        (SaveFormat::Ferroflow, "native"),
        (SaveFormat::TensorFlow, "tf"),
    ] {
        let prefix = Saver::new(&m.graph, VarList::All)
            .unwrap()
            .format(format)
            .save(&sess, &dir.join(name).to_string_lossy(), None)
            .unwrap();
        let files: &[&str] = match format {
            SaveFormat::Ferroflow => &[".ffckpt", ".meta"],
            SaveFormat::TensorFlow => &[".index", ".data-00000-of-00001"],
        };
        for ext in files {
            originals.push((PathBuf::from(format!("{prefix}{ext}")), prefix.clone()));
        }
    }
    let saver = Saver::new(&m.graph, VarList::All).unwrap();
    let sentinel = |k: usize| vec![-7.0; m.saved[k].len()];
    let mut rng = rand::rngs::StdRng::seed_from_u64(33);
    for (path, prefix) in &originals {
        let original = std::fs::read(path).unwrap();
        let is_meta = path.extension().is_some_and(|e| e == "meta");
        let bound = 4 * original.len().max(m.bytes) + (64 << 10);
        let mut tally = Tally::default();
        for i in 0..1500 {
            // A mutation that changes nothing (zeros over zeros) is drawn again.
            let mutant = std::iter::repeat_with(|| mutate(&original, &mut rng))
                .find(|m| *m != original)
                .unwrap();
            std::fs::write(path, &mutant).unwrap();
            let what = format!("{} mutant {i}", path.display());
            let (r, peak) = if is_meta {
                let (r, peak) = measured(|| import_meta_graph(path).map(|_| ()));
                (r.map(|r| r.is_ok()), peak)
            } else {
                let (r, peak) = measured(|| inspect(prefix));
                (r.map(|r| r.is_ok()), peak)
            };
            let read = r.unwrap_or_else(|| panic!("{what}: the reader panicked"));
            assert!(peak <= bound, "{what}: held {peak} bytes, bound {bound}");
            tally.worst_peak_ratio = tally
                .worst_peak_ratio
                .max(peak as f64 / original.len().max(m.bytes) as f64);
            if is_meta {
                if read {
                    tally.read_whole += 1;
                } else {
                    tally.refused += 1;
                }
            } else {
                set_all(&m, &sess, sentinel);
                let (r, peak) = measured(|| saver.restore(&sess, prefix));
                let restored = r.unwrap_or_else(|| panic!("{what}: restore panicked"));
                assert!(
                    peak <= bound,
                    "{what}: restore held {peak} bytes, bound {bound}"
                );
                let now = current(&m, &sess);
                match restored {
                    Ok(()) => {
                        assert_eq!(
                            now, saved_f32,
                            "{what}: restored other values (silent corruption)"
                        );
                        assert!(read, "{what}: restores but does not read");
                        tally.read_whole += 1;
                    }
                    Err(_) => {
                        let before: Vec<Vec<f64>> = (0..m.vars.len()).map(sentinel).collect();
                        assert_eq!(now, before, "{what}: a failed restore changed variables");
                        tally.refused += 1;
                    }
                }
            }
            tally.mutants += 1;
        }
        std::fs::write(path, &original).unwrap();
        eprintln!("{}: {tally:?}", path.display());
        // Most mutations break something; those that do not (bytes appended to a data file, a
        // zeroed range that was zero) are read whole, with the saved values.
        assert!(tally.refused > 1000, "{}: {tally:?}", path.display());
    }

    // The crafted index of a few dozen bytes whose snappy block claims 2 GiB (with a valid
    // checksum): refused, holding next to nothing.
    let claim = [0x80, 0x80, 0x80, 0x80, 0x08, 0x00, b'x'];
    let index = ferroflow::io::tf_checkpoint::index_around_block(&claim, 1, b"\xff");
    let prefix = dir.join("crafted").to_string_lossy().into_owned();
    std::fs::write(format!("{prefix}.index"), &index).unwrap();
    let (r, peak) = measured(|| inspect(&prefix));
    let e = r.unwrap().unwrap_err().to_string();
    assert!(e.contains("claims 2147483648 bytes from 7"), "{e}");
    assert!(
        peak < 64 << 10,
        "held {peak} bytes for a {}-byte index",
        index.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
