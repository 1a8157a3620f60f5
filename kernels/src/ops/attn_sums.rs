//! The `f32` sums of attention, in the orders llama.cpp's CPU backend adds them.
//!
//! Attention's two products run on `f32` keys and values, where the order of additions
//! decides the last bits, and one last bit can flip an 8-bit quantization downstream.
//! llama.cpp (with an `f32` K/V cache, no flash attention, on an AVX-512 build) adds in
//! three orders, which we reproduce:
//!
//! - `q·k` always goes through `ggml_vec_dot_f32`: four vectors of 16 partial sums over
//!   steps of 64, folded `(0 + 2) + (1 + 3)`, then the 16 lanes reduced as
//!   `_mm512_reduce_add_ps` does; a remainder below 64 is added one rounded product at a time
//!   ([`dot_f32_ggml_isa`]);
//! - the weighted sum of values for a batch of several tokens goes through llamafile's
//!   `tinyBLAS` (the probabilities are contiguous): for each output value, 16 partial sums
//!   over positions `j mod 16` ([`weighted_sum_tiled_isa`]);
//! - for a batch of one token llamafile declines (`n < 2`) and the weighted sum is
//!   `ggml_vec_dot_f32` again, over a row padded with zeros to a multiple of 64
//!   ([`weighted_sum_ggml_isa`]).
//!
//! The 16-lane reduction is GCC's `_mm512_reduce_add_ps`: lanes `i + 8` onto `i`, then
//! `i + 4` onto `i`, then `(0 + 2) + (1 + 3)`.

use crate::cpu::Isa;

/// GCC's `_mm512_reduce_add_ps` order over 16 lanes.
pub(crate) fn reduce16(v: &[f32; 16]) -> f32 {
    let h: [f32; 8] = std::array::from_fn(|i| v[i + 8] + v[i]);
    let q: [f32; 4] = std::array::from_fn(|i| h[i + 4] + h[i]);
    (q[0] + q[2]) + (q[1] + q[3])
}

/// `Σ a[i]·b[i]` in `ggml_vec_dot_f32`'s order (AVX-512 build), on instruction set `isa`.
///
/// # Panics
///
/// When the slices differ in length.
pub fn dot_f32_ggml_isa(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32: lengths differ");
    let body = a.len() - a.len() % 64;
    let mut sum = match isa {
        Isa::Scalar => dot_ggml_body(&a[..body], &b[..body]),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(token) => crate::arch::x86::dot_ggml_avx2(token, &a[..body], &b[..body]),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) => crate::arch::x86::dot_ggml_avx512(token, &a[..body], &b[..body]),
    };
    // ggml's remainder loop is `sumf += x[i]*y[i]` in `float`; GCC vectorizes its products
    // and adds them in order, so each product is rounded before its addition (no fused
    // multiply-add). A head of 32 values (the synthetic qwen2's) is all remainder.
    for (&x, &y) in a[body..].iter().zip(&b[body..]) {
        sum += x * y;
    }
    sum
}

/// `Σ a[i]·b[i]` in llamafile `tinyBLAS`'s order (AVX-512 build), on instruction set
/// `isa`: 16 partial sums over `i mod 16`, each a chain of fused multiply-adds, reduced as
/// `_mm512_reduce_add_ps`. This is how llama.cpp multiplies F32 weights with a batch of
/// two or more tokens when the row length is a multiple of 16 and the row count of 4.
///
/// # Panics
///
/// When the slices differ in length or their length is not a multiple of 16.
pub fn dot_f32_tiled_isa(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32: lengths differ");
    assert!(
        a.len().is_multiple_of(16),
        "dot_f32_tiled: length not a multiple of 16"
    );
    match isa {
        Isa::Scalar => {
            let mut acc = [0.0f32; 16];
            for (ca, cb) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
                for (l, s) in acc.iter_mut().enumerate() {
                    *s = ca[l].mul_add(cb[l], *s);
                }
            }
            reduce16(&acc)
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(token) => crate::arch::x86::dot_tiled_avx2(token, a, b),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) => crate::arch::x86::dot_tiled_avx512(token, a, b),
    }
}

