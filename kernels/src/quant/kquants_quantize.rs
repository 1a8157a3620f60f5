//! Quantization to the k-quant weight formats: Q2_K, Q3_K, Q4_K, Q5_K and Q6_K.
//!
//! These are llama.cpp's reference quantizers (`quantize_row_q*_K_ref` in `ggml-quants.c`,
//! what `llama-quantize` writes without an importance matrix), step for step: each
//! sub-block's scale (and minimum) is fitted by a small search, the fitted scales are
//! themselves quantized to 4, 6 or 8 bits against one or two f16 super-block scales, and
//! the values are then re-quantized with the scales as stored. Every operation is the f32
//! operation of the C code in the same order (ggml-base is built without FMA), so the
//! bytes are identical.
//!
//! A sub-block whose stored scale comes out zero keeps the quants of its first fit, as in
//! the C code; they do not change what it dequantizes to, but they are in the bytes.

use half::f16;

use crate::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, K_SCALE_SIZE, QK_K};
use crate::quant::kquants::{get_scale_min_k4, q3_k_scale};

/// Groups whose largest magnitude is below this are quantized as zeros (`GROUP_MAX_EPS`).
const GROUP_MAX_EPS: f32 = 1e-15;

/// Rounds to the nearest integer, ties to even, as `nearest_int` does: adding 1.5·2²³ leaves
/// the rounded integer in the low mantissa bits. Valid for |x| ≤ 4194303, as in C.
fn nearest_int(x: f32) -> i32 {
    let biased = x + 12_582_912.0;
    (biased.to_bits() as i32 & 0x007F_FFFF) - 0x0040_0000
}

/// The scale search of `make_qkx2_quants`: candidate inverse scales
/// `(rmin + rdelta·is + nmax) / (max - min)` for `is` in `0..=nstep`.
struct Search {
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    /// Weigh absolute rather than squared errors.
    use_mad: bool,
}

