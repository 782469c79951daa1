//! ferroflow's checkpoint file (see docs/checkpoint-format.md): magic, version, a bincode header of
//! tensor entries with CRC-32C checksums, the header's own checksum, then the raw little-endian data.
//! Written atomically (temporary file, fsync, rename) and tensor by tensor; read with every length
//! bounded before allocation and every checksum verified.

use crate::files::{io_err, sync_dir, temp_path};
use crate::{IoError, Result};
use ferroflow_core::{DType, Value};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The first 8 bytes of every ferroflow checkpoint.
pub const MAGIC: [u8; 8] = *b"FFCKPT\r\n";
/// The current format version.
pub const VERSION: u32 = 1;
/// File extension of a checkpoint beside its prefix.
pub const EXTENSION: &str = "ffckpt";
/// Headers larger than this are rejected before allocation.
const MAX_HEADER: u64 = 256 << 20;

/// One tensor's record in the header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    /// Offset of the tensor's bytes from the start of the data section.
    pub offset: u64,
    pub len: u64,
    /// CRC-32C of the tensor's bytes.
    pub crc32c: u32,
}

#[derive(Serialize, Deserialize)]
struct Header {
    entries: Vec<TensorEntry>,
}

/// The path of the checkpoint file of a prefix (`model.ckpt-10` → `model.ckpt-10.ffckpt`).
pub fn data_path(prefix: &str) -> PathBuf {
    PathBuf::from(format!("{prefix}.{EXTENSION}"))
}

/// A value's elements as little-endian bytes (bool: one byte each), row-major.
pub(crate) fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::F32(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Value::F64(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Value::I64(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Value::Bool(a) => a.iter().map(|&x| x as u8).collect(),
    }
}

/// A dtype other programs store that ferroflow reads as a wider one of its own (exactly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Narrow {
    /// int32, read as int64.
    Int32,
    /// The narrower integers, read as int64 too.
    Int16,
    Int8,
    UInt16,
    UInt8,
    /// IEEE float16, read as float32 or float64.
    F16,
    /// bfloat16, read as float32 or float64.
    BF16,
}

impl Narrow {
    /// Bytes of one element.
    pub(crate) fn size_of(self) -> usize {
        match self {
            Narrow::Int32 => 4,
            Narrow::Int16 | Narrow::UInt16 | Narrow::F16 | Narrow::BF16 => 2,
            Narrow::Int8 | Narrow::UInt8 => 1,
        }
    }

    /// The integer stored little-endian in `c` (`None` for the floats).
    fn int(self, c: &[u8]) -> Option<i64> {
        let byte = |k: usize| c.get(k).copied().unwrap_or(0);
        Some(match self {
            Narrow::Int32 => i64::from(i32::from_le_bytes([byte(0), byte(1), byte(2), byte(3)])),
            Narrow::Int16 => i64::from(i16::from_le_bytes([byte(0), byte(1)])),
            Narrow::UInt16 => i64::from(u16::from_le_bytes([byte(0), byte(1)])),
            Narrow::Int8 => i64::from(i8::from_le_bytes([byte(0)])),
            Narrow::UInt8 => i64::from(byte(0)),
            Narrow::F16 | Narrow::BF16 => return None,
        })
    }

    /// Whether it reads into a value of `to` (the integers into int64, the half-precision floats
    /// into float32 and float64).
    pub(crate) fn widens_to(self, to: DType) -> bool {
        match self {
            Narrow::F16 | Narrow::BF16 => to.is_float(),
            _ => to == DType::I64,
        }
    }
}