/// The whole steps of 64 of [`dot_f32_ggml_isa`], in portable Rust.
fn dot_ggml_body(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [[0.0f32; 16]; 4];
    for (ca, cb) in a.chunks_exact(64).zip(b.chunks_exact(64)) {
        for (k, lanes) in acc.iter_mut().enumerate() {
            for (l, s) in lanes.iter_mut().enumerate() {
                *s = ca[16 * k + l].mul_add(cb[16 * k + l], *s);
            }
        }
    }
    let folded: [f32; 16] = std::array::from_fn(|l| {
        let (s0, s1) = (acc[0][l] + acc[2][l], acc[1][l] + acc[3][l]);
        s0 + s1
    });
    reduce16(&folded)
}

/// `out[d] = Σ_j w[j] · rows[j * stride + d]` for `j < w.len()`, each output summed in
/// `tinyBLAS`'s order: 16 partial sums over `j mod 16`, reduced as
/// `_mm512_reduce_add_ps`. `rows` holds one row of at least `out.len()` values every
/// `stride` values (the values of one head at each position).
///
/// # Panics
///
/// When `rows` is too short for `w.len()` rows of `stride` with `out.len() <= stride`.
pub fn weighted_sum_tiled_isa(isa: Isa, w: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    check_rows(w, rows, stride, out.len());
    let simd = match isa {
        Isa::Scalar => 0,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(token) => crate::arch::x86::weighted_sum_avx2(token, w, rows, stride, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) => crate::arch::x86::weighted_sum_avx512(token, w, rows, stride, out),
    };
    for (k, o) in out.iter_mut().enumerate().skip(simd) {
        let mut acc = [0.0f32; 16];
        for (j, &p) in w.iter().enumerate() {
            acc[j % 16] = rows[j * stride + k].mul_add(p, acc[j % 16]);
        }
        *o = reduce16(&acc);
    }
}

/// [`weighted_sum_tiled_isa`] in `ggml_vec_dot_f32`'s order instead: for each output, four
/// vectors of 16 partial sums over positions `j mod 64`, folded `(0 + 2) + (1 + 3)` and
/// reduced; the row counts as padded with zeros to a multiple of 64, as llama.cpp's rows
/// of probabilities are (their length is padded to 256 with masked positions).
///
/// # Panics
///
/// As [`weighted_sum_tiled_isa`].
pub fn weighted_sum_ggml_isa(isa: Isa, w: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    check_rows(w, rows, stride, out.len());
    let simd = match isa {
        Isa::Scalar => 0,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(token) => crate::arch::x86::weighted_sum_ggml_avx2(token, w, rows, stride, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) => {
            crate::arch::x86::weighted_sum_ggml_avx512(token, w, rows, stride, out)
        }
    };
    for (k, o) in out.iter_mut().enumerate().skip(simd) {
        let mut acc = [[0.0f32; 16]; 4];
        for (j, &p) in w.iter().enumerate() {
            let lane = &mut acc[(j % 64) / 16][j % 16];
            *lane = rows[j * stride + k].mul_add(p, *lane);
        }
        let folded: [f32; 16] =
            std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
        *o = reduce16(&folded);
    }
}

/// The shape contract of the weighted sums: `w.len()` rows of `stride` values, the last
/// `d` long, fit in `rows`.
fn check_rows(w: &[f32], rows: &[f32], stride: usize, d: usize) {
    assert!(
        d <= stride,
        "weighted_sum: rows are shorter than the output"
    );
    if let Some(last) = w.len().checked_sub(1) {
        assert!(
            rows.len() >= last * stride + d,
            "weighted_sum: {} rows of stride {stride} do not fit in {} values",
            w.len(),
            rows.len()
        );
    }
}
