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
use crate::quant::kquants_fit::{
    GROUP_MAX_EPS, Search, make_q3_quants, make_qkx2_quants, make_qx_quants, nearest_int,
    positive_max,
};

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