/// `shape`'s elements stored little-endian as `narrow` in `b`, as a value of dtype `to` (one that
/// [`Narrow::widens_to`]).
pub(crate) fn widened_value(
    narrow: Narrow,
    to: DType,
    shape: &[usize],
    b: &[u8],
) -> std::result::Result<Value, String> {
    let halves = |bf16: bool| {
        b.chunks_exact(2).map(move |c| {
            let bits = u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ]);
            if bf16 {
                half::bf16::from_bits(bits).to_f64()
            } else {
                half::f16::from_bits(bits).to_f64()
            }
        })
    };
    let value = match (narrow, to) {
        (Narrow::F16 | Narrow::BF16, _) => {
            return match to {
                DType::F32 => Value::from_f32(
                    shape,
                    halves(narrow == Narrow::BF16).map(|x| x as f32).collect(),
                ),
                DType::F64 => Value::from_f64(shape, halves(narrow == Narrow::BF16).collect()),
                _ => return Err(format!("{narrow:?} does not read as {to}")),
            }
            .map_err(|e| e.to_string())
        }
        (_, DType::I64) => {
            let ints: Option<Vec<i64>> = b
                .chunks_exact(narrow.size_of())
                .map(|c| narrow.int(c))
                .collect();
            match ints {
                Some(v) => Value::from_i64(shape, v),
                None => return Err(format!("{narrow:?} does not read as {to}")),
            }
        }
        _ => return Err(format!("{narrow:?} does not read as {to}")),
    };
    value.map_err(|e| e.to_string())
}

