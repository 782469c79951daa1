//! Partitioned variables: TF saves a variable split into partitions (`tf.compat.v1.get_variable`
//! with a `partitioner`) as one entry under the variable's name that lists the slices, and one
//! entry per slice under a binary key: TF's `EncodeTensorNameSlice`, the ordered-code encoding of
//! `(0, name, rank, start₀, length₀, start₁, length₁, ...)` with a whole dimension written as start
//! 0 and length -1. Reading the variable reads each slice and places it in the whole tensor.

use super::{BundleEntry, TfCheckpointReader};
use crate::{IoError, Result};
use ferroflow_core::Value;
use ndarray::{ArrayD, Slice};
use std::path::PathBuf;

/// Ordered code of an unsigned number: its length in bytes, then its big-endian bytes.
fn num_increasing(out: &mut Vec<u8>, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    out.push((8 - skip) as u8);
    out.extend_from_slice(bytes.get(skip..).unwrap_or_default());
}

/// Ordered code of a string: 0x00 and 0xff escaped, then the terminator 0x00 0x01.
fn string(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        match b {
            0 => out.extend_from_slice(&[0, 0xff]),
            0xff => out.extend_from_slice(&[0xff, 0]),
            b => out.push(b),
        }
    }
    out.extend_from_slice(&[0, 1]);
}

/// Ordered code of a signed number: one byte for -64..64, else the big-endian two's complement with
/// a header of as many leading one bits as the encoding has bytes.
fn signed_increasing(out: &mut Vec<u8>, v: i64) {
    let x = if v < 0 { !(v as u64) } else { v as u64 };
    if x < 64 {
        out.push(0x80 ^ (v as u8));
        return;
    }
    const HEADER: [[u8; 2]; 11] = [
        [0, 0],
        [0x80, 0],
        [0xc0, 0],
        [0xe0, 0],
        [0xf0, 0],
        [0xf8, 0],
        [0xfc, 0],
        [0xfe, 0],
        [0xff, 0],
        [0xff, 0x80],
        [0xff, 0xc0],
    ];
    // 2 to 10 bytes: 7 payload bits per byte of length, the header bits included.
    let len = (64 - x.leading_zeros() as usize) / 7 + 1;
    let header = HEADER.get(len).copied().unwrap_or([0xff, 0xc0]);
    let sign = if v < 0 { 0xff } else { 0 };
    let mut buf = [sign; 10];
    for (b, byte) in buf.iter_mut().skip(2).zip(v.to_be_bytes()) {
        *b = byte;
    }
    let tail = buf
        .get_mut(10usize.saturating_sub(len)..)
        .unwrap_or_default();
    if let [first, second, ..] = tail {
        *first ^= header[0];
        *second ^= header[1];
    }
    out.extend_from_slice(tail);
}

/// TF's key of the slice of variable `name` with `(start, length)` per dimension (-1: all of it).
pub(super) fn slice_key(name: &str, extents: &[(i64, i64)]) -> Vec<u8> {
    let mut key = Vec::new();
    num_increasing(&mut key, 0);
    string(&mut key, name.as_bytes());
    num_increasing(&mut key, extents.len() as u64);
    for &(start, length) in extents {
        signed_increasing(&mut key, start);
        signed_increasing(&mut key, length);
    }
    key
}

/// Copies `part` into `whole` at `ranges` (start and length per axis).
fn place<T: Clone>(whole: &mut ArrayD<T>, part: &ArrayD<T>, ranges: &[(usize, usize)]) {
    let mut view = whole.slice_each_axis_mut(|ax| {
        let (start, len) = ranges.get(ax.axis.index()).copied().unwrap_or((0, 0));
        Slice::from(start..start + len)
    });
    view.assign(part);
}

/// Reads the partitioned variable `key` (entry `e`, the whole tensor's shape `shape`).
pub(super) fn assemble(
    r: &TfCheckpointReader,
    key: &str,
    e: &BundleEntry,
    shape: &[usize],
) -> Result<Value> {
    let corrupt = |message: String| IoError::Corrupt {
        path: PathBuf::from(format!("{}.index", r.prefix)),
        message,
    };
    let mut whole: Option<Value> = None;
    for (k, slice) in e.slices.iter().enumerate() {
        if slice.extent.len() > shape.len() {
            return Err(corrupt(format!(
                "partition {k} of {key} has too many dimensions"
            )));
        }
        let mut extents = Vec::with_capacity(shape.len());
        let mut ranges = Vec::with_capacity(shape.len());
        for (d, &size) in shape.iter().enumerate() {
            let (start, length) = match slice.extent.get(d) {
                Some(x) => (x.start, x.length.unwrap_or(-1)),
                None => (0, -1),
            };
            let (s, n) = if length < 0 {
                (0, size)
            } else {
                let s = usize::try_from(start).ok();
                let n = usize::try_from(length).ok();
                match (s, n) {
                    (Some(s), Some(n)) if s.checked_add(n).is_some_and(|end| end <= size) => (s, n),
                    _ => {
                        return Err(corrupt(format!(
                            "partition {k} of {key} lies outside its shape {shape:?}"
                        )))
                    }
                }
            };
            extents.push((if length < 0 { 0 } else { start }, length));
            ranges.push((s, n));
        }
        let part_entry = r
            .slice_entries
            .get(&slice_key(key, &extents))
            .ok_or_else(|| corrupt(format!("partition {k} of {key} is missing")))?;
        let part_shape: Vec<usize> = ranges.iter().map(|&(_, n)| n).collect();
        let part = r.read_entry(&format!("{key} (partition {k})"), part_entry, &part_shape)?;
        let whole = match &mut whole {
            Some(w) => w,
            None => whole.insert(
                Value::filled(part.dtype(), shape, 0.0).map_err(|e| corrupt(e.to_string()))?,
            ),
        };
        match (whole, &part) {
            (Value::F32(w), Value::F32(p)) => place(w, p, &ranges),
            (Value::F64(w), Value::F64(p)) => place(w, p, &ranges),
            (Value::I64(w), Value::I64(p)) => place(w, p, &ranges),
            (Value::Bool(w), Value::Bool(p)) => place(w, p, &ranges),
            _ => return Err(corrupt(format!("the partitions of {key} differ in dtype"))),
        }
    }
    whole.ok_or_else(|| corrupt(format!("{key} lists no partitions")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ordered code as TF writes it: 0 → `00`; "ab" → `61 62 00 01`; 2 → `01 02`; signed 0 →
    /// `80`, -1 → `7f`, 63 → `bf`, 64 → `c0 40` (two bytes: header `c0` over 0x0040), 300 →
    /// `c1 2c`.
    #[test]
    fn ordered_code_matches_tensorflows() {
        let mut b = Vec::new();
        num_increasing(&mut b, 0);
        string(&mut b, b"ab");
        num_increasing(&mut b, 2);
        for v in [0, -1, 63, 64, 300] {
            signed_increasing(&mut b, v);
        }
        assert_eq!(
            b,
            [0x00, b'a', b'b', 0x00, 0x01, 0x01, 0x02, 0x80, 0x7f, 0xbf, 0xc0, 0x40, 0xc1, 0x2c]
        );
    }
}
