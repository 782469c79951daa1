//! Entry points of the fuzz targets (`fuzz/`), kept in the library so that the seed corpus and every
//! crash found are replayed by ordinary tests (`tests/integration/fuzz_corpus.rs`) on the stable toolchain.
//!
//! Each function takes arbitrary bytes and must return without panicking, whatever the bytes are:
//! readers turn malformed input into an `Err`, and the graph builder turns nonsensical call sequences
//! into `Err`s of the individual calls. A panic (or an abort, or an allocation the fuzzer's memory
//! limit refuses) is a bug.

use ferroflow::prelude::*;
use std::path::{Path, PathBuf};

/// A scratch file of this process for readers that take a path.
fn scratch(name: &str, bytes: &[u8]) -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ferroflow-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(name);
    std::fs::write(&path, bytes).ok()?;
    Some(path)
}

/// Splits `data` at a position given by its first two bytes (little-endian), for targets that need
/// two files.
fn split_two(data: &[u8]) -> (&[u8], &[u8]) {
    let (head, rest) = data.split_at(data.len().min(2));
    let at = match head {
        [a, b] => usize::from(u16::from_le_bytes([*a, *b])),
        _ => 0,
    };
    rest.split_at(at.min(rest.len()))
}

/// Frames `body` as a ferroflow file (magic, version, u64 length, body, CRC-32C of the body), so that
/// mutations reach the decoder behind the checksum instead of stopping at it.
fn framed(magic: [u8; 8], version: u32, body: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(rest);
    out
}

/// Inputs whose first byte is even (real files start with `F`) are used as they are; odd ones have
/// their header checksum fixed:
/// `data[1..]` is split (see `split_two`) into a body and what follows, and framed.
pub fn raw_or_framed(data: &[u8], magic: [u8; 8], version: u32) -> Vec<u8> {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => {
            let (body, tail) = split_two(rest);
            framed(magic, version, body, tail)
        }
        _ => data.to_vec(),
    }
}

/// The ferroflow checkpoint reader: open, list, read every entry (raw files, or headers with a valid
/// checksum, see `raw_or_framed`).
pub fn checkpoint(data: &[u8]) {
    let data = raw_or_framed(
        data,
        ferroflow::io::checkpoint::MAGIC,
        ferroflow::io::checkpoint::VERSION,
    );
    let Some(path) = scratch("model.ffckpt", &data) else {
        return;
    };
    if let Ok(mut reader) = ferroflow::io::checkpoint::CheckpointReader::open(&path) {
        let keys: Vec<String> = reader.entries().iter().map(|e| e.name.clone()).collect();
        for k in keys {
            let _ = reader.read(&k);
        }
    }
}

/// The meta-graph importer: import, then compile and run whatever it gave (nothing may panic). Raw
/// files, or bodies with a valid checksum (see `raw_or_framed`).
pub fn meta_graph(data: &[u8]) {
    let data = raw_or_framed(
        data,
        ferroflow::io::meta_graph::MAGIC,
        ferroflow::io::meta_graph::VERSION,
    );
    let Some(path) = scratch("model.meta", &data) else {
        return;
    };
    if let Ok((g, _saver)) = ferroflow::io::meta_graph::import_meta_graph(&path) {
        let _ = g.to_dot(false);
        let _ = exercise(&g, &mut Bytes::new(&data));
    }
}

/// The TensorFlow `MetaGraphDef` importer (a protobuf: no checksum stands between mutations and the
/// decoder): the whole graph, then a session runs random fetches with random feeds.
pub fn tf_meta_graph(data: &[u8]) {
    let Some(path) = scratch("tf.meta", data) else {
        return;
    };
    if let Ok(g) = ferroflow::io::import_tf_meta_graph(&path, &[]) {
        let _ = exercise(&g, &mut Bytes::new(data));
    }
}