/// The inverse of [`value_bytes`]: `b` must hold exactly `shape`'s elements of `dtype`.
pub(crate) fn bytes_value(
    dtype: DType,
    shape: &[usize],
    b: &[u8],
) -> std::result::Result<Value, String> {
    let chunks = |n: usize| b.chunks_exact(n);
    let value = match dtype {
        DType::F32 => Value::from_f32(
            shape,
            chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                .collect(),
        ),
        DType::F64 => Value::from_f64(
            shape,
            chunks(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        DType::I64 => Value::from_i64(
            shape,
            chunks(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        DType::Bool => ndarray::ArrayD::from_shape_vec(
            ndarray::IxDyn(shape),
            b.iter().map(|&x| x != 0).collect(),
        )
        .map(Value::Bool)
        .map_err(|_| ferroflow_core::Error::DataShape {
            shape: shape.to_vec(),
            len: b.len(),
        }),
    };
    value.map_err(|e| e.to_string())
}

/// Writes a checkpoint atomically: the tensors are produced one at a time by `next_tensor`
/// (name, dtype, shape known up front from `specs`), streamed to a temporary file that is fsynced and
/// renamed over `path`. A failure at any point leaves `path` as it was.
pub fn write_checkpoint(
    path: &Path,
    specs: &[(String, DType, Vec<usize>)],
    mut next_tensor: impl FnMut(usize) -> Result<Value>,
) -> Result<()> {
    write_checkpoint_inner(path, specs, &mut next_tensor, None)
}

pub(crate) fn write_checkpoint_inner(
    path: &Path,
    specs: &[(String, DType, Vec<usize>)],
    next_tensor: &mut dyn FnMut(usize) -> Result<Value>,
    fail_after_bytes: Option<u64>,
) -> Result<()> {
    // Entries with offsets come from the shapes alone; checksums are filled in as tensors stream by,
    // so the header is written last, at the front, into space reserved for it.
    let mut entries = Vec::with_capacity(specs.len());
    let mut offset = 0u64;
    for (name, dtype, shape) in specs {
        let n = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .and_then(|n| n.checked_mul(dtype.size_of() as u64));
        let len = n.ok_or_else(|| IoError::Corrupt {
            path: path.into(),
            message: format!("tensor {name} is too large"),
        })?;
        entries.push(TensorEntry {
            name: name.clone(),
            dtype: *dtype,
            shape: shape.iter().map(|&d| d as u64).collect(),
            offset,
            len,
            crc32c: 0,
        });
        offset += len;
    }
    let header_len = bincode::serialized_size(&Header {
        entries: entries.clone(),
    })
    .map_err(|e| IoError::Corrupt {
        path: path.into(),
        message: e.to_string(),
    })?;
    let tmp = temp_path(path);
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = FailingWriter {
            inner: std::io::BufWriter::new(file),
            left: fail_after_bytes,
        };
        let preamble = 8 + 4 + 8;
        let data_start = preamble + header_len + 4;
        w.seek_data(data_start).map_err(io_err(&tmp))?;
        for (i, e) in entries.iter_mut().enumerate() {
            let v = next_tensor(i)?;
            if v.dtype() != e.dtype
                || v.shape().iter().map(|&d| d as u64).collect::<Vec<_>>() != e.shape
            {
                return Err(IoError::Corrupt {
                    path: path.into(),
                    message: format!("tensor {} changed shape while saving", e.name),
                });
            }
            let bytes = value_bytes(&v);
            e.crc32c = crc32c::crc32c(&bytes);
            w.write_all(&bytes).map_err(io_err(&tmp))?;
        }
        let header = bincode::serialize(&Header {
            entries: entries.clone(),
        })
        .map_err(|e| IoError::Corrupt {
            path: path.into(),
            message: e.to_string(),
        })?;
        w.seek_data(0).map_err(io_err(&tmp))?;
        w.write_all(&MAGIC).map_err(io_err(&tmp))?;
        w.write_all(&VERSION.to_le_bytes()).map_err(io_err(&tmp))?;
        w.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io_err(&tmp))?;
        w.write_all(&header).map_err(io_err(&tmp))?;
        w.write_all(&crc32c::crc32c(&header).to_le_bytes())
            .map_err(io_err(&tmp))?;
        let file = w.inner.into_inner().map_err(|e| IoError::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err(&tmp))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(path);
    Ok(())
}

/// A writer that fails after a number of bytes: how tests simulate a save killed midway.
struct FailingWriter<W: Write + Seek> {
    inner: W,
    left: Option<u64>,
}

impl<W: Write + Seek> FailingWriter<W> {
    fn seek_data(&mut self, pos: u64) -> std::io::Result<()> {
        self.inner.seek(SeekFrom::Start(pos)).map(|_| ())
    }
}

impl<W: Write + Seek> Write for FailingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(left) = self.left.as_mut() {
            if *left < buf.len() as u64 {
                return Err(std::io::Error::other("simulated crash while saving"));
            }
            *left -= buf.len() as u64;
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a ferroflow checkpoint: the header is verified on open; tensors are read on demand.
pub struct CheckpointReader {
    path: PathBuf,
    file: File,
    entries: Vec<TensorEntry>,
    data_start: u64,
}

impl CheckpointReader {
    /// Opens and verifies the header of `path` (a checkpoint file, not a prefix).
    pub fn open(path: &Path) -> Result<Self> {
        let corrupt = |m: String| IoError::Corrupt {
            path: path.into(),
            message: m,
        };
        let (mut file, file_len) = crate::files::open_regular(path, "checkpoint")?;
        let mut pre = [0u8; 20];
        file.read_exact(&mut pre).map_err(|_| {
            corrupt(format!(
                "file of {file_len} bytes is too short for a header"
            ))
        })?;
        if pre[..8] != MAGIC {
            return Err(corrupt(
                "bad magic number (not a ferroflow checkpoint)".into(),
            ));
        }
        let version = u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]);
        if version != VERSION {
            return Err(corrupt(format!(
                "format version {version} is not supported (this build reads version {VERSION})"
            )));
        }
        let header_len = u64::from_le_bytes(pre[12..20].try_into().unwrap_or([0; 8]));
        if header_len > MAX_HEADER || header_len + 24 > file_len {
            return Err(corrupt(format!(
                "header length {header_len} does not fit a file of {file_len} bytes"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(io_err(path))?;
        let mut crc = [0u8; 4];
        file.read_exact(&mut crc).map_err(io_err(path))?;
        if crc32c::crc32c(&header) != u32::from_le_bytes(crc) {
            return Err(corrupt("header checksum mismatch".into()));
        }
        use bincode::Options;
        let h: Header = bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .allow_trailing_bytes()
            .with_limit(header_len)
            .deserialize(&header)
            .map_err(|e| corrupt(format!("undecodable header: {e}")))?;
        let data_start = 24 + header_len;
        let data_len = file_len - data_start;
        let mut expected_end = 0u64;
        for e in &h.entries {
            let n = e
                .shape
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .and_then(|n| n.checked_mul(e.dtype.size_of() as u64));
            if n != Some(e.len) {
                return Err(corrupt(format!(
                    "tensor {} has length {} for shape {:?} of {}",
                    e.name, e.len, e.shape, e.dtype
                )));
            }
            if e.offset != expected_end
                || e.offset.checked_add(e.len).is_none_or(|end| end > data_len)
            {
                return Err(corrupt(format!(
                    "tensor {} at offset {} (+{}) lies outside the {} data bytes",
                    e.name, e.offset, e.len, data_len
                )));
            }
            expected_end = e.offset + e.len;
        }
        if expected_end != data_len {
            return Err(corrupt(format!(
                "{} data bytes, but the tensors cover {}",
                data_len, expected_end
            )));
        }
        Ok(CheckpointReader {
            path: path.into(),
            file,
            entries: h.entries,
            data_start,
        })
    }

    /// The tensor entries (name, dtype, shape) in file order.
    pub fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }

    /// Reads and verifies one tensor; `None` when the key is absent.
    pub fn read(&mut self, key: &str) -> Result<Option<Value>> {
        let Some(e) = self.entries.iter().find(|e| e.name == key).cloned() else {
            return Ok(None);
        };
        let corrupt = |m: String| IoError::Corrupt {
            path: self.path.clone(),
            message: m,
        };
        self.file
            .seek(SeekFrom::Start(self.data_start + e.offset))
            .map_err(io_err(&self.path))?;
        let mut buf = vec![0u8; e.len as usize];
        self.file.read_exact(&mut buf).map_err(io_err(&self.path))?;
        if crc32c::crc32c(&buf) != e.crc32c {
            return Err(corrupt(format!("checksum mismatch in tensor {key}")));
        }
        let shape: Vec<usize> = e.shape.iter().map(|&d| d as usize).collect();
        bytes_value(e.dtype, &shape, &buf)
            .map(Some)
            .map_err(corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<(String, DType, Vec<usize>)> {
        vec![
            ("a".into(), DType::F32, vec![2, 2]),
            ("b/c".into(), DType::I64, vec![3]),
            ("flag".into(), DType::Bool, vec![]),
        ]
    }

    fn values(i: usize) -> Result<Value> {
        Ok(match i {
            0 => Value::from_f32(&[2, 2], vec![1.0, -2.5, 3.25, 0.0]).unwrap(),
            1 => Value::from_i64(&[3], vec![7, -8, i64::MAX]).unwrap(),
            _ => Value::from(true),
        })
    }

    #[test]
    fn round_trip_and_every_byte_flip_and_truncation_is_detected() {
        let dir = std::env::temp_dir().join(format!("ff-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("small.ffckpt");
        write_checkpoint(&path, &specs(), values).unwrap();
        let mut r = CheckpointReader::open(&path).unwrap();
        for (i, (name, ..)) in specs().iter().enumerate() {
            assert_eq!(r.read(name).unwrap().unwrap(), values(i).unwrap());
        }
        assert!(r.read("missing").unwrap().is_none());
        let bytes = std::fs::read(&path).unwrap();
        let bad = dir.join("bad.ffckpt");
        let read_all = |p: &Path| -> Result<()> {
            let mut r = CheckpointReader::open(p)?;
            for (name, ..) in specs() {
                r.read(&name)?;
            }
            Ok(())
        };
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            std::fs::write(&bad, &b).unwrap();
            assert!(read_all(&bad).is_err(), "flip of byte {i} went unnoticed");
        }
        for n in 0..bytes.len() {
            std::fs::write(&bad, &bytes[..n]).unwrap();
            assert!(
                read_all(&bad).is_err(),
                "truncation to {n} bytes went unnoticed"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_save_that_fails_midway_leaves_the_previous_file() {
        let dir = std::env::temp_dir().join(format!("ff-ckpt-fail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.ffckpt");
        write_checkpoint(&path, &specs(), values).unwrap();
        let before = std::fs::read(&path).unwrap();
        for fail_after in [0u64, 5, 20, 40] {
            let other = |i: usize| -> Result<Value> {
                Ok(match i {
                    0 => Value::from_f32(&[2, 2], vec![9.0; 4]).unwrap(),
                    i => values(i)?,
                })
            };
            let e = write_checkpoint_inner(&path, &specs(), &mut { other }, Some(fail_after))
                .unwrap_err();
            assert!(e.to_string().contains("simulated crash"), "{e}");
            assert_eq!(std::fs::read(&path).unwrap(), before);
            let mut r = CheckpointReader::open(&path).unwrap();
            assert_eq!(r.read("a").unwrap().unwrap(), values(0).unwrap());
        }
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files are removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
