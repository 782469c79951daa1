//! Reading TensorFlow V2 checkpoints ("tensor bundles", tf1-reference.md §10): the `.index` SSTable
//! (footer, blocks with masked CRC-32C, prefix-compressed entries, optional snappy) mapping keys to
//! `BundleEntryProto`s, and the `.data-SSSSS-of-NNNNN` shards holding the tensor bytes.

use crate::{IoError, Result};
use ferroflow_core::{DType, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use stored::stored;

pub mod object_graph;
mod partitions;
mod stored;
mod strings;
mod switch;
mod write;

pub(crate) use switch::finish_switches;
pub(crate) use write::tf_dtype;
pub use write::{index_around_block, write_tf_checkpoint};

const TABLE_MAGIC: u64 = 0xdb47_7524_8b80_fb57;
const MAX_INDEX: u64 = 1 << 30;

/// `BundleHeaderProto`.
#[derive(Clone, PartialEq, prost::Message)]
struct BundleHeader {
    #[prost(int32, tag = "1")]
    num_shards: i32,
    #[prost(int32, tag = "2")]
    endianness: i32,
    #[prost(message, optional, tag = "3")]
    version: Option<VersionDef>,
}

/// `VersionDef`: TF's bundle writer records producer 1.
#[derive(Clone, PartialEq, prost::Message)]
struct VersionDef {
    #[prost(int32, tag = "1")]
    producer: i32,
    #[prost(int32, tag = "2")]
    min_consumer: i32,
}

/// TF's `TensorShapeProto.Dim` (the size only; -1 is unknown).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DimProto {
    #[prost(int64, tag = "1")]
    pub(crate) size: i64,
}

/// TF's `TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ShapeProto {
    #[prost(message, repeated, tag = "2")]
    pub(crate) dim: Vec<DimProto>,
    #[prost(bool, tag = "3")]
    pub(crate) unknown_rank: bool,
}

/// `BundleEntryProto`.
#[derive(Clone, PartialEq, prost::Message)]
struct BundleEntry {
    #[prost(int32, tag = "1")]
    dtype: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<ShapeProto>,
    #[prost(int32, tag = "3")]
    shard_id: i32,
    #[prost(int64, tag = "4")]
    offset: i64,
    #[prost(int64, tag = "5")]
    size: i64,
    #[prost(fixed32, tag = "6")]
    crc32c: u32,
    /// Set on the entry of a partitioned variable: its partitions, stored under keys of their own.
    #[prost(message, repeated, tag = "7")]
    slices: Vec<SliceProto>,
}

/// TF's `TensorSliceProto`: one extent per dimension.
#[derive(Clone, PartialEq, prost::Message)]
struct SliceProto {
    #[prost(message, repeated, tag = "1")]
    extent: Vec<ExtentProto>,
}

/// TF's `TensorSliceProto.Extent`; no length means the whole dimension.
#[derive(Clone, PartialEq, prost::Message)]
struct ExtentProto {
    #[prost(int64, tag = "1")]
    start: i64,
    #[prost(int64, optional, tag = "2")]
    length: Option<i64>,
}

/// One tensor of a TF checkpoint: its key, dtype (as ferroflow reads it) and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TfTensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// TF's masked CRC-32C.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// A reader over a TF checkpoint prefix.
pub struct TfCheckpointReader {
    prefix: String,
    entries: BTreeMap<String, BundleEntry>,
    /// Entries under keys that are not text: the partitions of partitioned variables (TF encodes
    /// the variable's name and the slice into the key; see `partitions.rs`).
    slice_entries: BTreeMap<Vec<u8>, BundleEntry>,
    num_shards: i32,
    /// The data file of an unfinished switch (a save killed between its renames), read in place
    /// of shard 0 of 1 while it exists.
    pending_data: Option<PathBuf>,
}

impl TfCheckpointReader {
    /// True when `<prefix>.index` exists (or the index of a save switching into place).
    pub fn exists(prefix: &str) -> bool {
        switch::resolve(prefix).is_ok_and(|p| p.index.is_file())
    }