/// The TensorFlow V2 checkpoint reader: the input is an `.index` file and a `.data-00000-of-00001`
/// shard (see `split_two`); list the tensors and read each one. Inputs whose first byte is odd
/// give instead a compression byte (0 none, 1 snappy), then the contents of the index's data block
/// and the shard: the index is built around the block with valid checksums
/// (`index_around_block`), so that mutations reach the snappy decoder, the block's entries and the
/// `BundleEntryProto`s instead of stopping at a checksum.
pub fn tf_checkpoint(data: &[u8]) {
    let framed;
    let (index, shard) = match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => {
            let (compression, rest) = rest.split_first().unwrap_or((&0, &[]));
            let (block, shard) = split_two(rest);
            framed =
                ferroflow::io::tf_checkpoint::index_around_block(block, compression % 2, b"\xff");
            (framed.as_slice(), shard)
        }
        _ => split_two(data),
    };
    let (Some(index_path), Some(_)) = (
        scratch("tf.index", index),
        scratch("tf.data-00000-of-00001", shard),
    ) else {
        return;
    };
    let prefix = index_path.with_extension("");
    let Some(prefix) = prefix.to_str() else {
        return;
    };
    if let Ok(reader) = ferroflow::io::tf_checkpoint::TfCheckpointReader::open(prefix) {
        for (key, _) in reader.unreadable() {
            let _ = reader.read_strings(&key);
        }
        if let Ok(Some(graph)) =
            ferroflow::io::tf_checkpoint::object_graph::ObjectGraph::read(&reader)
        {
            let _ = graph.paths();
        }
        if let Ok(infos) = reader.tensors() {
            for info in infos {
                let _ = reader.read(&info.name);
            }
        }
    }
}

/// The safetensors importer, into a graph of an f32 `[2, 3]`, an f32 `[2]` and an i64 `[2]` variable
/// (keys `a`, `b`, `c`). Inputs whose first byte is odd give the JSON header and the data (see
/// `split_two`), framed with the header's true length.
pub fn safetensors(data: &[u8]) {
    let framed;
    let file = match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => {
            let (header, tensors) = split_two(rest);
            let mut f = (header.len() as u64).to_le_bytes().to_vec();
            f.extend_from_slice(header);
            f.extend_from_slice(tensors);
            framed = f;
            framed.as_slice()
        }
        _ => data,
    };
    let Some(path) = scratch("model.safetensors", file) else {
        return;
    };
    let g = Graph::new();
    let vars = [
        ("a", DType::F32, &[2usize, 3][..]),
        ("b", DType::F32, &[2][..]),
        ("c", DType::I64, &[2][..]),
    ]
    .iter()
    .filter_map(|(name, dtype, shape)| {
        let v = g
            .get_variable_with(name, shape, *dtype, VarOptions::init(Initializer::Zeros))
            .ok()?;
        Some((name.to_string(), v))
    })
    .collect::<Vec<_>>();
    let sess = Session::new(&g);
    let _ = ferroflow::io::import_safetensors(&g, &sess, &vars, &path);
}

/// The IDX loader (MNIST's format), plain or gzipped.
pub fn idx(data: &[u8]) {
    if let Some(path) = scratch("images.idx", data) {
        let _ = ferroflow::data::read_idx(&path);
    }
    let _ = ferroflow::data::parse_idx(Path::new("<fuzz>"), data);
}

/// The digits CSV loader, plain or gzipped.
pub fn csv(data: &[u8]) {
    if let Some(path) = scratch("digits.csv", data) {
        let _ = ferroflow::data::digits_csv(&path);
    }
}

/// Reads bytes as a stream of small numbers; zeros after the end.
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }
    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::from(self.byte()) % n
        }
    }
    /// A small signed number: mostly -3..=4, sometimes an extreme value.
    pub fn small_i64(&mut self) -> i64 {
        match self.byte() {
            250 => i64::MAX,
            251 => i64::MIN,
            252 => -1,
            253 => 1 << 40,
            b => i64::from(b % 8) - 3,
        }
    }
    /// A dimension: mostly 0..=5, sometimes huge.
    pub fn dim(&mut self) -> usize {
        match self.byte() {
            255 => usize::MAX,
            254 => 1 << 35,
            b => usize::from(b % 6),
        }
    }
    /// A shape of rank 0..=3.
    pub fn dims(&mut self) -> Vec<usize> {
        let rank = self.below(4);
        (0..rank).map(|_| self.dim()).collect()
    }
    /// A short string, sometimes with characters names may not hold.
    pub fn name(&mut self) -> String {
        const ALPHABET: &[u8] = b"abcxyz019_/.-[]*()^$ \\";
        let len = self.below(6);
        (0..len)
            .map(|_| char::from(ALPHABET[self.below(ALPHABET.len())]))
            .collect()
    }
    fn dtype(&mut self) -> DType {
        [DType::F32, DType::F64, DType::I64, DType::Bool][self.below(4)]
    }
    /// A value with a random dtype-compatible content; its shape is small.
    fn value(&mut self, dtype: DType, dims: &[usize]) -> Option<Value> {
        let n = Value::checked_len(dims).ok().filter(|&n| n <= 4096)?;
        let data: Vec<f64> = (0..n)
            .map(|_| f64::from(self.byte()) / 16.0 - 4.0)
            .collect();
        let v = Value::from_f64(dims, data).ok()?;
        Some(v.cast(dtype))
    }
}

