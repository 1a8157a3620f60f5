//! The exponential that llama.cpp's CPU backend uses in its SIMD loops (`ggml_v_expf`,
//! `vec.h`), and the two loops built on it: SiLU (alone or times a gate, as in SwiGLU)
//! and the exponentials of a softmax row with their sum.
//!
//! `ggml_v_expf` is a polynomial that differs from the C library's `expf` by an ulp or
//! so. One ulp in a SiLU output can flip the 8-bit quantization of the next product's
//! activations, and such flips grow through a model's layers, so we compute the same bits:
//! [`expf_ggml`] is the scalar twin, written from ggml's AVX-512 version (the one a
//! native build on an AVX-512 CPU runs; ggml's AVX2 version rounds differently in the
//! last bit, and we do not follow it), and `arch::x86::expf` has the AVX2 and AVX-512
//! versions, which give the same bits.
//!
//! ggml runs the vector code on whole groups of 16 from the start of a row and the C
//! library on the rest; [`silu_mul_isa`] does the same. [`exp_sum_isa`] instead treats a
//! row as padded with zeros to a multiple of 16, which is what llama.cpp's attention
//! rows are (their length is padded with masked entries, whose exponential is 0).

use super::attn_sums::reduce16;
use crate::cpu::Isa;

/// The constants of `ggml_v_expf`, from their hexadecimal float spellings.
pub(crate) mod expf_consts {
    /// `0x1.8p23`: adding it rounds to a whole number.
    pub const SHIFT: f32 = f32::from_bits(0x4b40_0000);
    /// `0x1.715476p+0`, log2(e).
    pub const LOG2E: f32 = f32::from_bits(0x3fb8_aa3b);
    /// `0x1.62e4p-1`, the high part of ln 2.
    pub const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
    /// `0x1.7f7d1cp-20`, the low part of ln 2.
    pub const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
    /// `0x1.ffffecp-1`.
    pub const P1: f32 = f32::from_bits(0x3f7f_fff6);
    /// `0x1.fffdb6p-2`.
    pub const P2: f32 = f32::from_bits(0x3eff_fedb);
    /// `0x1.555e66p-3`.
    pub const P3: f32 = f32::from_bits(0x3e2a_af33);
    /// `0x1.573e2ep-5`.
    pub const P4: f32 = f32::from_bits(0x3d2b_9f17);
    /// `0x1.0e4020p-7`.
    pub const P5: f32 = f32::from_bits(0x3c07_2010);
}

use expf_consts as c;

/// One lane of ggml's AVX-512 `ggml_v_expf`: `e^x` to within about 1.5 ulp, 0 below
/// about -133 and infinity above about 133 (where `|round(x log2 e)| > 192`).
///
/// Every step is one IEEE operation (`mul_add` is a fused multiply-add), so the result
/// is the same bits as the vector code's.
pub fn expf_ggml(x: f32) -> f32 {
    let z = x.mul_add(c::LOG2E, c::SHIFT);
    let n = z - c::SHIFT;
    let b = (-n).mul_add(c::LN2_LO, (-n).mul_add(c::LN2_HI, x));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = c::P5.mul_add(b, c::P4).mul_add(u, c::P3.mul_add(b, c::P2));
    let j = j.mul_add(u, c::P1.mul_add(b, 1.0));
    scale_by_power_of_two(j, n)
}

/// `j * 2^n` rounded once, for a whole `n` with `|n| <= 192` (AVX-512's `scalef`); NaN
/// stays NaN.
fn scale_by_power_of_two(j: f32, n: f32) -> f32 {
    if n.is_nan() {
        return f32::NAN;
    }
    // Exact in f64 (a 24-bit significand times a power of two in range), rounded once.
    (f64::from(j) * 2f64.powi(n as i32)) as f32
}

/// `x / (1 + exp(0 - x))` with [`expf_ggml`] (`ggml_v_silu`, one lane).
fn silu_ggml(x: f32) -> f32 {
    x / (1.0 + expf_ggml(0.0 - x))
}

