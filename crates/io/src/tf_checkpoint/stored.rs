//! How the dtypes of a TF checkpoint's entries become ferroflow values: float32, float64, int64
//! and bool as they are; int32 widened to int64; float16 and bfloat16 converted to float32 (exact:
//! each is a subset of float32). String tensors and other dtypes are not read, and say why.

use super::BundleEntry;
use crate::checkpoint::bytes_value;
use ferroflow_core::{DType, Value};

/// How one stored dtype becomes a ferroflow value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Stored {
    /// As ferroflow stores the dtype.
    Same(DType),
    /// int32, widened to int64.
    Int32,
    /// float16, converted to float32 (exactly: every float16 is a float32).
    Half,
    /// bfloat16, converted to float32 (exactly).
    BFloat16,
}

impl Stored {
    pub(super) fn dtype(self) -> DType {
        match self {
            Stored::Same(d) => d,
            Stored::Int32 => DType::I64,
            Stored::Half | Stored::BFloat16 => DType::F32,
        }
    }
    pub(super) fn bytes(self) -> usize {
        match self {
            Stored::Same(d) => d.size_of(),
            Stored::Int32 => 4,
            Stored::Half | Stored::BFloat16 => 2,
        }
    }
}

/// How an entry is read, or why it cannot be.
pub(super) fn stored(e: &BundleEntry) -> std::result::Result<Stored, String> {
    Ok(match e.dtype {
        1 => Stored::Same(DType::F32),
        2 => Stored::Same(DType::F64),
        3 => Stored::Int32,
        9 => Stored::Same(DType::I64),
        10 => Stored::Same(DType::Bool),
        14 => Stored::BFloat16,
        19 => Stored::Half,
        7 => return Err("a string tensor (dtype string)".into()),
        d => return Err(format!("TF dtype {d}, which ferroflow does not read")),
    })
}

/// The value of an entry stored as `kind`, from its bytes (`shape`'s elements of `kind.bytes()`).
pub(super) fn decode(
    kind: Stored,
    shape: &[usize],
    buf: &[u8],
) -> std::result::Result<Value, String> {
    let two = |c: &[u8]| {
        u16::from_le_bytes([
            c.first().copied().unwrap_or(0),
            c.get(1).copied().unwrap_or(0),
        ])
    };
    match kind {
        Stored::Same(d) => bytes_value(d, shape, buf),
        Stored::Int32 => Value::from_i64(
            shape,
            buf.chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap_or([0; 4]))))
                .collect(),
        )
        .map_err(|e| e.to_string()),
        Stored::Half => Value::from_f32(
            shape,
            buf.chunks_exact(2)
                .map(|c| half::f16::from_bits(two(c)).to_f32())
                .collect(),
        )
        .map_err(|e| e.to_string()),
        Stored::BFloat16 => Value::from_f32(
            shape,
            buf.chunks_exact(2)
                .map(|c| half::bf16::from_bits(two(c)).to_f32())
                .collect(),
        )
        .map_err(|e| e.to_string()),
    }
}
