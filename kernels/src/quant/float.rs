//! The float element types: F32, F16 and BF16 (one element per "block").
//!
//! F16 uses the `half` crate, which rounds to nearest even as ggml's `GGML_FP32_TO_FP16`
//! does (F16C's `vcvtps2ph` with rounding mode 0, or ggml's software fallback). BF16
//! rounding is ggml's `ggml_compute_fp32_to_bf16`, written out below.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// Converts `x` to F16, rounding to nearest even.
///
/// # Panics
///
/// When the lengths differ.
pub fn quantize_row_f16(x: &[f32], y: &mut [f16]) {
    assert_eq!(x.len(), y.len(), "quantize_row_f16: length mismatch");
    // Eight at a time with F16C where the CPU has it, the same rounding.
    y.convert_from_f32_slice(x);
}

/// Widens F16 values to f32 (exact).
///
/// # Panics
///
/// When the lengths differ.
pub fn dequantize_row_f16(x: &[f16], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "dequantize_row_f16: length mismatch");
    x.convert_to_f32_slice(y);
}

/// One f32 to BF16 as ggml rounds it: NaNs stay NaN (made quiet), everything else rounds
/// to nearest even on the top 16 bits.
pub fn f32_to_bf16(v: f32) -> bf16 {
    let u = v.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return bf16::from_bits(((u >> 16) | 64) as u16);
    }
    let rounded = (u64::from(u) + 0x7fff + u64::from((u >> 16) & 1)) >> 16;
    bf16::from_bits(rounded as u16)
}

/// Converts `x` to BF16 with ggml's rounding ([`f32_to_bf16`]).
///
/// # Panics
///
/// When the lengths differ.
pub fn quantize_row_bf16(x: &[f32], y: &mut [bf16]) {
    assert_eq!(x.len(), y.len(), "quantize_row_bf16: length mismatch");
    for (o, &v) in y.iter_mut().zip(x) {
        *o = f32_to_bf16(v);
    }
}

/// Widens BF16 values to f32 (exact: the bits move to the top half).
///
/// # Panics
///
/// When the lengths differ.
pub fn dequantize_row_bf16(x: &[bf16], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "dequantize_row_bf16: length mismatch");
    for (o, &v) in y.iter_mut().zip(x) {
        *o = f32::from_bits(u32::from(v.to_bits()) << 16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_rounds_ties_to_even() {
        // 1 + 2^-11 is halfway between 1 and the next f16 (1 + 2^-10): even is 1.
        assert_eq!(f16::from_f32(1.0 + 2f32.powi(-11)), f16::ONE);
        // 1 + 3 * 2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9: even is the latter.
        assert_eq!(
            f16::from_f32(1.0 + 3.0 * 2f32.powi(-11)).to_f32(),
            1.0 + 2f32.powi(-9)
        );
        assert_eq!(f16::from_f32(65520.0), f16::INFINITY);
        assert_eq!(f16::from_f32(65519.0), f16::MAX);
    }

    #[test]
    fn bf16_rounds_ties_to_even_and_keeps_nan() {
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)).to_bits(), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)).to_bits(), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)).to_bits(), 0x3f81);
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)).to_bits(), 0x7fc0);
        assert_eq!(f32_to_bf16(f32::INFINITY).to_bits(), 0x7f80);
        let mut back = [0.0f32];
        dequantize_row_bf16(&[bf16::from_bits(0xc040)], &mut back);
        assert_eq!(back[0], -3.0);
    }
}