/// `x / (1 + exp(-x))` with the C library's `exp` (ggml's scalar `ggml_silu_f32`).
fn silu_libm(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `out[i] = silu(x[i]) * up[i]`, or `silu(x[i])` without `up`, as llama.cpp computes it
/// on one row: [`expf_ggml`] on the groups of 16 from the row's start, the C library's
/// `exp` on the last `len % 16`.
///
/// # Panics
///
/// When the slices differ in length.
pub fn silu_mul_isa(isa: Isa, x: &[f32], up: Option<&[f32]>, out: &mut [f32]) {
    assert_eq!(out.len(), x.len(), "silu: output length differs from input");
    if let Some(up) = up {
        assert_eq!(up.len(), x.len(), "swiglu: gate and up lengths differ");
    }
    let body = x.len() - x.len() % 16;
    let (xb, xt) = x.split_at(body);
    let (ob, ot) = out.split_at_mut(body);
    let (ub, ut) = match up {
        Some(u) => {
            let (b, t) = u.split_at(body);
            (Some(b), Some(t))
        }
        None => (None, None),
    };
    match isa {
        Isa::Scalar => {
            for (i, (o, &v)) in ob.iter_mut().zip(xb).enumerate() {
                *o = silu_ggml(v) * ub.map_or(1.0, |u| u[i]);
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(token) => crate::arch::x86::silu_avx2(token, xb, ub, ob),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) => crate::arch::x86::silu_avx512(token, xb, ub, ob),
    }
    for (i, (o, &v)) in ot.iter_mut().zip(xt).enumerate() {
        *o = match ut {
            Some(u) => silu_libm(v) * u[i],
            None => silu_libm(v),
        };
    }
}

/// `x[i] = exp(x[i] - max)` for the whole row, returning `Σ x[i]` in `f64`, summed as
/// llama.cpp sums a softmax row padded with zeros to a multiple of 16: each group of 16
/// in `f32` (halves, quarters, then `(0 + 2) + (1 + 3)`), the groups' sums in `f64`.
pub fn exp_sum_isa(isa: Isa, x: &mut [f32], max: f32) -> f64 {
    let body = x.len() - x.len() % 16;
    let (xb, xt) = x.split_at_mut(body);
    let mut sum = exp_sum_groups(isa, xb, max);
    if !xt.is_empty() {
        let mut group = [f32::NEG_INFINITY; 16];
        group[..xt.len()].copy_from_slice(xt);
        // The padding is -inf minus a finite max: its exponential is 0.
        sum += exp_sum_groups(isa, &mut group, max);
        xt.copy_from_slice(&group[..xt.len()]);
    }
    sum
}

/// [`exp_sum_isa`] of whole groups of 16 (`x.len()` a multiple of 16).
fn exp_sum_groups(isa: Isa, x: &mut [f32], max: f32) -> f64 {
    match isa {
        Isa::Scalar => x.chunks_exact_mut(16).map(|g| exp_group(g, max)).sum(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(token) => crate::arch::x86::exp_sum_avx2(token, x, max),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) => crate::arch::x86::exp_sum_avx512(token, x, max),
    }
}

/// One group of 16 for [`exp_sum_isa`], in portable Rust.
fn exp_group(g: &mut [f32], max: f32) -> f64 {
    let mut v = [0.0f32; 16];
    for (o, x) in v.iter_mut().zip(g.iter_mut()) {
        *x = expf_ggml(*x - max);
        *o = *x;
    }
    f64::from(reduce16(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expf_ggml_is_within_two_ulps_of_exp() {
        for i in -8700..8800 {
            let x = i as f32 / 100.0 + 1.0 / 7.0;
            let (got, want) = (expf_ggml(x), f64::from(x).exp() as f32);
            let ulps = (got.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(ulps <= 2, "exp({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn expf_ggml_saturates_like_ggml() {
        assert_eq!(expf_ggml(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf_ggml(-200.0), 0.0);
        assert_eq!(expf_ggml(200.0), f32::INFINITY);
        assert_eq!(expf_ggml(0.0), 1.0);
        assert!(expf_ggml(f32::NAN).is_nan());
    }

    #[test]
    fn the_tail_uses_the_library_exp() {
        // 17 values: 16 through the polynomial, the last through the C library, which
        // differ somewhere in this range.
        let x: Vec<f32> = (0..4000).map(|i| -4.0 + i as f32 * 0.002_131).collect();
        let differs = x.iter().find(|&&v| silu_ggml(v) != silu_libm(v)).copied();
        let v = differs.expect("the two exps differ somewhere");
        let mut row = vec![0.5f32; 17];
        row[16] = v;
        row[3] = v;
        let mut out = vec![0.0; 17];
        silu_mul_isa(Isa::Scalar, &row, None, &mut out);
        assert_eq!(out[3], silu_ggml(v));
        assert_eq!(out[16], silu_libm(v));
    }
}
