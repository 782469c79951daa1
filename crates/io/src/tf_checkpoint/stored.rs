//! How the dtypes of a TF checkpoint's entries become ferroflow values: float32, float64, int64
//! and bool as they are; int8, int16, int32, uint8 and uint16 widened to int64 (ferroflow's one
//! integer type, which holds each exactly); float16 and bfloat16 converted to float32 (exact:
//! each is a subset of float32). String tensors are not values (`read_strings` reads their bytes);
//! other dtypes are not read, and say why.

use super::BundleEntry;
use crate::checkpoint::{bytes_value, widened_value, Narrow};
use ferroflow_core::{DType, Value};

/// How one stored dtype becomes a ferroflow value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Stored {
    /// As ferroflow stores the dtype.
    Same(DType),
    /// int8, int16, int32, uint8 and uint16 widened to int64 (exact); float16 and bfloat16
    /// converted to float32 (exact).
    Narrow(Narrow),
}

impl Stored {
    pub(super) fn dtype(self) -> DType {
        match self {
            Stored::Same(d) => d,
            Stored::Narrow(Narrow::F16 | Narrow::BF16) => DType::F32,
            Stored::Narrow(_) => DType::I64,
        }
    }
    pub(super) fn bytes(self) -> usize {
        match self {
            Stored::Same(d) => d.size_of(),
            Stored::Narrow(n) => n.size_of(),
        }
    }
}

/// How an entry is read, or why it cannot be.
pub(super) fn stored(e: &BundleEntry) -> std::result::Result<Stored, String> {
    Ok(match e.dtype {
        1 => Stored::Same(DType::F32),
        2 => Stored::Same(DType::F64),
        3 => Stored::Narrow(Narrow::Int32),
        4 => Stored::Narrow(Narrow::UInt8),
        5 => Stored::Narrow(Narrow::Int16),
        6 => Stored::Narrow(Narrow::Int8),
        17 => Stored::Narrow(Narrow::UInt16),
        9 => Stored::Same(DType::I64),
        10 => Stored::Same(DType::Bool),
        14 => Stored::Narrow(Narrow::BF16),
        19 => Stored::Narrow(Narrow::F16),
        7 => return Err("a string tensor (dtype string; `read_strings` reads its bytes)".into()),
        d => return Err(format!("TF dtype {d}, which ferroflow does not read")),
    })
}

/// The value of an entry stored as `kind`, from its bytes (`shape`'s elements of `kind.bytes()`).
pub(super) fn decode(
    kind: Stored,
    shape: &[usize],
    buf: &[u8],
) -> std::result::Result<Value, String> {
    match kind {
        Stored::Same(d) => bytes_value(d, shape, buf),
        Stored::Narrow(n) => widened_value(n, kind.dtype(), shape, buf),
    }
}