/// Runs a graph-building sequence driven by `data`: placeholders, constants, variables, scopes,
/// unary/binary/shape/reduction/nn/convolution ops on random earlier tensors, gradients and collection queries,
/// then sessions that run random fetches with random feeds. Every call may fail; none may panic.
pub fn graph_ops(data: &[u8]) {
    graph_ops_count(data);
}

/// [`graph_ops`], returning how many calls succeeded and ran (for tests that the programs are real).
pub fn graph_ops_count(data: &[u8]) -> usize {
    let mut built = 0;
    let mut b = Bytes::new(data);
    let g = Graph::new();
    let mut pool: Vec<Tensor> = Vec::new();
    let mut scopes = Vec::new();
    let mut steps = 0;
    while !b.done() && steps < 64 {
        steps += 1;
        let pick = |b: &mut Bytes, pool: &[Tensor]| pool.get(b.below(pool.len())).copied();
        let made: Result<Tensor> = match b.below(41) {
            0 => {
                let dims: Vec<Option<usize>> = b
                    .dims()
                    .into_iter()
                    .map(|d| (d != 0).then_some(d))
                    .collect();
                let dtype = b.dtype();
                g.placeholder(dtype, dims)
            }
            1 => {
                let (dtype, dims) = (b.dtype(), b.dims());
                match b.value(dtype, &dims) {
                    Some(v) => g.constant(v),
                    None => continue,
                }
            }
            2 => {
                let (name, dims, dtype) = (b.name(), b.dims(), b.dtype());
                g.get_variable(&name, &dims, dtype).map(|v| v.value())
            }
            3 => match g.name_scope(&b.name()) {
                Ok(s) => {
                    scopes.push(s);
                    continue;
                }
                Err(e) => Err(e),
            },
            4 => match g.variable_scope(&b.name()) {
                Ok(s) => {
                    scopes.push(s);
                    continue;
                }
                Err(e) => Err(e),
            },
            5 => {
                scopes.pop();
                continue;
            }
            6 => {
                g.named(&b.name());
                continue;
            }
            7..=18 => {
                let Some(x) = pick(&mut b, &pool) else {
                    continue;
                };
                match b.below(20) {
                    0 => g.neg(x),
                    1 => g.square(x),
                    2 => g.sqrt(x),
                    3 => g.exp(x),
                    4 => g.log(x),
                    5 => g.sigmoid(x),
                    6 => g.tanh(x),
                    7 => g.relu(x),
                    8 => g.elu(x),
                    9 => g.selu(x),
                    10 => g.leaky_relu(x, 0.2),
                    11 => g.softplus(x),
                    12 => g.softmax(x),
                    13 => g.log_softmax(x),
                    14 => g.cast(x, b.dtype()),
                    15 => g.identity(x),
                    16 => g.check_numerics(x, "fuzz"),
                    17 => g.clip_by_value(x, -1.0, 1.0),
                    18 => g.zeros_like(x),
                    _ => g.stop_gradient(x),
                }
            }
            19..=26 => {
                let (Some(x), Some(y)) = (pick(&mut b, &pool), pick(&mut b, &pool)) else {
                    continue;
                };
                match b.below(14) {
                    0 => g.add(x, y),
                    1 => g.sub(x, y),
                    2 => g.mul(x, y),
                    3 => g.div(x, y),
                    4 => g.pow(x, y),
                    5 => g.maximum(x, y),
                    6 => g.matmul(x, y),
                    7 => g.matmul_t(x, y, b.byte() & 1 == 1, b.byte() & 1 == 1),
                    8 => g.squared_difference(x, y),
                    9 => g.less(x, y),
                    10 => g.gather(x, y),
                    11 => g.sparse_softmax_cross_entropy_with_logits(x, y),
                    12 => g.concat(&[x, y], b.small_i64()),
                    _ => g.add_n(&[x, y]),
                }
            }
            27..=32 => {
                let Some(x) = pick(&mut b, &pool) else {
                    continue;
                };
                let axes: Vec<i64> = (0..b.below(3)).map(|_| b.small_i64()).collect();
                let keep = b.byte() & 1 == 1;
                let axes_opt = (b.byte() & 1 == 1).then_some(axes.as_slice());
                match b.below(10) {
                    0 => g.reduce_sum(x, axes_opt, keep),
                    1 => g.reduce_mean(x, axes_opt, keep),
                    2 => g.reduce_max(x, axes_opt, keep),
                    3 => g.reshape(x, &axes),
                    4 => g.squeeze(x, &axes),
                    5 => g.expand_dims(x, b.small_i64()),
                    6 => {
                        let perm: Vec<usize> =
                            axes.iter().map(|&a| a.unsigned_abs() as usize).collect();
                        g.transpose(x, &perm)
                    }
                    7 => {
                        let begin: Vec<usize> =
                            axes.iter().map(|&a| a.unsigned_abs() as usize).collect();
                        g.slice(x, &begin, &axes)
                    }
                    8 => g.argmax(x, b.small_i64()),
                    _ => g.one_hot(x, b.dim()),
                }
            }
            33 => {
                let dims = b.dims();
                g.random_normal(&dims, 0.0, 1.0, DType::F32, None)
            }
            34 => {
                let (Some(y), Some(x)) = (pick(&mut b, &pool), pick(&mut b, &pool)) else {
                    continue;
                };
                if let Ok(grads) = g.gradients(&[y], &[x]) {
                    pool.extend(grads.into_iter().flatten());
                }
                continue;
            }
            35 => {
                let re = b.name();
                let _ = g.get_collection::<Tensor>(keys::GLOBAL_VARIABLES, Some(&re));
                let _ = g.get_collection::<Variable>(keys::TRAINABLE_VARIABLES, Some(&re));
                continue;
            }
            36 => {
                let name = b.name();
                g.get_tensor_by_name(&name)
            }
            37 => {
                let Some(x) = pick(&mut b, &pool) else {
                    continue;
                };
                let vars = g.trainable_variables();
                match vars.get(b.below(vars.len())) {
                    Some(&v) => g.assign_add(v, x),
                    None => continue,
                }
            }
            38 => g
                .add_check_numerics_ops()
                .map(|op| Tensor::from_index(op.index())),
            39 => {
                // The CNN ops, on earlier tensors or new 4-D constants (any dimension may be huge).
                let operand = |b: &mut Bytes| match pick(b, &pool) {
                    Some(t) if b.byte() & 1 == 1 => Some(t),
                    _ => {
                        let dims: Vec<usize> = (0..4).map(|_| b.dim()).collect();
                        b.value(DType::F32, &dims).and_then(|v| g.constant(v).ok())
                    }
                };
                let Some(x) = operand(&mut b) else {
                    continue;
                };
                let strides = [1 + b.below(3), 1 + b.below(3)];
                let ksize = [1 + b.below(3), 1 + b.below(3)];
                let padding = ["SAME", "VALID", "FULL"][b.below(3)];
                match b.below(4) {
                    0 => match operand(&mut b) {
                        Some(f) => g.conv2d_dilated(x, f, &strides, padding, &[1 + b.below(2)]),
                        None => continue,
                    },
                    1 => g.max_pool(x, &ksize, &strides, padding),
                    2 => g.avg_pool(x, &ksize, &strides, padding),
                    _ => match operand(&mut b) {
                        Some(bias) => g.bias_add(x, bias),
                        None => continue,
                    },
                }
            }
            _ => {
                built += exercise(&g, &mut b);
                continue;
            }
        };
        if let Ok(t) = made {
            pool.push(t);
            built += 1;
        }
    }
    drop(scopes);
    built + exercise(&g, &mut b)
}

