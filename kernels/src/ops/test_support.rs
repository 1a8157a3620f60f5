//! Helpers shared by the ops tests.

/// Exactly representable inputs in [-3.125, 3.125], the same formula as
/// `testdata/ggml_reference.c` uses to feed ggml.
pub(super) fn input(i: usize, salt: usize) -> f32 {
    (((i * 37 + salt * 11) % 101) as i32 - 50) as f32 / 16.0
}

/// `f32` values from their bit patterns.
pub(super) fn from_bits(bits: &[u32]) -> Vec<f32> {
    bits.iter().map(|&b| f32::from_bits(b)).collect()
}

/// Distance in units in the last place between two finite `f32` of any sign.
pub(super) fn ulps(a: f32, b: f32) -> u32 {
    let key = |v: f32| {
        let bits = v.to_bits() as i32;
        if bits < 0 {
            i32::MIN.wrapping_sub(bits)
        } else {
            bits
        }
    };
    key(a).abs_diff(key(b))
}

/// Asserts that `got` and `want` agree element-wise within `max_ulps`.
pub(super) fn assert_ulps(got: &[f32], want: &[f32], max_ulps: u32) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            ulps(g, w) <= max_ulps,
            "index {i}: got {g:e}, want {w:e} ({} ulps)",
            ulps(g, w)
        );
    }
}
