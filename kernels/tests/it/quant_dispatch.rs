//! The byte-level entry points: lengths and types from a file are checked, never trusted.

use kernels::GgmlType;
use kernels::quant::{QuantError, can_dequantize, can_quantize, dequantize_row, quantize_row};
use proptest::prelude::*;

#[test]
fn wrong_lengths_and_types_are_errors_that_name_the_problem() {
    let mut out = [0.0f32; 64];
    let err = dequantize_row(GgmlType::Q4_0, &[0u8; 35], &mut out).unwrap_err();
    assert_eq!(
        err,
        QuantError::ByteLength {
            ty: GgmlType::Q4_0,
            elements: 64,
            expected: 36,
            actual: 35
        }
    );
    assert_eq!(
        err.to_string(),
        "64 values of q4_0 take 36 bytes, but the buffer has 35"
    );

    let err = dequantize_row(GgmlType::Q4_K, &[0u8; 144], &mut out).unwrap_err();
    assert!(matches!(
        err,
        QuantError::PartialBlock {
            block_size: 256,
            elements: 64,
            ..
        }
    ));

    let err = dequantize_row(GgmlType::IQ2_XXS, &[0u8; 66], &mut [0.0; 256]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "dequantization is not supported for tensor type iq2_xxs"
    );

    let err = quantize_row(GgmlType::IQ2_XXS, &[0.0; 256], &mut [0u8; 66]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "quantization is not supported for tensor type iq2_xxs"
    );

    let err = quantize_row(GgmlType::Q8_0, &[0.0; 33], &mut [0u8; 34]).unwrap_err();
    assert!(matches!(
        err,
        QuantError::PartialBlock {
            elements: 33,
            block_size: 32,
            ..
        }
    ));
}

#[test]
fn failed_calls_leave_the_output_alone() {
    let mut out = [7.0f32; 32];
    assert!(dequantize_row(GgmlType::Q8_0, &[0u8; 33], &mut out).is_err());
    assert_eq!(out, [7.0; 32]);
    let mut bytes = [9u8; 33];
    assert!(quantize_row(GgmlType::Q8_0, &[1.0; 32], &mut bytes).is_err());
    assert_eq!(bytes, [9; 33]);
}

#[test]
fn empty_rows_are_fine() {
    for ty in GgmlType::ALL.into_iter().filter(|&t| can_dequantize(t)) {
        dequantize_row(ty, &[], &mut []).unwrap();
    }
    for ty in GgmlType::ALL.into_iter().filter(|&t| can_quantize(t)) {
        quantize_row(ty, &[], &mut []).unwrap();
    }
}

/// The supported types, as indices into `GgmlType::ALL`.
fn quantizable() -> Vec<GgmlType> {
    GgmlType::ALL
        .into_iter()
        .filter(|&t| can_quantize(t))
        .collect()
}

proptest! {
    #[test]
    fn any_lengths_give_a_result_or_an_error_never_a_panic(
        t in 0..GgmlType::ALL.len(),
        n_values in 0usize..600,
        n_bytes in 0usize..700,
        fill in any::<u8>(),
    ) {
        let ty = GgmlType::ALL[t];
        let bytes = vec![fill; n_bytes];
        let mut values = vec![0.0f32; n_values];
        let ok = dequantize_row(ty, &bytes, &mut values).is_ok();
        let fits = can_dequantize(ty)
            && n_values % ty.block_size() == 0
            && ty.row_bytes(n_values as u64) == Some(n_bytes as u64);
        prop_assert_eq!(ok, fits);
        let mut out = vec![0u8; n_bytes];
        let ok = quantize_row(ty, &values, &mut out).is_ok();
        prop_assert_eq!(ok, fits && can_quantize(ty));
    }

    #[test]
    fn unaligned_buffers_give_the_same_bytes_and_values(
        t in 0usize..16,
        blocks in 1usize..5,
        seed in any::<u64>(),
    ) {
        let ty = quantizable()[t % quantizable().len()];
        let n = blocks * ty.block_size().max(32);
        let x: Vec<f32> = (0..n).map(|i| ((i as u64 * 2654435761 + seed) % 1000) as f32 / 100.0 - 5.0).collect();
        let len = ty.row_bytes(n as u64).unwrap() as usize;

        let mut aligned = vec![0u64; len / 8 + 2];
        let aligned_bytes = &mut bytes_of(&mut aligned)[..len];
        quantize_row(ty, &x, aligned_bytes).unwrap();
        let want = aligned_bytes.to_vec();

        let mut storage = vec![0u8; len + 1];
        quantize_row(ty, &x, &mut storage[1..]).unwrap();
        prop_assert_eq!(&storage[1..], &want[..]);

        let mut from_aligned = vec![0.0f32; n];
        dequantize_row(ty, &want, &mut from_aligned).unwrap();
        let mut from_unaligned = vec![0.0f32; n];
        dequantize_row(ty, &storage[1..], &mut from_unaligned).unwrap();
        prop_assert_eq!(
            from_aligned.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            from_unaligned.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}

/// The bytes of a `u64` buffer (8-aligned), without `unsafe`.
fn bytes_of(words: &mut [u64]) -> &mut [u8] {
    kernels::arch::cast::as_bytes_mut(words)
}
