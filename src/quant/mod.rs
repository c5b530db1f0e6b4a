//! Block formats and their reference dequantizers (the oracle every fast path is checked against).
//!
//! - [`blocks`]: the `#[repr(C)]` block structs, byte for byte as ggml lays them out.
//! - [`dequant`]: scalar reference dequantizers, bit-exact with the `gguf` PyPI package 0.19.0
//!   (and so with ggml) for every supported type; `tests/quant.rs` checks them against fixtures.
//!
//! - [`iq_blocks`], [`iq_dequant`]: the same for the IQ formats and MXFP4, with their grids
//!   and tables in [`grids`] (generated from the `gguf` package by `scripts/gen-iq-grids.py`).
//!
//! Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
//! IQ4_NL, IQ4_XS, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M, MXFP4.

pub mod blocks;
pub mod dequant;
pub mod grids;
pub mod iq_blocks;
pub mod iq_dequant;
mod types;

pub use blocks::{bf16_to_f32, f16_to_f32};
pub use dequant::get_scale_min_k4;
pub use types::{GgmlType, QK_K};

/// Why a run of bytes could not be dequantized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("type {0} is not supported by wasm-chord (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M, MXFP4)")]
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
///
/// Errors, never panics: `Unsupported` for types outside the list above, `PartialBlock` when
/// `out.len()` is not a multiple of the block size, `ByteCount` when `data` is not exactly the
/// bytes of `out.len()` elements.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    use dequant::*;
    use iq_dequant::*;
    use GgmlType::*;
    match ty {
        F32 => dequantize_row_f32(data, out),
        F16 => dequantize_row_f16(data, out),
        BF16 => dequantize_row_bf16(data, out),
        Q4_0 => dequantize_row_q4_0(data, out),
        Q4_1 => dequantize_row_q4_1(data, out),
        Q5_0 => dequantize_row_q5_0(data, out),
        Q5_1 => dequantize_row_q5_1(data, out),
        Q8_0 => dequantize_row_q8_0(data, out),
        Q2_K => dequantize_row_q2_k(data, out),
        Q3_K => dequantize_row_q3_k(data, out),
        Q4_K => dequantize_row_q4_k(data, out),
        Q5_K => dequantize_row_q5_k(data, out),
        Q6_K => dequantize_row_q6_k(data, out),
        IQ4_NL => dequantize_row_iq4_nl(data, out),
        IQ4_XS => dequantize_row_iq4_xs(data, out),
        IQ3_XXS => dequantize_row_iq3_xxs(data, out),
        IQ3_S => dequantize_row_iq3_s(data, out),
        IQ2_XXS => dequantize_row_iq2_xxs(data, out),
        IQ2_XS => dequantize_row_iq2_xs(data, out),
        IQ2_S => dequantize_row_iq2_s(data, out),
        IQ1_S => dequantize_row_iq1_s(data, out),
        IQ1_M => dequantize_row_iq1_m(data, out),
        MXFP4 => dequantize_row_mxfp4(data, out),
        _ => Err(QuantError::Unsupported(ty)),
    }
}

/// Dequantize `n` elements into a new vector.
pub fn dequantize_to_vec(ty: GgmlType, data: &[u8], n: usize) -> Result<Vec<f32>, QuantError> {
    // Validate before allocating, so a bogus `n` from a corrupt file cannot exhaust memory.
    if !ty.is_supported() {
        return Err(QuantError::Unsupported(ty));
    }
    dequant::check_len(ty, data.len(), n)?;
    let mut out = vec![0.0; n];
    dequantize(ty, data, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_dispatched_exactly_when_supported() {
        for ty in GgmlType::ALL {
            let (bs, ts) = ty.block_geometry();
            let mut out = vec![0.0; bs];
            let r = dequantize(ty, &vec![0; ts], &mut out);
            if ty.is_supported() {
                assert_eq!(r, Ok(()), "{ty}");
                assert!(out.iter().all(|v| *v == 0.0), "{ty}");
            } else {
                assert_eq!(r, Err(QuantError::Unsupported(ty)));
            }
        }
    }

    #[test]
    fn to_vec_checks_before_allocating() {
        let r = dequantize_to_vec(GgmlType::F32, &[0; 4], usize::MAX / 4);
        assert!(matches!(r, Err(QuantError::ByteCount { .. })));
    }
}
