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
fn tf_meta_graph_corpus() {
    assert!(replay("tf_meta_graph", ferroflow_tools::fuzzing::tf_meta_graph) >= 3);
}

#[test]
fn safetensors_corpus() {
    assert!(replay("safetensors", ferroflow_tools::fuzzing::safetensors) >= 2);
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
    // ferroflow's export of 35 ops imports whole; TensorFlow's training graphs import in part.
    let ops = seeds.join("tf_meta_graph/seed-3-ferroflow-ops.meta");
    assert!(
        ferroflow::io::import_tf_meta_graph(&ops, &[])
            .unwrap()
            .len()
            > 35
    );
    let mlp = seeds.join("tf_meta_graph/seed-1-mlp.meta");
    assert!(ferroflow::io::import_tf_meta_graph(&mlp, &["dnn/outputs/BiasAdd"]).is_ok());
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

/// An index file and its shard, from a `tf_checkpoint` seed: raw (two files split at a 16-bit
/// position) or, first byte odd, a compression byte and a data block to build the index around.
fn tf_seed_files(seed: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let split = |b: &[u8]| {
        let at = usize::from(u16::from_le_bytes([b[0], b[1]]));
        (b[2..2 + at].to_vec(), b[2 + at..].to_vec())
    };
    if seed[0] % 2 == 1 {
        let (block, shard) = split(&seed[2..]);
        let index = ferroflow::io::tf_checkpoint::index_around_block(&block, seed[1], b"\xff");
        (index, shard)
    } else {
        split(seed)
    }
}

/// The framed `tf_checkpoint` seeds (the data block as it is, and as a snappy stream) read as the
/// same checkpoint as the raw seed, and the framed safetensors seed is the raw one.
#[test]
fn framed_tf_and_safetensors_seeds_are_the_real_files() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let dir = std::env::temp_dir().join(format!("ff-tf-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let read_all = |name: &str| {
        let (index, shard) =
            tf_seed_files(&std::fs::read(seeds.join("tf_checkpoint").join(name)).unwrap());
        std::fs::write(dir.join(format!("{name}.index")), index).unwrap();
        std::fs::write(dir.join(format!("{name}.data-00000-of-00001")), shard).unwrap();
        let r = ferroflow::io::TfCheckpointReader::open(&dir.join(name).to_string_lossy()).unwrap();
        let infos = r.tensors().unwrap();
        assert!(!infos.is_empty() && r.unreadable().is_empty(), "{name}");
        infos
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    r.read(&i.name).unwrap().unwrap().to_f64_vec(),
                )
            })
            .collect::<Vec<_>>()
    };
    let real = read_all("seed-1");
    assert_eq!(read_all("seed-2-framed"), real);
    assert_eq!(read_all("seed-3-snappy"), real);
    std::fs::remove_dir_all(&dir).unwrap();

    let raw = std::fs::read(seeds.join("safetensors/seed-1.safetensors")).unwrap();
    let framed = std::fs::read(seeds.join("safetensors/seed-2-framed")).unwrap();
    let header_len = usize::from(u16::from_le_bytes([framed[1], framed[2]]));
    let mut rebuilt = (header_len as u64).to_le_bytes().to_vec();
    rebuilt.extend_from_slice(&framed[3..]);
    assert_eq!(rebuilt, raw);
    // The raw seed imports: f32, float16 widened to f32, int32 widened to i64.
    use ferroflow::prelude::*;
    let g = Graph::new();
    let var = |name: &str, dtype, shape: &[usize]| {
        let v = g
            .get_variable_with(name, shape, dtype, VarOptions::init(Initializer::Zeros))
            .unwrap();
        (name.to_string(), v)
    };
    let vars = vec![
        var("a", DType::F32, &[2, 3]),
        var("b", DType::F32, &[2]),
        var("c", DType::I64, &[2]),
    ];
    let sess = Session::new(&g);
    ferroflow::io::import_safetensors(
        &g,
        &sess,
        &vars,
        &seeds.join("safetensors/seed-1.safetensors"),
    )
    .unwrap();
    let got: Vec<Vec<f64>> = vars
        .iter()
        .map(|(_, v)| sess.variable_value(*v).unwrap().to_f64_vec())
        .collect();
    assert_eq!(
        got,
        vec![
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            vec![1.0, -2.0],
            vec![7.0, -8.0]
        ]
    );
}
