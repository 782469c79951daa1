//! ferroflow-data: data-set loaders (the bundled 8x8 digits CSV, MNIST/Fashion-MNIST IDX files),
//! fixed splits, class filtering, and a seeded shuffling batch iterator.
// Panic audit: these crates read user files; no unwrap/expect/unchecked indexing outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use flate2::read::GzDecoder;
use ndarray::{Array1, Array2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Errors of the loaders; each names the file or what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
}

/// Result with the data error.
pub type Result<T> = std::result::Result<T, DataError>;

/// Decompressed files larger than this are rejected (a guard against gzip bombs).
const MAX_DECOMPRESSED: u64 = 1 << 30;

/// A labelled data set: `images` `[n, features]` as f32, `labels` `[n]` as i64.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub images: Array2<f32>,
    pub labels: Array1<i64>,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// The examples at `idx`, in that order; indices past the end are skipped.
    pub fn select(&self, idx: &[usize]) -> Dataset {
        let n = self.len().min(self.images.nrows());
        let idx: Vec<usize> = idx.iter().copied().filter(|&i| i < n).collect();
        let idx = idx.as_slice();
        Dataset {
            images: self.images.select(Axis(0), idx),
            labels: self.labels.select(Axis(0), idx),
        }
    }
    /// The examples whose label satisfies `keep`, with labels mapped by `relabel`.
    pub fn filter_classes(
        &self,
        keep: impl Fn(i64) -> bool,
        relabel: impl Fn(i64) -> i64,
    ) -> Dataset {
        let idx: Vec<usize> = (0..self.len())
            .filter(|&i| self.labels.get(i).is_some_and(|&l| keep(l)))
            .collect();
        let mut d = self.select(&idx);
        d.labels.mapv_inplace(relabel);
        d
    }
    /// The first `n` examples.
    pub fn take(&self, n: usize) -> Dataset {
        let idx: Vec<usize> = (0..n.min(self.len())).collect();
        self.select(&idx)
    }
    /// `tf.data.Dataset.shard(num_shards, index)`: the examples whose position modulo `num_shards` is
    /// `index`, in order (each rank of a data-parallel job takes its own shard). `num_shards` 0 is
    /// taken as 1; an `index` past the shards gives an empty set.
    pub fn shard(&self, num_shards: usize, index: usize) -> Dataset {
        let idx: Vec<usize> = (0..self.len())
            .filter(|i| i % num_shards.max(1) == index)
            .collect();
        self.select(&idx)
    }
    /// A seeded shuffle split into (train, test) with `test_fraction` of the examples in test.
    pub fn split(&self, test_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let n_test = ((self.len() as f64) * test_fraction).round() as usize;
        let (test, train) = idx.split_at(n_test.min(self.len()));
        (self.select(train), self.select(test))
    }
    /// A batch iterator over one epoch, shuffled by `seed` (the same seed gives the same order).
    pub fn batches(&self, batch_size: usize, seed: u64) -> Batches<'_> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        Batches {
            data: self,
            order,
            pos: 0,
            batch_size: batch_size.max(1),
        }
    }
}

/// Shuffled mini-batches of one epoch: `(images [b, features], labels [b])`.
pub struct Batches<'a> {
    data: &'a Dataset,
    order: Vec<usize>,
    pos: usize,
    batch_size: usize,
}

impl Iterator for Batches<'_> {
    type Item = (Array2<f32>, Array1<i64>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.order.len() {
            return None;
        }
        let end = (self.pos + self.batch_size).min(self.order.len());
        let idx = self.order.get(self.pos..end)?;
        self.pos = end;
        let d = self.data.select(idx);
        Some((d.images, d.labels))
    }
}

fn gunzip(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    GzDecoder::new(bytes)
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| DataError::Format {
            path: path.into(),
            message: format!("not a valid gzip file: {e}"),
        })?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(DataError::Format {
            path: path.into(),
            message: "decompresses to more than 1 GiB".into(),
        });
    }
    Ok(out)
}

fn parse_digits_csv(path: &Path, text: &str) -> Result<Dataset> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (line_no, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 65 {
            return Err(DataError::Format {
                path: path.into(),
                message: format!(
                    "line {}: expected 65 fields, found {}",
                    line_no + 1,
                    fields.len()
                ),
            });
        }
        for (k, f) in fields.iter().enumerate() {
            let v: f64 = f.trim().parse().map_err(|_| DataError::Format {
                path: path.into(),
                message: format!(
                    "line {}: field {} is not a number: {f:?}",
                    line_no + 1,
                    k + 1
                ),
            })?;
            if k < 64 {
                pixels.push((v / 16.0) as f32);
            } else {
                labels.push(v as i64);
            }
        }
    }
    let n = labels.len();
    Ok(Dataset {
        images: Array2::from_shape_vec((n, 64), pixels).map_err(|e| DataError::Format {
            path: path.into(),
            message: e.to_string(),
        })?,
        labels: Array1::from(labels),
    })
}

