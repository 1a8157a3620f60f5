//! Element-wise arithmetic on equal-length rows, and logit soft-capping.
//!
//! Each output is one `f32` operation on its inputs, so these agree with ggml's `add`,
//! `mul` and `scale` bit for bit.

/// `out[i] = a[i] + b[i]`.
///
/// # Panics
/// If the slices differ in length.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    check3("add", a, b, out);
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a + b;
    }
}

/// `out[i] = a[i] * b[i]`.
///
/// # Panics
/// If the slices differ in length.
pub fn mul(a: &[f32], b: &[f32], out: &mut [f32]) {
    check3("mul", a, b, out);
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a * b;
    }
}

/// `out[i] = x[i] * s`.
///
/// # Panics
/// If `out.len() != x.len()`.
pub fn scale(x: &[f32], s: f32, out: &mut [f32]) {
    assert_eq!(
        out.len(),
        x.len(),
        "scale: output length differs from input"
    );
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v * s;
    }
}

/// `dst[i] += src[i]` (a residual connection).
///
/// # Panics
/// If the slices differ in length.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "add_assign: lengths differ");
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

/// `dst[i] *= src[i]`.
///
/// # Panics
/// If the slices differ in length.
pub fn mul_assign(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "mul_assign: lengths differ");
    for (d, &s) in dst.iter_mut().zip(src) {
        *d *= s;
    }
}

/// `x[i] *= s`.
pub fn scale_assign(x: &mut [f32], s: f32) {
    for v in x.iter_mut() {
        *v *= s;
    }
}

/// Soft-capping in place: `x[i] = tanh(x[i] * (1 / cap)) * cap`, squashing values
/// smoothly into `(-cap, cap)`.
///
/// This is llama.cpp's graph for Gemma 2's attention and final-logit caps (and Gemma 3's
/// final-logit cap when the GGUF sets one): `scale` by the `f32` reciprocal `1 / cap`,
/// `tanh`, `scale` by `cap`. Multiplying by the reciprocal rather than dividing is part
/// of matching its rounding. `cap` must be non-zero (a zero cap gives NaN).
pub fn softcap(x: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    for v in x.iter_mut() {
        *v = (*v * inv).tanh() * cap;
    }
}

fn check3(name: &str, a: &[f32], b: &[f32], out: &[f32]) {
    assert!(
        a.len() == b.len() && out.len() == a.len(),
        "{name}: lengths differ ({}, {}, {})",
        a.len(),
        b.len(),
        out.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_support::{assert_ulps, from_bits};
    use crate::ops::testdata;
    use proptest::prelude::*;

    #[test]
    fn softcap_matches_llama_cpp() {
        let mut x: Vec<f32> = (0..97)
            .map(|i| ((i - 48) as f32 / 4.0 + 1.0 / 3000.0) * 10.0)
            .collect();
        softcap(&mut x, 30.0);
        // ggml's tanh is the C library's tanhf, as is Rust's.
        assert_ulps(&x, &from_bits(&testdata::native::SOFTCAP_30), 1);
        assert_eq!(x, from_bits(&testdata::plain::SOFTCAP_30));
        assert!(x.iter().all(|v| v.abs() < 30.0));
    }

    #[test]
    fn softcap_is_near_identity_for_small_values() {
        let mut x = [0.0f32, 0.3, -0.3];
        softcap(&mut x, 50.0);
        assert_eq!(x[0], 0.0);
        assert!((x[1] - 0.3).abs() < 1e-5 && (x[2] + 0.3).abs() < 1e-5);
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn mismatched_lengths_panic() {
        add(&[1.0, 2.0], &[1.0], &mut [0.0, 0.0]);
    }

    proptest! {
        #[test]
        fn out_of_place_and_in_place_agree_with_plain_arithmetic(
            pairs in prop::collection::vec((-1e3f32..1e3, -1e3f32..1e3), 0..70),
            s in -10.0f32..10.0,
        ) {
            let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            let n = a.len();
            let mut out = vec![0.0; n];

            add(&a, &b, &mut out);
            let mut d = a.clone();
            add_assign(&mut d, &b);
            for i in 0..n {
                prop_assert_eq!(out[i], a[i] + b[i]);
            }
            prop_assert_eq!(&d, &out);

            mul(&a, &b, &mut out);
            let mut d = a.clone();
            mul_assign(&mut d, &b);
            for i in 0..n {
                prop_assert_eq!(out[i], a[i] * b[i]);
            }
            prop_assert_eq!(&d, &out);

            scale(&a, s, &mut out);
            let mut d = a.clone();
            scale_assign(&mut d, s);
            for i in 0..n {
                prop_assert_eq!(out[i], a[i] * s);
            }
            prop_assert_eq!(&d, &out);
        }
    }
}
