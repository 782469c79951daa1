//! Writing TensorFlow V2 checkpoints: the data shard and the `.index` SSTable, laid out as TF's
//! `BundleWriter` lays them out, and switched into place as one pair (see `switch.rs`).

use super::switch::{self, SaveStep};
use super::{
    masked_crc32c, BundleEntry, BundleHeader, DimProto, ShapeProto, VersionDef, TABLE_MAGIC,
};
use crate::{IoError, Result};
use ferroflow_core::{DType, Value};

/// The TF `DataType` enum value of a ferroflow dtype.
pub(crate) fn tf_dtype(d: DType) -> i32 {
    match d {
        DType::F32 => 1,
        DType::F64 => 2,
        DType::I64 => 9,
        DType::Bool => 10,
    }
}

/// Builds one SSTable block from sorted entries: prefix-compressed, a restart every 16 entries, then the
/// restart array and its count.
fn build_block(entries: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut restarts = Vec::new();
    let mut prev: &[u8] = &[];
    for (i, (key, value)) in entries.iter().enumerate() {
        let shared = if i % 16 == 0 {
            restarts.push(out.len() as u32);
            0
        } else {
            prev.iter()
                .zip(key.iter())
                .take_while(|(a, b)| a == b)
                .count()
        };
        for n in [shared, key.len() - shared, value.len()] {
            prost::encoding::encode_varint(n as u64, &mut out);
        }
        out.extend_from_slice(key.get(shared..).unwrap_or(&[]));
        out.extend_from_slice(value);
        prev = key;
    }
    if restarts.is_empty() {
        restarts.push(0);
    }
    for r in &restarts {
        out.extend_from_slice(&r.to_le_bytes());
    }
    out.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
    out
}

/// Appends a block with its trailer (the compression type, then the masked CRC-32C of contents and
/// type) and returns its handle.
fn append_block(file: &mut Vec<u8>, contents: &[u8], compression: u8) -> (u64, u64) {
    let handle = (file.len() as u64, contents.len() as u64);
    file.extend_from_slice(contents);
    file.push(compression);
    let crc = masked_crc32c(file.get(handle.0 as usize..).unwrap_or(&[]));
    file.extend_from_slice(&crc.to_le_bytes());
    handle
}

/// An index file around one data block: the block's `contents` as given with `compression` (0 none,
/// 1 snappy), the empty metaindex block, the index block mapping `last_key` to the data block, and
/// the footer, every checksum valid. The writer passes a block it built; the `tf_checkpoint` fuzz
/// target passes mutated contents, so that they reach the block decoders behind the checksums.
#[doc(hidden)]
pub fn index_around_block(contents: &[u8], compression: u8, last_key: &[u8]) -> Vec<u8> {
    let mut index = Vec::new();
    let data_handle = append_block(&mut index, contents, compression);
    let meta_handle = append_block(&mut index, &build_block(&[]), 0);
    let mut handle_bytes = Vec::new();
    encode_handle(data_handle, &mut handle_bytes);
    let index_handle = append_block(&mut index, &build_block(&[(last_key, handle_bytes)]), 0);
    let mut footer = Vec::with_capacity(48);
    encode_handle(meta_handle, &mut footer);
    encode_handle(index_handle, &mut footer);
    footer.resize(40, 0);
    footer.extend_from_slice(&TABLE_MAGIC.to_le_bytes());
    index.extend_from_slice(&footer);
    index
}

fn encode_handle((offset, size): (u64, u64), out: &mut Vec<u8>) {
    prost::encoding::encode_varint(offset, out);
    prost::encoding::encode_varint(size, out);
}

/// Writes `tensors` as a TensorFlow V2 checkpoint: `<prefix>.data-00000-of-00001` (the tensors' bytes in
/// key order) and `<prefix>.index` (an SSTable of `BundleEntryProto`s under the sorted keys, after the
/// `BundleHeaderProto` under the empty key), exactly as TF's `BundleWriter` lays them out, so that
/// `tf.train.Saver.restore` and `tf.train.load_checkpoint` read them. The two files are written under
/// temporary names, fsynced, and switched into place as one pair: a reader of `prefix` sees the old
/// checkpoint or the new one at every instant, even when the save is killed (see `switch.rs`).
pub fn write_tf_checkpoint(prefix: &str, tensors: &[(String, Value)]) -> Result<()> {
    write_tf_checkpoint_with(prefix, tensors, &mut |_| true)
}

/// [`write_tf_checkpoint`], asking `go_on` before each step of the save (the fault-injection hook of
/// the tests).
pub(crate) fn write_tf_checkpoint_with(
    prefix: &str,
    tensors: &[(String, Value)],
    go_on: &mut dyn FnMut(SaveStep) -> bool,
) -> Result<()> {
    let mut sorted: Vec<&(String, Value)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let index_path = switch::index_path(prefix);
    if let Some((a, _)) = sorted
        .iter()
        .zip(sorted.iter().skip(1))
        .find(|(a, b)| a.0 == b.0)
    {
        return Err(IoError::Corrupt {
            path: index_path,
            message: format!("key {} is given twice", a.0),
        });
    }
    if let Some((k, _)) = sorted.iter().find(|(k, _)| k.is_empty()) {
        return Err(IoError::Corrupt {
            path: index_path,
            message: format!("the empty key {k:?} is reserved for the bundle header"),
        });
    }
    let mut data = Vec::new();
    let mut entries: Vec<(&[u8], Vec<u8>)> = Vec::with_capacity(sorted.len() + 1);
    let header = BundleHeader {
        num_shards: 1,
        endianness: 0,
        version: Some(VersionDef {
            producer: 1,
            min_consumer: 0,
        }),
    };
    entries.push((b"", prost::Message::encode_to_vec(&header)));
    for (key, value) in &sorted {
        let bytes = crate::checkpoint::value_bytes(value);
        let entry = BundleEntry {
            dtype: tf_dtype(value.dtype()),
            shape: Some(ShapeProto {
                dim: value
                    .shape()
                    .iter()
                    .map(|&d| DimProto { size: d as i64 })
                    .collect(),
                unknown_rank: false,
            }),
            shard_id: 0,
            offset: data.len() as i64,
            size: bytes.len() as i64,
            crc32c: masked_crc32c(&bytes),
            slices: Vec::new(),
        };
        data.extend_from_slice(&bytes);
        entries.push((key.as_bytes(), prost::Message::encode_to_vec(&entry)));
    }
    // The index block maps a key >= the data block's last key to that block: LevelDB's short successor
    // of the last key (its first byte below 0xff incremented, the rest cut), as TF writes it.
    let mut last = entries.last().map(|(k, _)| k.to_vec()).unwrap_or_default();
    if let Some(i) = last.iter().position(|&b| b != 0xff) {
        last.truncate(i + 1);
        if let Some(b) = last.last_mut() {
            *b += 1;
        }
    }
    let index = index_around_block(&build_block(&entries), 0, &last);

    let data_path = switch::shard_path(prefix, 0, 1);
    if let Some(dir) = data_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| IoError::Io {
            path: dir.into(),
            source,
        })?;
    }
    crate::files::recover_dir(&data_path);
    switch::save_pair(prefix, &data, &index, go_on)
}