    /// Opens `<prefix>.index`, verifying every block's checksum and every entry.
    pub fn open(prefix: &str) -> Result<Self> {
        let switch::PairPaths {
            index: path,
            pending_data,
        } = switch::resolve(prefix)?;
        let corrupt = |m: String| IoError::Corrupt {
            path: path.clone(),
            message: m,
        };
        let bytes = crate::files::read_bounded(&path, MAX_INDEX, "checkpoint index")?;
        if bytes.len() < 48 {
            return Err(corrupt("too short for an SSTable footer".into()));
        }
        let footer = bytes.get(bytes.len() - 48..).unwrap_or(&[]);
        if le_u64(footer, 40) != Some(TABLE_MAGIC) {
            return Err(corrupt(
                "bad SSTable magic (not a TensorFlow checkpoint index)".into(),
            ));
        }
        let mut pos = 0;
        let mut handle = || -> Option<(u64, u64)> {
            Some((varint(footer, &mut pos)?, varint(footer, &mut pos)?))
        };
        let meta = handle().ok_or_else(|| corrupt("bad metaindex handle".into()))?;
        let index = handle().ok_or_else(|| corrupt("bad index handle".into()))?;
        // The handles are zero-padded to 40 bytes; the (empty) metaindex block is verified too.
        if footer
            .get(pos..40)
            .is_none_or(|pad| pad.iter().any(|&b| b != 0))
        {
            return Err(corrupt("footer padding is not zero".into()));
        }
        parse_block(&read_block(&bytes, meta).map_err(&corrupt)?).map_err(&corrupt)?;
        let index_block = read_block(&bytes, index).map_err(&corrupt)?;
        let mut entries = BTreeMap::new();
        let mut slice_entries = BTreeMap::new();
        let mut header = None;
        for (_, value) in parse_block(&index_block).map_err(&corrupt)? {
            let mut p = 0;
            let h = (|| Some((varint(&value, &mut p)?, varint(&value, &mut p)?)))()
                .ok_or_else(|| corrupt("bad data block handle".into()))?;
            let block = read_block(&bytes, h).map_err(&corrupt)?;
            for (key, value) in parse_block(&block).map_err(&corrupt)? {
                if key.is_empty() {
                    header = Some(
                        <BundleHeader as prost::Message>::decode(value.as_slice())
                            .map_err(|e| corrupt(format!("bad bundle header: {e}")))?,
                    );
                } else {
                    let e =
                        <BundleEntry as prost::Message>::decode(value.as_slice()).map_err(|e| {
                            corrupt(format!(
                                "bad entry for {}: {e}",
                                String::from_utf8_lossy(&key)
                            ))
                        })?;
                    match String::from_utf8(key) {
                        Ok(name) => {
                            entries.insert(name, e);
                        }
                        Err(raw) => {
                            slice_entries.insert(raw.into_bytes(), e);
                        }
                    }
                }
            }
        }
        let header = header.ok_or_else(|| corrupt("no bundle header (empty key)".into()))?;
        if header.endianness != 0 {
            return Err(corrupt("big-endian checkpoints are not supported".into()));
        }
        Ok(TfCheckpointReader {
            prefix: prefix.into(),
            entries,
            slice_entries,
            num_shards: header.num_shards.max(1),
            pending_data,
        })
    }

    /// The tensors ferroflow reads, sorted by key (see [`TfCheckpointReader::unreadable`] for the
    /// others).
    pub fn tensors(&self) -> Result<Vec<TfTensorInfo>> {
        self.entries
            .iter()
            .filter(|(_, e)| stored(e).is_ok())
            .map(|(k, e)| self.info(k, e))
            .collect()
    }

    /// The entries ferroflow does not read, with the reason: string tensors (such as TF2's
    /// `_CHECKPOINTABLE_OBJECT_GRAPH`) and other dtypes. They never keep the
    /// other tensors from being read.
    pub fn unreadable(&self) -> Vec<(String, String)> {
        let out: Vec<(String, String)> = self
            .entries
            .iter()
            .filter_map(|(k, e)| stored(e).err().map(|why| (k.clone(), why)))
            .collect();
        out
    }

    fn info(&self, name: &str, e: &BundleEntry) -> Result<TfTensorInfo> {
        let dtype = stored(e)
            .map_err(|message| IoError::Unsupported {
                path: switch::index_path(&self.prefix),
                key: name.into(),
                message,
            })?
            .dtype();
        Ok(TfTensorInfo {
            name: name.into(),
            dtype,
            shape: self.info_shape(name, e)?,
        })
    }

