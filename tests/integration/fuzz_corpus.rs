//! Replays the fuzz targets' seed corpus (`fuzz/seeds/TARGET/`) and every input that once crashed a
//! target (`fuzz/regressions/TARGET/`) through the same entry points the fuzzers call, on the stable
//! toolchain: none may panic.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            f(&bytes);
            // Every truncation of a seed is an input too.
            if dir == "seeds" {
                let step = (bytes.len() / 64).max(1);
                for cut in (0..bytes.len()).step_by(step) {
                    f(&bytes[..cut]);
                }
            }
            n += 1;
        }
    }
    n
}

#[test]
fn checkpoint_corpus() {
    assert!(replay("checkpoint", ferroflow_tools::fuzzing::checkpoint) >= 1);
}

#[test]
fn meta_graph_corpus() {
    assert!(replay("meta_graph", ferroflow_tools::fuzzing::meta_graph) >= 1);
}

#[test]
fn tf_checkpoint_corpus() {
    assert!(replay("tf_checkpoint", ferroflow_tools::fuzzing::tf_checkpoint) >= 1);
}

#[test]
fn idx_corpus() {
    assert!(replay("idx", ferroflow_tools::fuzzing::idx) >= 3);
}

#[test]
fn csv_corpus() {
    assert!(replay("csv", ferroflow_tools::fuzzing::csv) >= 2);
}

#[test]
fn graph_ops_corpus() {
    assert!(replay("graph_ops", ferroflow_tools::fuzzing::graph_ops) >= 2);
}

/// The seeds are real inputs, not just bytes that fail early: each reader accepts its seed.
#[test]
fn seeds_are_valid_inputs() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let r = ferroflow::io::CheckpointReader::open(&seeds.join("checkpoint/seed-1.ffckpt")).unwrap();
    assert_eq!(r.entries().len(), 1);
    let (dims, px) = ferroflow::data::read_idx(&seeds.join("idx/seed-2.idx.gz")).unwrap();
    assert_eq!((dims, px.len()), (vec![2, 3, 3], 18));
    let d = ferroflow::data::digits_csv(&seeds.join("csv/seed-1.csv")).unwrap();
    assert_eq!(d.len(), 4);
    let (g, saver) =
        ferroflow::io::import_meta_graph(&seeds.join("meta_graph/seed-1.meta")).unwrap();
    // get_variable ignores name scopes (TF1): the variable is `w`, the ops are under `dnn/`.
    assert!(g.get_tensor_by_name("w:0").is_ok());
    assert!(g.get_tensor_by_name("dnn/MatMul:0").is_ok());
    assert!(saver.is_some());
}

/// The framed seeds (first byte odd: header or body with a checksum made valid by the target) give back
/// exactly the real files, so the framing the fuzzers mutate through is the real format.
#[test]
fn framed_seeds_rebuild_the_real_files() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (dir, real, magic, version) in [
        (
            "checkpoint",
            "seed-1.ffckpt",
            ferroflow::io::checkpoint::MAGIC,
            ferroflow::io::checkpoint::VERSION,
        ),
        (
            "meta_graph",
            "seed-1.meta",
            ferroflow::io::meta_graph::MAGIC,
            ferroflow::io::meta_graph::VERSION,
        ),
    ] {
        let framed = std::fs::read(seeds.join(dir).join("seed-2-framed")).unwrap();
        let real = std::fs::read(seeds.join(dir).join(real)).unwrap();
        assert_eq!(
            ferroflow_tools::fuzzing::raw_or_framed(&framed, magic, version),
            real,
            "{dir}"
        );
        assert_eq!(
            ferroflow_tools::fuzzing::raw_or_framed(&real, magic, version),
            real
        );
    }
}
