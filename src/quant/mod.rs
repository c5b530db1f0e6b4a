//! Block formats and their reference dequantizers (the oracle every fast path is checked against).
//!
//! HANDOFF: the helper owning src/quant/ replaces this dispatch with the real one; keep the
//! public API: `GgmlType`, `QK_K`, `QuantError`, `dequantize`, `dequantize_to_vec`.

mod types;

pub use types::{GgmlType, QK_K};

/// Why a run of bytes could not be dequantized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("type {0} is not supported by wasm-chord (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)")]
    Unsupported(GgmlType),
    #[error("{elements} elements of {ty} are not a whole number of {block}-element blocks")]
    PartialBlock {
        ty: GgmlType,
        elements: usize,
        block: usize,
    },
    #[error("{elements} elements of {ty} need {expected} bytes, got {got}")]
    ByteCount {
        ty: GgmlType,
        elements: usize,
        expected: usize,
        got: usize,
    },
}

/// Dequantize `data` (whole blocks of `ty`) into `out`; `out.len()` is the element count.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let _ = (data, out);
    Err(QuantError::Unsupported(ty))
}

/// Dequantize `n` elements into a new vector.
pub fn dequantize_to_vec(ty: GgmlType, data: &[u8], n: usize) -> Result<Vec<f32>, QuantError> {
    let mut out = vec![0.0; n];
    dequantize(ty, data, &mut out)?;
    Ok(out)
}