    /// The shape entry `e` (named `name`) records.
    fn info_shape(&self, name: &str, e: &BundleEntry) -> Result<Vec<usize>> {
        e.shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| usize::try_from(d.size))
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|_| IoError::Corrupt {
                path: switch::index_path(&self.prefix),
                message: format!("tensor {name} has a negative dimension"),
            })
            .map(Option::unwrap_or_default)
    }

    /// Reads one tensor (checksum verified); `None` when the key is absent.
    pub fn read(&self, key: &str) -> Result<Option<Value>> {
        let Some(e) = self.entries.get(key) else {
            return Ok(None);
        };
        let info = self.info(key, e)?;
        if !e.slices.is_empty() {
            return partitions::assemble(self, key, e, &info.shape).map(Some);
        }
        self.read_entry(key, e, &info.shape).map(Some)
    }

    /// The tensor stored in entry `e` (named `key` in errors), of `shape`.
    fn read_entry(&self, key: &str, e: &BundleEntry, shape: &[usize]) -> Result<Value> {
        let kind = stored(e).map_err(|message| IoError::Unsupported {
            path: self.shard_of(e),
            key: key.into(),
            message,
        })?;
        let n = Value::checked_len(shape).map_err(|err| IoError::Corrupt {
            path: self.shard_of(e),
            message: err.to_string(),
        })?;
        let (buf, path) = self.raw_bytes(key, e, Some(n.saturating_mul(kind.bytes())))?;
        let corrupt = |m: String| IoError::Corrupt { path, message: m };
        if masked_crc32c(&buf) != e.crc32c {
            return Err(corrupt(format!("checksum mismatch in tensor {key}")));
        }
        stored::decode(kind, shape, &buf).map_err(corrupt)
    }

    /// Reads a string tensor (TF's `DT_STRING`, such as TF2's `_CHECKPOINTABLE_OBJECT_GRAPH`) as
    /// the bytes of each element, checksums verified; `None` when the key is absent. Any other
    /// dtype is `IoError::Unsupported`.
    pub fn read_strings(&self, key: &str) -> Result<Option<Vec<Vec<u8>>>> {
        let Some(e) = self.entries.get(key) else {
            return Ok(None);
        };
        if e.dtype != strings::DT_STRING {
            return Err(IoError::Unsupported {
                path: self.shard_of(e),
                key: key.into(),
                message: format!("TF dtype {}, not a string tensor", e.dtype),
            });
        }
        let shape = self.info_shape(key, e)?;
        let (buf, path) = self.raw_bytes(key, e, None)?;
        let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        n.ok_or_else(|| "its element count overflows".to_string())
            .and_then(|n| strings::decode(&buf, n, e.crc32c))
            .map(Some)
            .map_err(|m| IoError::Corrupt {
                path,
                message: format!("string tensor {key}: {m}"),
            })
    }

    /// The data file entry `e` lies in.
    fn shard_of(&self, e: &BundleEntry) -> PathBuf {
        match &self.pending_data {
            Some(p) if e.shard_id == 0 && self.num_shards == 1 => p.clone(),
            _ => switch::shard_path(&self.prefix, e.shard_id, self.num_shards),
        }
    }

    /// The stored bytes of entry `e` (named `key` in errors), which must be `expected` bytes when
    /// given, with the data file they come from; checked against the file's length before anything
    /// is allocated.
    fn raw_bytes(
        &self,
        key: &str,
        e: &BundleEntry,
        expected: Option<usize>,
    ) -> Result<(Vec<u8>, PathBuf)> {
        let path = self.shard_of(e);
        let corrupt = |m: String| IoError::Corrupt {
            path: path.clone(),
            message: m,
        };
        if e.size < 0 || e.offset < 0 || expected.is_some_and(|n| e.size as u64 != n as u64) {
            return Err(corrupt(format!(
                "tensor {key}: size {} does not fit its shape",
                e.size
            )));
        }
        use std::io::{Read, Seek, SeekFrom};
        let (mut f, file_len) = crate::files::open_regular(&path, "checkpoint data file")?;
        if (e.offset as u64)
            .checked_add(e.size as u64)
            .is_none_or(|end| end > file_len)
        {
            return Err(corrupt(format!(
                "tensor {key} lies beyond the end of the data file"
            )));
        }
        let io = |source| IoError::Io {
            path: path.clone(),
            source,
        };
        f.seek(SeekFrom::Start(e.offset as u64)).map_err(io)?;
        let mut buf = vec![0u8; e.size as usize];
        f.read_exact(&mut buf).map_err(io)?;
        Ok((buf, path))
    }
}

