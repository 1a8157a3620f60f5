//! The fitting helpers of llama.cpp's k-quant reference quantizers (`ggml-quants.c`):
//! `nearest_int` and the per-sub-block scale searches `make_qkx2_quants` (asymmetric, with
//! a minimum), `make_qx_quants` and `make_q3_quants` (symmetric), in the same f32
//! operations and order as the C code, so the quants and scales they find are identical.

/// Groups whose largest magnitude is below this are quantized as zeros (`GROUP_MAX_EPS`).
pub(super) const GROUP_MAX_EPS: f32 = 1e-15;

/// Rounds to the nearest integer, ties to even, as `nearest_int` does: adding 1.5·2²³ leaves
/// the rounded integer in the low mantissa bits. Valid for |x| ≤ 4194303, as in C.
pub(super) fn nearest_int(x: f32) -> i32 {
    let biased = x + 12_582_912.0;
    (biased.to_bits() as i32 & 0x007F_FFFF) - 0x0040_0000
}

/// The scale search of `make_qkx2_quants`: candidate inverse scales
/// `(rmin + rdelta·is + nmax) / (max - min)` for `is` in `0..=nstep`.
pub(super) struct Search {
    pub(super) rmin: f32,
    pub(super) rdelta: f32,
    pub(super) nstep: i32,
    /// Weigh absolute rather than squared errors.
    pub(super) use_mad: bool,
}

/// Fits `x ≈ scale·L - min` with `L` in `0..=nmax` (`make_qkx2_quants`), minimising the
/// weighted error over the searched scales, each with the least-squares scale and minimum
/// of its quants. Returns `(scale, min)` (min ≥ 0 is subtracted) and fills `quants`.
pub(super) fn make_qkx2_quants(
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
pub(super) fn make_qx_quants(x: &[f32], nmax: i32, quants: &mut [i8]) -> f32 {
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
pub(super) fn make_q3_quants(x: &[f32], nmax: i32, quants: &mut [i8]) -> f32 {
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
pub(super) fn positive_max(values: &[f32]) -> f32 {
    values
        .iter()
        .fold(0.0f32, |m, &v| if v > m { v } else { m })
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
}