/// The bundled 8x8 handwritten digits (1,797 images, 10 classes), pixels scaled to [0, 1].
pub fn digits() -> Dataset {
    const BYTES: &[u8] = include_bytes!("../data/digits.csv.gz");
    let path = Path::new("<bundled digits.csv.gz>");
    // The bundled file is part of the build and tested; a failure here is a build defect.
    let text = gunzip(path, BYTES)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    parse_digits_csv(path, &text).unwrap_or(Dataset {
        images: Array2::zeros((0, 64)),
        labels: Array1::zeros(0),
    })
}

/// The digits with a fixed split: 80% train, 20% test (seed 42).
pub fn digits_split() -> (Dataset, Dataset) {
    digits().split(0.2, 42)
}

/// The bytes of `path`, when it is a regular file (a link to `/dev/zero` would never end, a FIFO
/// would block) of at most [`MAX_DECOMPRESSED`] bytes.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |source| DataError::Io {
        path: path.into(),
        source,
    };
    let refuse = |message: String| DataError::Format {
        path: path.into(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    if meta.len() > MAX_DECOMPRESSED {
        return Err(refuse(format!(
            "{} bytes is more than the {MAX_DECOMPRESSED} a data file may hold",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_DECOMPRESSED + 1).read_to_end(&mut bytes))
        .map_err(io)?;
    if bytes.len() as u64 > MAX_DECOMPRESSED {
        return Err(refuse(format!("grows past {MAX_DECOMPRESSED} bytes")));
    }
    Ok(bytes)
}

/// Loads a digits-format CSV (optionally gzipped) from a file.
pub fn digits_csv(path: &Path) -> Result<Dataset> {
    let bytes = read_file(path)?;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        gunzip(path, &bytes)?
    } else {
        bytes
    };
    let text = String::from_utf8(bytes).map_err(|_| DataError::Format {
        path: path.into(),
        message: "not UTF-8 text".into(),
    })?;
    parse_digits_csv(path, &text)
}

/// Reads an IDX file (optionally gzipped): returns the dimensions and the u8 values.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let raw = read_file(path)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        gunzip(path, &raw)?
    } else {
        raw
    };
    parse_idx(path, &bytes)
}

/// Parses IDX bytes: a big-endian magic `0x000008NN` (u8 data, NN dimensions), the dimensions, the data.
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<(Vec<usize>, Vec<u8>)> {
    let err = |m: String| DataError::Format {
        path: path.into(),
        message: m,
    };
    let word = |i: usize| -> Option<u32> {
        bytes
            .get(i * 4..i * 4 + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    };
    let magic = word(0).ok_or_else(|| err("too short for an IDX header".into()))?;
    if magic >> 8 != 0x08 {
        return Err(err(format!(
            "bad IDX magic 0x{magic:08x} (expected 0x000008NN, unsigned bytes)"
        )));
    }
    let ndim = (magic & 0xff) as usize;
    if ndim == 0 || ndim > 4 {
        return Err(err(format!("IDX with {ndim} dimensions is not supported")));
    }
    let mut dims = Vec::with_capacity(ndim);
    for i in 0..ndim {
        dims.push(word(1 + i).ok_or_else(|| err("truncated IDX header".into()))? as usize);
    }
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(format!("dimensions {dims:?} overflow")))?;
    let start = 4 * (1 + ndim);
    let data = bytes.get(start..).unwrap_or(&[]);
    if data.len() != count {
        return Err(err(format!(
            "dimensions {dims:?} need {count} bytes of data, found {}",
            data.len()
        )));
    }
    Ok((dims, data.to_vec()))
}

/// Loads an images file and a labels file into a data set with pixels scaled to [0, 1].
pub fn idx_dataset(images: &Path, labels: &Path) -> Result<Dataset> {
    let (dims, pix) = read_idx(images)?;
    let (ldims, lab) = read_idx(labels)?;
    if ldims.len() != 1 || dims.first() != ldims.first() {
        return Err(DataError::Format {
            path: labels.into(),
            message: format!(
                "{} labels for images of dimensions {dims:?}",
                ldims.first().copied().unwrap_or(0)
            ),
        });
    }
    let (n, features) = match dims.split_first() {
        Some((&n, rest)) => (n, rest.iter().product()),
        None => (0, 0),
    };
    Ok(Dataset {
        images: Array2::from_shape_vec(
            (n, features),
            pix.iter().map(|&p| p as f32 / 255.0).collect(),
        )
        .map_err(|e| DataError::Format {
            path: images.into(),
            message: e.to_string(),
        })?,
        labels: lab.iter().map(|&l| l as i64).collect(),
    })
}

/// MNIST or Fashion-MNIST from a directory with the four official files: (train, test). Each file may
/// be gzipped (`train-images-idx3-ubyte.gz`, as distributed) or not (`train-images-idx3-ubyte`, as
/// some packages install them); the gzipped name is tried first.
pub fn mnist(dir: &Path) -> Result<(Dataset, Dataset)> {
    let f = |n: &str| {
        let gz = dir.join(format!("{n}.gz"));
        let plain = dir.join(n);
        if !gz.exists() && plain.exists() {
            plain
        } else {
            gz
        }
    };
    Ok((
        idx_dataset(&f("train-images-idx3-ubyte"), &f("train-labels-idx1-ubyte"))?,
        idx_dataset(&f("t10k-images-idx3-ubyte"), &f("t10k-labels-idx1-ubyte"))?,
    ))
}