/// Runs the initializer and random fetches of `g` with random feeds for its placeholders, with and
/// without the compiler passes and numerics checks.
fn exercise(g: &Graph, b: &mut Bytes) -> usize {
    let ops = g.operations();
    // Graphs may legally ask for gigabytes (a random op of 2^30 elements); the memory limit turns
    // that into an error, as it would for a user running a graph from elsewhere.
    let options = SessionOptions {
        optimize: b.byte() & 1 == 0,
        check_numerics: b.byte() & 1 == 1,
        memory_limit: Some(256 << 20),
        ..SessionOptions::default()
    };
    let sess = Session::with_options(g, options);
    if let Ok(init) = g.global_variables_initializer() {
        let _ = sess.run_targets(&[init], &[]);
    }
    let mut ran = 0;
    for _ in 0..3 {
        let mut feeds = Vec::new();
        for &op in &ops {
            if g.op_type(op) == "Placeholder" && b.byte() & 1 == 1 {
                let t = Tensor::from_index(op.index());
                let dtype = g.dtype(t).unwrap_or(DType::F32);
                let dims = b.dims();
                if let Some(v) = b.value(dtype, &dims) {
                    feeds.push(feed(t, v));
                }
            }
        }
        let fetches: Vec<Tensor> = (0..b.below(3) + 1)
            .filter_map(|_| {
                ops.get(b.below(ops.len()))
                    .map(|op| Tensor::from_index(op.index()))
            })
            .collect();
        ran += usize::from(sess.run(&fetches, &feeds, &[]).is_ok());
    }
    ran
}