/// Fits `x ≈ scale·L - min` with `L` in `0..=nmax` (`make_qkx2_quants`), minimising the
/// weighted error over the searched scales, each with the least-squares scale and minimum
/// of its quants. Returns `(scale, min)` (min ≥ 0 is subtracted) and fills `quants`.
fn make_qkx2_quants(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    quants: &mut [u8],
    search: &Search,
) -> (f32, f32) {
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for (&v, &w) in x.iter().zip(weights).skip(1) {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
        sum_w += w;
        sum_x += w * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        quants.fill(0);
        return (0.0, -min);
    }
    let nmax_f = nmax as f32;
    let error = |scale: f32, min: f32, l: u8, v: f32| {
        let diff = scale * f32::from(l) + min - v;
        if search.use_mad {
            diff.abs()
        } else {
            diff * diff
        }
    };
    let iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for ((q, &v), &w) in quants.iter_mut().zip(x).zip(weights) {
        *q = nearest_int(iscale * (v - min)).clamp(0, nmax) as u8;
        best_error += w * error(scale, min, *q, v);
    }
    if search.nstep < 1 {
        return (scale, -min);
    }
    let mut aux = [0u8; 32];
    let aux = &mut aux[..x.len()];
    for is in 0..=search.nstep {
        let iscale = (search.rmin + search.rdelta * is as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for ((q, &v), &w) in aux.iter_mut().zip(x).zip(weights) {
            *q = nearest_int(iscale * (v - min)).clamp(0, nmax) as u8;
            let l = f32::from(*q);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * v;
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for ((&q, &v), &w) in aux.iter().zip(x).zip(weights) {
                cur_error += w * error(this_scale, this_min, q, v);
            }
            if cur_error < best_error {
                quants.copy_from_slice(aux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Symmetric fit `x ≈ scale·(L - nmax)` with `L` in `0..2·nmax` (`make_qx_quants` with
/// `rmse_type` 1 and no importance weights): starts from the scale that maps the value of
/// largest magnitude to `-nmax`, then tries 18 nearby scales, keeping the best weighted
/// (by `x²`) least-squares fit. Returns the scale and fills `quants`.
fn make_qx_quants(x: &[f32], nmax: i32, quants: &mut [i8]) -> f32 {
    let Some(max) = signed_max(x) else {
        quants.fill(0);
        return 0.0;
    };
    let fit = |iscale: f32, quants: &mut [i8], store: bool| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for (q, &v) in quants.iter_mut().zip(x) {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
            if store {
                *q = (l + nmax) as i8;
            }
            let w = v * v;
            let l = l as f32;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let iscale = -(nmax as f32) / max;
    let (sumlx, suml2) = fit(iscale, quants, true);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = fit(iscale, quants, false);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            fit(iscale, quants, true);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// The value of largest magnitude (the first of equal ones), or `None` when all are below
/// [`GROUP_MAX_EPS`].
fn signed_max(x: &[f32]) -> Option<f32> {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (amax >= GROUP_MAX_EPS).then_some(max)
}

/// Symmetric fit `x ≈ scale·L` with `L` in `-nmax..nmax` (`make_q3_quants` with
/// `do_rmse`): from the scale mapping the largest magnitude to `-nmax`, moves single quants
/// while that improves the `x²`-weighted least-squares fit (at most 5 rounds). Returns the
/// scale and fills `quants` with `L + nmax`.
fn make_q3_quants(x: &[f32], nmax: i32, quants: &mut [i8]) -> f32 {
    let Some(max) = signed_max(x) else {
        quants.fill(0);
        return 0.0;
    };
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (q, &v) in quants.iter_mut().zip(x) {
        let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *q = l as i8;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (q, &v) in quants.iter_mut().zip(x) {
            let w = v * v;
            let l = f32::from(*q);
            let mut slx = sumlx - w * v * l;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * l * l;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != i32::from(*q) {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *q = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for q in quants.iter_mut() {
        *q += nmax as i8;
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// The largest of `values` and 0 (`max_scale`/`max_min` of the C code).
fn positive_max(values: &[f32]) -> f32 {
    values
        .iter()
        .fold(0.0f32, |m, &v| if v > m { v } else { m })
}

/// Quantizes `x` to Q2_K super-blocks as `quantize_row_q2_K_ref` does.
///
/// # Panics
///
/// When `x.len() != y.len() * 256`.
pub fn quantize_row_q2_k(x: &[f32], y: &mut [BlockQ2K]) {
    assert_eq!(
        x.len(),
        y.len() * QK_K,
        "quantize_row_q2_k: length mismatch"
    );
    const Q4SCALE: f32 = 15.0;
    let search = Search {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: true,
    };
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut quants = [0u8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let mut mins = [0.0f32; QK_K / 16];
        for (j, (xs, qs)) in xb
            .chunks_exact(16)
            .zip(quants.chunks_exact_mut(16))
            .enumerate()
        {
            let mut weights = [0.0f32; 16];
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            (scales[j], mins[j]) = make_qkx2_quants(xs, &weights, 3, qs, &search);
        }
        let max_scale = positive_max(&scales);
        let max_min = positive_max(&mins);
        yb.scales = [0; QK_K / 16];
        yb.d = f16::ZERO;
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (s, &scale) in yb.scales.iter_mut().zip(&scales) {
                *s = nearest_int(iscale * scale) as u8;
            }
            yb.d = f16::from_f32(max_scale / Q4SCALE);
        }
        yb.dmin = f16::ZERO;
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (s, &min) in yb.scales.iter_mut().zip(&mins) {
                *s |= (nearest_int(iscale * min) << 4) as u8;
            }
            yb.dmin = f16::from_f32(max_min / Q4SCALE);
        }
        let (d_all, dmin_all) = (yb.d.to_f32(), yb.dmin.to_f32());
        for ((xs, qs), &sc) in xb
            .chunks_exact(16)
            .zip(quants.chunks_exact_mut(16))
            .zip(&yb.scales)
        {
            let d = d_all * f32::from(sc & 0x0F);
            if d == 0.0 {
                continue;
            }
            let dm = dmin_all * f32::from(sc >> 4);
            for (q, &v) in qs.iter_mut().zip(xs) {
                *q = nearest_int((v + dm) / d).clamp(0, 3) as u8;
            }
        }
        pack_2bit(&quants, &mut yb.qs);
    }
}

/// Packs 256 two-bit quants as Q2_K and Q3_K store them: byte `32h + l` of each half `h`
/// holds quants `128h + l + 32k` at bits `2k`.
fn pack_2bit(quants: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for (chunk, out) in quants.chunks_exact(128).zip(qs.chunks_exact_mut(32)) {
        for (l, o) in out.iter_mut().enumerate() {
            *o = chunk[l] | (chunk[l + 32] << 2) | (chunk[l + 64] << 4) | (chunk[l + 96] << 6);
        }
    }
}

/// Quantizes `x` to Q3_K super-blocks as `quantize_row_q3_K_ref` does.
///
/// # Panics
///
/// When `x.len() != y.len() * 256`.
pub fn quantize_row_q3_k(x: &[f32], y: &mut [BlockQ3K]) {
    assert_eq!(
        x.len(),
        y.len() * QK_K,
        "quantize_row_q3_k: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut quants = [0i8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let mut amax = 0.0f32;
        let mut max_scale = 0.0f32;
        for (j, (xs, qs)) in xb
            .chunks_exact(16)
            .zip(quants.chunks_exact_mut(16))
            .enumerate()
        {
            scales[j] = make_q3_quants(xs, 4, qs);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }
        yb.scales = [0; 12];
        yb.d = f16::ZERO;
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, &scale) in scales.iter().enumerate() {
                // C stores the rounded value in an int8_t before clamping.
                let l = ((nearest_int(iscale * scale) as i8).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    yb.scales[j] = l & 0x0F;
                } else {
                    yb.scales[j - 8] |= (l & 0x0F) << 4;
                }
                yb.scales[j % 4 + 8] |= (l >> 4) << (2 * (j / 4));
            }
            yb.d = f16::from_f32(1.0 / iscale);
        }
        let d_all = yb.d.to_f32();
        for (j, (xs, qs)) in xb
            .chunks_exact(16)
            .zip(quants.chunks_exact_mut(16))
            .enumerate()
        {
            let d = d_all * q3_k_scale(j, &yb.scales) as f32;
            if d == 0.0 {
                continue;
            }
            for (q, &v) in qs.iter_mut().zip(xs) {
                *q = (nearest_int(v / d).clamp(-4, 3) + 4) as i8;
            }
        }
        // The high bit of quant j goes to bit j/32 of hmask[j % 32].
        yb.hmask = [0; QK_K / 8];
        let mut low = [0u8; QK_K];
        for (j, (lo, &q)) in low.iter_mut().zip(&quants).enumerate() {
            let mut q = q as u8;
            if q > 3 {
                yb.hmask[j % 32] |= 1 << (j / 32);
                q -= 4;
            }
            *lo = q;
        }
        pack_2bit(&low, &mut yb.qs);
    }
}

/// The part Q4_K and Q5_K share: fits the 8 sub-blocks of 32 with quants in `0..=nmax`,
/// stores the 6-bit scales and minimums and the two f16 scales, and returns the quants.
fn quantize_k45(
    xb: &[f32],
    nmax: i32,
    search: &Search,
    d: &mut f16,
    dmin: &mut f16,
    packed: &mut [u8; K_SCALE_SIZE],
) -> [u8; QK_K] {
    let mut quants = [0u8; QK_K];
    let mut scales = [0.0f32; QK_K / 32];
    let mut mins = [0.0f32; QK_K / 32];
    for (j, (xs, qs)) in xb
        .chunks_exact(32)
        .zip(quants.chunks_exact_mut(32))
        .enumerate()
    {
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let mut weights = [0.0f32; 32];
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        (scales[j], mins[j]) = make_qkx2_quants(xs, &weights, nmax, qs, search);
    }
    let max_scale = positive_max(&scales);
    let max_min = positive_max(&mins);
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    *packed = [0; K_SCALE_SIZE];
    for j in 0..QK_K / 32 {
        // C keeps the low byte of the rounded value, then caps it at 63.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    *d = f16::from_f32(max_scale / 63.0);
    *dmin = f16::from_f32(max_min / 63.0);
    let (d_all, dmin_all) = (d.to_f32(), dmin.to_f32());
    for (j, (xs, qs)) in xb
        .chunks_exact(32)
        .zip(quants.chunks_exact_mut(32))
        .enumerate()
    {
        let (sc, m) = get_scale_min_k4(j, packed);
        let d = d_all * f32::from(sc);
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * f32::from(m);
        for (q, &v) in qs.iter_mut().zip(xs) {
            *q = nearest_int((v + dm) / d).clamp(0, nmax) as u8;
        }
    }
    quants
}

/// Quantizes `x` to Q4_K super-blocks as `quantize_row_q4_K_ref` does.
///
/// # Panics
///
/// When `x.len() != y.len() * 256`.
pub fn quantize_row_q4_k(x: &[f32], y: &mut [BlockQ4K]) {
    assert_eq!(
        x.len(),
        y.len() * QK_K,
        "quantize_row_q4_k: length mismatch"
    );
    let search = Search {
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    };
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let quants = quantize_k45(xb, 15, &search, &mut yb.d, &mut yb.dmin, &mut yb.scales);
        // Byte l of each run of 32 holds quant l of an even sub-block and, above it, quant
        // l of the next one.
        for (chunk, out) in quants.chunks_exact(64).zip(yb.qs.chunks_exact_mut(32)) {
            for (l, o) in out.iter_mut().enumerate() {
                *o = chunk[l] | (chunk[l + 32] << 4);
            }
        }
    }
}

/// Quantizes `x` to Q5_K super-blocks as `quantize_row_q5_K_ref` does.
///
/// # Panics
///
/// When `x.len() != y.len() * 256`.
pub fn quantize_row_q5_k(x: &[f32], y: &mut [BlockQ5K]) {
    assert_eq!(
        x.len(),
        y.len() * QK_K,
        "quantize_row_q5_k: length mismatch"
    );
    let search = Search {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    };
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let quants = quantize_k45(xb, 31, &search, &mut yb.d, &mut yb.dmin, &mut yb.scales);
        // As Q4_K, with the fifth bit of quant l of sub-block s in bit s of qh[l].
        yb.qh = [0; QK_K / 8];
        for (c, (chunk, out)) in quants
            .chunks_exact(64)
            .zip(yb.qs.chunks_exact_mut(32))
            .enumerate()
        {
            for (l, o) in out.iter_mut().enumerate() {
                let (lo, hi) = (chunk[l], chunk[l + 32]);
                yb.qh[l] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
                *o = (lo & 0x0F) | ((hi & 0x0F) << 4);
            }
        }
    }
}

/// Quantizes `x` to Q6_K super-blocks as `quantize_row_q6_K_ref` does.
///
/// # Panics
///
/// When `x.len() != y.len() * 256`.
pub fn quantize_row_q6_k(x: &[f32], y: &mut [BlockQ6K]) {
    assert_eq!(
        x.len(),
        y.len() * QK_K,
        "quantize_row_q6_k: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut quants = [0i8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let mut max_abs_scale = 0.0f32;
        let mut max_scale = 0.0f32;
        for (j, (xs, qs)) in xb
            .chunks_exact(16)
            .zip(quants.chunks_exact_mut(16))
            .enumerate()
        {
            scales[j] = make_qx_quants(xs, 32, qs);
            if scales[j].abs() > max_abs_scale {
                max_abs_scale = scales[j].abs();
                max_scale = scales[j];
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            *yb = BlockQ6K::ZERO;
            continue;
        }
        let iscale = -128.0 / max_scale;
        yb.d = f16::from_f32(1.0 / iscale);
        for (s, &scale) in yb.scales.iter_mut().zip(&scales) {
            *s = nearest_int(iscale * scale).min(127) as i8;
        }
        let d_all = yb.d.to_f32();
        for ((xs, qs), &sc) in xb
            .chunks_exact(16)
            .zip(quants.chunks_exact_mut(16))
            .zip(&yb.scales)
        {
            let d = d_all * f32::from(sc);
            if d == 0.0 {
                continue;
            }
            for (q, &v) in qs.iter_mut().zip(xs) {
                *q = (nearest_int(v / d).clamp(-32, 31) + 32) as i8;
            }
        }
        // In each half of 128, byte l of ql holds quants l (low nibble) and l + 64, byte
        // l + 32 quants l + 32 and l + 96; qh[l] holds the top two bits of all four.
        for ((chunk, ql), qh) in quants
            .chunks_exact(128)
            .zip(yb.ql.chunks_exact_mut(64))
            .zip(yb.qh.chunks_exact_mut(32))
        {
            for l in 0..32 {
                let q = [0, 32, 64, 96].map(|k| chunk[l + k] as u8);
                ql[l] = (q[0] & 0x0F) | ((q[2] & 0x0F) << 4);
                ql[l + 32] = (q[1] & 0x0F) | ((q[3] & 0x0F) << 4);
                qh[l] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-2.6), -3);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
        assert_eq!(nearest_int(-4_194_303.0), -4_194_303);
    }

    #[test]
    fn zero_block_quantizes_to_zero_scales() {
        let x = [0.0f32; QK_K];
        let mut q6 = [BlockQ6K {
            d: f16::ONE,
            ..BlockQ6K::ZERO
        }];
        quantize_row_q6_k(&x, &mut q6);
        assert_eq!(q6[0].d, f16::ZERO);
        assert!(q6[0].ql.iter().chain(&q6[0].qh).all(|&b| b == 0));
        let mut q4 = [BlockQ4K {
            d: f16::ONE,
            ..BlockQ4K::ZERO
        }];
        quantize_row_q4_k(&x, &mut q4);
        assert_eq!((q4[0].d, q4[0].dmin), (f16::ZERO, f16::ZERO));
    }
}