/// The directory of the MNIST copy that comes with this crate's source (`data/mnist`, 11.6 MB; see
/// `data/README.md` there for its licence, CC BY-SA 3.0, and checksums). The path is fixed when the
/// crate is compiled, so it exists where the source tree is: a clone of the repository or cargo's
/// copy of the package.
pub fn bundled_mnist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("mnist")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_read() {
        // A link to /dev/zero would never end; a directory is no file either.
        let dir = std::env::temp_dir().join(format!("ff-data-special-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let zero = dir.join("zero.idx");
        let _ = std::fs::remove_file(&zero);
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = read_idx(&zero).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let e = digits_csv(&dir).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bundled_digits_have_the_documented_counts() {
        let d = digits();
        assert_eq!(d.images.dim(), (1797, 64));
        let mut counts = [0; 10];
        for &l in d.labels.iter() {
            counts[l as usize] += 1;
        }
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        assert!(d.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
        let (train, test) = digits_split();
        assert_eq!((train.len(), test.len()), (1438, 359));
        assert_eq!(digits_split().1, test, "the split is fixed");
        let low = d.filter_classes(|l| l < 5, |l| l);
        assert_eq!(low.len(), 178 + 182 + 177 + 183 + 181);
    }

    #[test]
    fn shards_split_the_examples_by_position_modulo_the_count() {
        // 1797 digits in 4 shards: positions 0,4,8,... (450 of them), 1,5,9,... (449), ...
        let d = digits();
        let shards: Vec<Dataset> = (0..4).map(|i| d.shard(4, i)).collect();
        assert_eq!(
            shards.iter().map(Dataset::len).collect::<Vec<_>>(),
            [450, 449, 449, 449]
        );
        assert_eq!(shards[1].labels[2], d.labels[9]);
        assert_eq!(shards[3].images.row(0), d.images.row(3));
        assert!(d.shard(4, 4).is_empty());
        assert_eq!(d.shard(1, 0), d);
    }

    #[test]
    fn batches_cover_an_epoch_in_a_seeded_order() {
        let d = digits().take(10);
        let b: Vec<_> = d.batches(4, 1).collect();
        assert_eq!(
            b.iter().map(|(x, _)| x.nrows()).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        let mut seen: Vec<i64> = Vec::new();
        for (_, l) in d.batches(3, 1) {
            seen.extend(l.iter());
        }
        seen.sort();
        let mut all: Vec<i64> = d.labels.to_vec();
        all.sort();
        assert_eq!(seen, all);
        let again: Vec<_> = d.batches(4, 1).map(|(_, l)| l).collect();
        assert_eq!(again, b.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>());
    }

    #[test]
    fn bundled_mnist_has_the_official_counts() {
        let (train, test) = mnist(&bundled_mnist_dir()).unwrap();
        assert_eq!(train.images.dim(), (60_000, 784));
        assert_eq!(test.images.dim(), (10_000, 784));
        // The first labels of each file as published (train: 5 0 4 1 9; t10k: 7 2 1 0 4).
        assert_eq!(&train.labels.to_vec()[..5], &[5, 0, 4, 1, 9]);
        assert_eq!(&test.labels.to_vec()[..5], &[7, 2, 1, 0, 4]);
        let mut counts = [0; 10];
        for &l in test.labels.iter() {
            counts[l as usize] += 1;
        }
        assert_eq!(
            counts,
            [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
        let missing = mnist(Path::new("/nonexistent/mnist"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("/nonexistent/mnist/train-images-idx3-ubyte.gz"),
            "{missing}"
        );
    }

    #[test]
    fn idx_subset_loads_and_bad_files_are_errors() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
        let d = idx_dataset(
            &dir.join("t10k-first1000-images-idx3-ubyte.gz"),
            &dir.join("t10k-first1000-labels-idx1-ubyte.gz"),
        )
        .unwrap();
        assert_eq!(d.images.dim(), (1000, 784));
        assert_eq!(&d.labels.to_vec()[..5], &[7, 2, 1, 0, 4]);
        let p = Path::new("x.idx");
        assert!(parse_idx(p, &[0, 0, 8]).is_err());
        assert!(parse_idx(p, &[0, 0, 9, 1, 0, 0, 0, 1, 5]).is_err());
        assert!(parse_idx(p, &[0, 0, 8, 1, 0, 0, 0, 3, 5])
            .unwrap_err()
            .to_string()
            .contains("need 3 bytes"));
        assert!(parse_idx(
            p,
            &[0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255]
        )
        .is_err());
        assert!(digits_csv(Path::new("/nonexistent/digits.csv"))
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/digits.csv"));
    }
}
