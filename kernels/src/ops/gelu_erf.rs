//! GELU with erf (BERT's activation) in fast numerics: an `f32` formula that the AVX2
//! kernel evaluates eight values at a time, where exact numerics evaluates `erf` in `f64`
//! one value at a time ([`super::gelu_erf`], about 5% of a batched MiniLM pass).
//!
//! `gelu(x) = x·Φ(x)`, Φ the standard normal distribution function. The formula works
//! with the upper tail `h = Φ(-a)`, `a = |x|`:
//!
//! - `a = min(|x|, 15)`, `r = 1 / (2 + a)`, `t = 2r` and `u = a·r = 1 - t`, so `u` runs
//!   over [0, 15/17];
//! - `h = t · P(u) · e^(-a²/2)`, where `P` is a degree-11 polynomial fitted to
//!   `Φ(-a) · e^(a²/2) / t` (Mills's ratio over `√(2π)`, divided by `t`: smooth, from 1/2
//!   at `a = 0` towards `1/(2√(2π))` as `a` grows) by `scripts/fit-gelu-erf.py`, a minimax
//!   fit in relative error whose coefficients are rounded to `f32` one at a time, the rest
//!   refitted each time; it leaves a relative error of 5.1e-9 in exact arithmetic;
//! - below `a = 1` the product `t · P` is taken as `P - u·P` (one fused multiply-add):
//!   there `t` is near 1 and its rounding would cost `h` a few ulps, while `u` is small
//!   and carries its rounding in low bits only;
//! - `a²` is split into its rounded value `s` and the exact remainder `e = a·a - s` (one
//!   fused multiply-add), and `e^(-a²/2) = e^(-s/2) · (1 - e/2)` to well below an `f32`
//!   ulp, with `e^(-s/2)` from [`expf_ggml`] (the exponential the SIMD loops already use);
//! - `Φ(x) = h` for `x < 0`, `1 - h` otherwise, and the result is `x · Φ(x)`.
//!
//! Taking the upper tail rather than `1 + erf(x/√2)` keeps negative inputs accurate
//! relative to their small outputs (no cancellation), so the error is a few ulps of the
//! result everywhere: against an `f64` reference accurate to 1e-12, at most 6.9 ulps over
//! every 7th `f32` in [-20, 20] (3.1e8 values, 98% of them within 1 ulp; the worst at
//! `x = -2.52`). The tests
//! (`a_sweep_of_f32_values_is_within_budget`, the property test) hold it to 8 ulps, plus
//! `f32::MIN_POSITIVE` absolute for results that underflow to subnormals. Exact
//! numerics' `erf` is within 1.5e-7 absolute, so the two differ by at most about
//! `0.75e-7·|x|`. Beyond `|x| = 14.5` the tail `h` is 0 in `f32`, and the clamp at 15
//! keeps `a²` finite: large positive inputs give `x`, large negative ones give -0. A NaN
//! gives NaN; `-inf` gives NaN (`-inf · 0`), as the exact path does.
//!
//! Every step is one IEEE operation, so the scalar twin [`gelu_erf_fast`] and the AVX2
//! kernel (`arch::x86::gelu_erf`) give the same bits; a slice's last `len % 8` values go
//! through the kernel padded.

use super::activation::gelu_erf;
use super::expf::expf_ggml;
use crate::cpu::{Isa, Numerics};

/// The constants of the fast GELU, shared by the scalar twin and the SIMD kernel.
pub(crate) mod gelu_erf_consts {
    /// `|x|` is clamped here: `Φ(-15)` is far below `f32`'s smallest value, and `15²`
    /// keeps the exponent's argument finite.
    pub const CLAMP: f32 = 15.0;
    /// `t = SCALE / (SCALE + a)` and `u = a / (SCALE + a)`.
    pub const SCALE: f32 = 2.0;
    /// Below this `a`, `t · P(u)` is computed as `P(u) - u · P(u)`.
    pub const SMALL: f32 = 1.0;
    /// `P(u) = Σ P[k] u^k`, from `scripts/fit-gelu-erf.py`.
    pub const P: [f32; 12] = [
        0.5,
        -0.297_884_88,
        -0.095_749_006,
        0.042_060_096,
        0.057_881_47,
        -0.009_325_007,
        0.115_678_936,
        -0.316_446_2,
        0.490_841_78,
        -0.517_155_7,
        0.297_726_75,
        -0.068_157_054,
    ];
}

use gelu_erf_consts as c;

/// GELU with erf of one value, in the fast numerics' formula (the module documentation):
/// the scalar twin of the AVX2 kernel and the path of CPUs without one.
#[inline]
pub fn gelu_erf_fast(x: f32) -> f32 {
    let a = x.abs().min(c::CLAMP);
    let r = 1.0 / (c::SCALE + a);
    let (t, u) = (c::SCALE * r, a * r);
    let p = c::P[..11]
        .iter()
        .rev()
        .fold(c::P[11], |acc, &k| acc.mul_add(u, k));
    let s = a * a;
    let e = a.mul_add(a, -s);
    let g = expf_ggml(-0.5 * s);
    let g = g.mul_add(-0.5 * e, g);
    let tp = if a < c::SMALL {
        (-u).mul_add(p, p)
    } else {
        t * p
    };
    let h = tp * g;
    let phi = if x < 0.0 { h } else { 1.0 - h };
    x * phi
}

/// `out[i] = x[i]·Φ(x[i])`, GELU with erf as BERT applies it to its feed-forward rows, in
/// the given numerics: exact gives [`gelu_erf`]'s bits (`erf` in `f64`, whatever the
/// instruction set), fast gives [`gelu_erf_fast`]'s on every instruction set, eight
/// values at a time where there is SIMD.
///
/// # Panics
/// If `out.len() != x.len()`.
pub fn gelu_erf_isa(isa: Isa, numerics: Numerics, x: &[f32], out: &mut [f32]) {
    match numerics {
        Numerics::Exact => gelu_erf(x, out),
        Numerics::Fast => gelu_erf_fast_isa(isa, x, out),
    }
}

/// The fast half of [`gelu_erf_isa`].
fn gelu_erf_fast_isa(isa: Isa, x: &[f32], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        x.len(),
        "gelu_erf: output length differs from input"
    );
    match isa {
        Isa::Scalar => {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = gelu_erf_fast(v);
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(token) => fast_groups(x, out, |x, out| {
            crate::arch::x86::gelu_erf_avx2(token, x, out);
        }),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) => fast_groups(x, out, |x, out| {
            crate::arch::x86::gelu_erf_avx2(token.avx2(), x, out);
        }),
    }
}

/// Runs `kernel` (whole groups of 8) on the body of `x`, then on its last `len % 8`
/// values padded with zeros.
#[cfg(target_arch = "x86_64")]
fn fast_groups(x: &[f32], out: &mut [f32], kernel: impl Fn(&[f32], &mut [f32])) {
    let body = x.len() - x.len() % 8;
    let (xb, xt) = x.split_at(body);
    let (ob, ot) = out.split_at_mut(body);
    kernel(xb, ob);
    if !xt.is_empty() {
        let mut pad = [0.0f32; 8];
        let mut result = [0.0f32; 8];
        pad[..xt.len()].copy_from_slice(xt);
        kernel(&pad, &mut result);
        ot.copy_from_slice(&result[..xt.len()]);
    }
}

#[cfg(test)]
#[path = "gelu_erf_tests.rs"]
mod tests;