/// Reads a block: contents, a compression byte (0 none, 1 snappy) and the masked CRC-32C of both.
fn read_block(file: &[u8], (offset, size): (u64, u64)) -> std::result::Result<Vec<u8>, String> {
    let start = usize::try_from(offset).map_err(|_| "block offset overflows")?;
    let size = usize::try_from(size).map_err(|_| "block size overflows")?;
    let end = start
        .checked_add(size)
        .and_then(|e| e.checked_add(5))
        .filter(|&e| e <= file.len())
        .ok_or("block lies outside the file")?;
    let whole = file.get(start..end).ok_or("block lies outside the file")?;
    let (with_type, crc) = whole.split_at(size + 1);
    let (contents, kind) = with_type.split_at(size);
    if Some(masked_crc32c(with_type)) != le_u32(crc, 0) {
        return Err(format!("block at offset {offset}: checksum mismatch"));
    }
    match kind.first().copied().unwrap_or(0xff) {
        0 => Ok(contents.to_vec()),
        1 => {
            // Snappy's densest element, a 3-byte copy of 64 bytes, bounds what a block can expand
            // to: a larger declared length is a lie, refused before anything is allocated.
            let claimed = snap::raw::decompress_len(contents)
                .map_err(|e| format!("bad snappy block: {e}"))?;
            let bound = contents.len().saturating_mul(22).saturating_add(64);
            if claimed > bound {
                return Err(format!(
                    "bad snappy block at offset {offset}: claims {claimed} bytes from {}",
                    contents.len()
                ));
            }
            snap::raw::Decoder::new()
                .decompress_vec(contents)
                .map_err(|e| format!("bad snappy block: {e}"))
        }
        t => Err(format!("unknown block compression type {t}")),
    }
}

/// A block's (key, value) entries.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Parses a block's prefix-compressed entries into (key, value) pairs.
fn parse_block(b: &[u8]) -> std::result::Result<Entries, String> {
    let n = b.len().checked_sub(4).ok_or("block too short")?;
    let restarts = le_u32(b, n).ok_or("block too short")? as usize;
    let data_end = restarts
        .checked_mul(4)
        .and_then(|r| n.checked_sub(r))
        .ok_or("bad restart count")?;
    let entries = b.get(..data_end).ok_or("bad restart count")?;
    let mut out = Vec::new();
    let mut pos = 0;
    let mut key: Vec<u8> = Vec::new();
    while pos < data_end {
        let field = |pos: &mut usize| {
            varint(entries, pos)
                .and_then(|v| usize::try_from(v).ok())
                .ok_or("truncated entry")
        };
        let shared = field(&mut pos)?;
        let non_shared = field(&mut pos)?;
        let value_len = field(&mut pos)?;
        if shared > key.len() {
            return Err("entry shares more than the previous key".into());
        }
        let suffix_end = pos
            .checked_add(non_shared)
            .filter(|&e| e <= data_end)
            .ok_or("entry key beyond block")?;
        let value_end = suffix_end
            .checked_add(value_len)
            .filter(|&e| e <= data_end)
            .ok_or("entry value beyond block")?;
        key.truncate(shared);
        key.extend_from_slice(entries.get(pos..suffix_end).unwrap_or(&[]));
        out.push((
            key.clone(),
            entries.get(suffix_end..value_end).unwrap_or(&[]).to_vec(),
        ));
        pos = value_end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block as it lies in a file: contents, the compression byte and the masked CRC of both.
    fn framed(contents: &[u8], kind: u8) -> Vec<u8> {
        let mut b = contents.to_vec();
        b.push(kind);
        let crc = masked_crc32c(&b);
        b.extend(crc.to_le_bytes());
        b
    }

    #[test]
    fn a_snappy_block_that_claims_more_than_it_can_hold_is_refused() {
        // Varint 2^31 (0x80 0x80 0x80 0x80 0x08), then a 1-byte literal: 2 GiB declared by 7 bytes,
        // with a valid checksum. Snappy expands at most 64 bytes per 3, so 7 bytes hold at most 149.
        let contents = [0x80, 0x80, 0x80, 0x80, 0x08, 0x00, b'x'];
        let file = framed(&contents, 1);
        let e = read_block(&file, (0, contents.len() as u64)).unwrap_err();
        assert!(e.contains("claims 2147483648 bytes from 7"), "{e}");
        // An honest block of the same shape decompresses: varint 1, a 1-byte literal "x".
        let ok = [0x01, 0x00, b'x'];
        assert_eq!(read_block(&framed(&ok, 1), (0, 3)).unwrap(), b"x");
        // The densest honest block: 64 bytes from a literal and a 3-byte copy.
        let mut dense = vec![65, 0x00, b'a'];
        dense.extend([(63 << 2) | 2, 1, 0]);
        let out = read_block(&framed(&dense, 1), (0, dense.len() as u64)).unwrap();
        assert_eq!(out, vec![b'a'; 65]);
    }
}
