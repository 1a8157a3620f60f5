//! Rotary position embedding (RoPE) with YaRN scaling and per-pair frequency factors, as
//! ggml's `rope_ext` computes it on the CPU.
//!
//! For position `p` and pair `i` of `n_dims` rotated dimensions, ggml's angle is
//! `theta_i = p * base^(-2i/n_dims)`, built by repeated `f32` multiplication
//! (`theta_0 = p`, `theta_{i+1} = theta_i * base^(-2/n_dims)`), divided by the pair's
//! frequency factor (Llama 3's `rope_freqs` tensor), then scaled by YaRN:
//!
//! ```text
//! interp = freq_scale * extrap                       (extrap = theta_i / factor_i)
//! mix    = ramp(i) * ext_factor                      (only when ext_factor != 0)
//! angle  = interp * (1 - mix) + extrap * mix
//! mscale = attn_factor * (1 + 0.1 * ln(1 / freq_scale))   (the factor only when ext_factor != 0)
//! cos_i  = cos(angle) * mscale,   sin_i = sin(angle) * mscale
//! ramp(i) = 1 - clamp((i - low) / max(0.001, high - low), 0, 1)   with [low, high] = corr_dims
//! ```
//!
//! We build the angles in that same order (not with `powf` per pair) because at long
//! positions the `f32` rounding of the running product is visible in the output.
//!
//! A pair `(x0, x1)` becomes `(x0*cos - x1*sin, x0*sin + x1*cos)`. The layouts differ in
//! which elements pair up; dimensions past `n_dims` (partial rotary) are left as they are.
//!
//! llama.cpp's default x86 build (GCC, `-march=native`) fuses the rotation into
//! multiply-adds, and we fuse it the same way (found by matching its outputs on a real
//! model): `x0*cos - x1*sin` is `fma(x0, cos, -(x1*sin))` and
//! `x0*sin + x1*cos` is `fma(x0, sin, x1*cos)`, the other product rounded first. The
//! results are its bits; one last bit here flips an 8-bit activation quant downstream.
//! (The YaRN mix, which GCC fuses too, is still computed unfused.)

use thiserror::Error;

/// Which elements of a head form the rotated pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// Adjacent pairs `(2i, 2i + 1)`: ggml's `GGML_ROPE_TYPE_NORMAL`, used by llama,
    /// Llama 2/3, Mistral and SmolLM2 GGUF files (the converter permutes Q and K so
    /// that this layout is right for them).
    Normal,
    /// Pairs `(i, i + n_dims/2)`: ggml's `GGML_ROPE_TYPE_NEOX`, used by Gemma, Qwen,
    /// Phi and GPT-NeoX.
    NeoX,
}

/// Frequency and YaRN parameters of a rotary embedding.
///
/// The field names are ggml's `rope_ext` arguments. Plain RoPE is
/// [`RopeParams::new`]`(freq_base)`: no scaling, no extrapolation mix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeParams {
    /// Base of the geometric frequency progression (`rope.freq_base`, 10000 by default).
    pub freq_base: f32,
    /// Position interpolation factor: 1 / the context scaling factor (1 for none).
    pub freq_scale: f32,
    /// YaRN extrapolation mix (0 turns YaRN off; 1 is full YaRN).
    pub ext_factor: f32,
    /// Magnitude multiplier applied to both cos and sin (1 for none).
    pub attn_factor: f32,
    /// YaRN correction dimensions `[low, high]`, from [`rope_yarn_corr_dims`]; unused
    /// when `ext_factor` is 0.
    pub corr_dims: [f32; 2],
}

impl RopeParams {
    /// Plain RoPE with frequency base `freq_base`.
    pub fn new(freq_base: f32) -> Self {
        Self {
            freq_base,
            freq_scale: 1.0,
            ext_factor: 0.0,
            attn_factor: 1.0,
            corr_dims: [0.0, 0.0],
        }
    }
}

/// A rotary configuration that cannot run.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RopeError {
    /// The number of rotated dimensions is zero or odd.
    #[error("rotary dimension count {0} must be even and non-zero")]
    BadDims(usize),
    /// More dimensions would be rotated than a head has.
    #[error("rotary dimension count {n_dims} exceeds the head size {head_dim}")]
    DimsExceedHead {
        /// Rotated dimensions asked for.
        n_dims: usize,
        /// Elements per head.
        head_dim: usize,
    },
    /// A frequency parameter is not a finite positive number (or, for `ext_factor`
    /// and `attn_factor`, not finite).
    #[error("rotary parameter {name} = {value} is out of range")]
    BadParam {
        /// The parameter's field name.
        name: &'static str,
        /// Its value.
        value: f32,
    },
    /// Fewer frequency factors than rotated pairs.
    #[error("{got} rotary frequency factors given, {want} needed (one per rotated pair)")]
    FreqFactorsTooShort {
        /// Factors given.
        got: usize,
        /// Rotated pairs.
        want: usize,
    },
    /// A frequency factor is zero, negative or not finite.
    #[error("rotary frequency factor {index} = {value} is not a finite positive number")]
    BadFreqFactor {
        /// Its index (the pair it applies to).
        index: usize,
        /// Its value.
        value: f32,
    },
}

/// YaRN's correction dimensions `[low, high]` for `n_dims` rotated dimensions trained at
/// context `n_ctx_orig`, as ggml's `ggml_rope_yarn_corr_dims`.
///
/// `corr_dim(beta) = n_dims * ln(n_ctx_orig / (beta * 2π)) / (2 * ln(freq_base))`;
/// `low = max(0, floor(corr_dim(beta_fast)))`, `high = min(n_dims - 1,
/// ceil(corr_dim(beta_slow)))`, all in `f32`. llama.cpp's defaults are
/// `beta_fast = 32`, `beta_slow = 1`.
pub fn rope_yarn_corr_dims(
    n_dims: usize,
    n_ctx_orig: u32,
    freq_base: f32,
    beta_fast: f32,
    beta_slow: f32,
) -> [f32; 2] {
    let corr_dim = |beta: f32| {
        n_dims as f32 * (n_ctx_orig as f32 / (beta * 2.0 * std::f32::consts::PI)).ln()
            / (2.0 * freq_base.ln())
    };
    let low = corr_dim(beta_fast).floor();
    let high = corr_dim(beta_slow).ceil();
    // C's MAX/MIN macros: the comparison picks the second operand when it is NaN.
    let low = if 0.0 > low { 0.0 } else { low };
    let top = n_dims as f32 - 1.0;
    let high = if top < high { top } else { high };
    [low, high]
}

/// A validated rotary embedding for heads of `head_dim` elements, of which the first
/// `n_dims` are rotated.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    n_dims: usize,
    head_dim: usize,
    layout: RopeLayout,
    params: RopeParams,
    theta_scale: f32,
    yarn_mscale: f32,
    freq_factors: Option<Vec<f32>>,
}

impl Rope {
    /// Checks the configuration: `n_dims` even, non-zero and at most `head_dim`;
    /// `freq_base` and `freq_scale` finite and positive; `ext_factor` and `attn_factor`
    /// finite; at least `n_dims / 2` frequency factors, each finite and positive (only
    /// the first `n_dims / 2` are used).
    pub fn new(
        n_dims: usize,
        head_dim: usize,
        layout: RopeLayout,
        params: RopeParams,
        freq_factors: Option<&[f32]>,
    ) -> Result<Self, RopeError> {
        if n_dims == 0 || !n_dims.is_multiple_of(2) {
            return Err(RopeError::BadDims(n_dims));
        }
        if n_dims > head_dim {
            return Err(RopeError::DimsExceedHead { n_dims, head_dim });
        }
        let positive = |name, value: f32| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(RopeError::BadParam { name, value })
            }
        };
        let finite = |name, value: f32| {
            if value.is_finite() {
                Ok(())
            } else {
                Err(RopeError::BadParam { name, value })
            }
        };
        positive("freq_base", params.freq_base)?;
        positive("freq_scale", params.freq_scale)?;
        finite("ext_factor", params.ext_factor)?;
        finite("attn_factor", params.attn_factor)?;
        finite("corr_dims[0]", params.corr_dims[0])?;
        finite("corr_dims[1]", params.corr_dims[1])?;
        let n_pairs = n_dims / 2;
        let freq_factors = match freq_factors {
            None => None,
            Some(f) if f.len() < n_pairs => {
                return Err(RopeError::FreqFactorsTooShort {
                    got: f.len(),
                    want: n_pairs,
                });
            }
            Some(f) => {
                if let Some((index, &value)) = f[..n_pairs]
                    .iter()
                    .enumerate()
                    .find(|(_, v)| !(v.is_finite() && **v > 0.0))
                {
                    return Err(RopeError::BadFreqFactor { index, value });
                }
                Some(f[..n_pairs].to_vec())
            }
        };
        let yarn_mscale = if params.ext_factor != 0.0 {
            params.attn_factor * (1.0 + 0.1 * (1.0 / params.freq_scale).ln())
        } else {
            params.attn_factor
        };
        Ok(Self {
            n_dims,
            head_dim,
            layout,
            params,
            theta_scale: params.freq_base.powf(-2.0 / n_dims as f32),
            yarn_mscale,
            freq_factors,
        })
    }

    /// Rotated dimensions per head; also the length of one position's cos/sin table.
    pub fn n_dims(&self) -> usize {
        self.n_dims
    }

    /// Elements per head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// The pair layout.
    pub fn layout(&self) -> RopeLayout {
        self.layout
    }

    /// The frequency and YaRN parameters.
    pub fn params(&self) -> &RopeParams {
        &self.params
    }

    /// The per-pair frequency divisors (Llama 3.1's `rope_freqs`, Phi-3's long and short
    /// factors), when the model has them: what another backend's RoPE needs besides
    /// [`Rope::params`].
    pub fn freq_factors(&self) -> Option<&[f32]> {
        self.freq_factors.as_deref()
    }

    /// Writes the table for position `pos` into `cos_sin` (`n_dims` values): pair `i`
    /// is `cos_sin[2i] = cos_i`, `cos_sin[2i + 1] = sin_i`, both already multiplied by
    /// the magnitude scale. One table serves every head of a token.
    ///
    /// `pos` may be negative: rotating a cached key by a position delta (llama.cpp's
    /// context shift, `build_rope_shift`) is RoPE at the delta with the same parameters.
    ///
    /// # Panics
    /// If `cos_sin.len() != n_dims`.
    pub fn cos_sin(&self, pos: i32, cos_sin: &mut [f32]) {
        assert_eq!(
            cos_sin.len(),
            self.n_dims,
            "rope: cos/sin table length differs from n_dims"
        );
        let p = &self.params;
        let mut theta = pos as f32;
        for (i, pair) in cos_sin.chunks_exact_mut(2).enumerate() {
            let factor = self.freq_factors.as_ref().map_or(1.0, |f| f[i]);
            let extrap = theta / factor;
            let interp = p.freq_scale * extrap;
            let (angle, mscale) = if p.ext_factor != 0.0 {
                let mix = yarn_ramp(p.corr_dims, i) * p.ext_factor;
                (interp * (1.0 - mix) + extrap * mix, self.yarn_mscale)
            } else {
                (interp, self.yarn_mscale)
            };
            pair[0] = angle.cos() * mscale;
            pair[1] = angle.sin() * mscale;
            theta *= self.theta_scale;
        }
    }

    /// Writes the tables of several positions one after another into `cos_sin`
    /// (`positions.len() * n_dims` values), as [`Rope::cos_sin`] for each.
    ///
    /// # Panics
    /// If `cos_sin.len() != positions.len() * n_dims`.
    pub fn cos_sin_batch(&self, positions: &[i32], cos_sin: &mut [f32]) {
        assert_eq!(
            cos_sin.len(),
            positions.len() * self.n_dims,
            "rope: batch cos/sin table length differs from positions * n_dims"
        );
        for (&pos, table) in positions.iter().zip(cos_sin.chunks_exact_mut(self.n_dims)) {
            self.cos_sin(pos, table);
        }
    }

    /// Rotates one head in place with a table from [`Rope::cos_sin`]; elements past
    /// `n_dims` are unchanged.
    ///
    /// # Panics
    /// If `head.len() != head_dim` or `cos_sin.len() != n_dims`.
    pub fn rotate_head(&self, head: &mut [f32], cos_sin: &[f32]) {
        assert_eq!(
            head.len(),
            self.head_dim,
            "rope: head length differs from head_dim"
        );
        match self.layout {
            RopeLayout::Normal => rope_normal(head, cos_sin),
            RopeLayout::NeoX => rope_neox(head, cos_sin),
        }
    }

    /// Rotates every head of one token in place: `x` holds whole heads of `head_dim`
    /// elements back to back, all at the position `cos_sin` was built for.
    ///
    /// # Panics
    /// If `x.len()` is not a multiple of `head_dim` or `cos_sin.len() != n_dims`.
    pub fn rotate_heads(&self, x: &mut [f32], cos_sin: &[f32]) {
        assert!(
            x.len().is_multiple_of(self.head_dim),
            "rope: input is not whole heads"
        );
        for head in x.chunks_exact_mut(self.head_dim) {
            self.rotate_head(head, cos_sin);
        }
    }
}

/// YaRN's ramp for pair `i`: 1 below `low`, 0 above `high`, linear between.
fn yarn_ramp(corr_dims: [f32; 2], i: usize) -> f32 {
    let [low, high] = corr_dims;
    let y = (i as f32 - low) / f32::max(0.001, high - low);
    1.0 - y.clamp(0.0, 1.0)
}

/// Rotates adjacent pairs `(head[2i], head[2i + 1])` by table pair `i`, for the first
/// `cos_sin.len()` elements of `head` (ggml's normal layout); the rest is unchanged.
///
/// # Panics
/// If `cos_sin` has odd length or is longer than `head`.
pub fn rope_normal(head: &mut [f32], cos_sin: &[f32]) {
    let n_dims = cos_sin.len();
    assert!(
        n_dims.is_multiple_of(2) && n_dims <= head.len(),
        "rope: bad table length {n_dims}"
    );
    crate::arch::with_fma(|| normal_pairs(head, cos_sin));
}

#[inline(always)]
fn normal_pairs(head: &mut [f32], cos_sin: &[f32]) {
    let n_dims = cos_sin.len();
    for (x, cs) in head[..n_dims]
        .chunks_exact_mut(2)
        .zip(cos_sin.chunks_exact(2))
    {
        (x[0], x[1]) = rotate(x[0], x[1], cs[0], cs[1]);
    }
}

/// One pair rotated as GCC compiles ggml's `rotate_pairs` (see the module comment).
#[inline(always)]
fn rotate(x0: f32, x1: f32, cos: f32, sin: f32) -> (f32, f32) {
    (x0.mul_add(cos, -(x1 * sin)), x0.mul_add(sin, x1 * cos))
}

/// Rotates pairs `(head[i], head[i + n_dims/2])` by table pair `i`, with
/// `n_dims = cos_sin.len()` (ggml's NeoX layout); elements past `n_dims` are unchanged.
///
/// # Panics
/// If `cos_sin` has odd length or is longer than `head`.
pub fn rope_neox(head: &mut [f32], cos_sin: &[f32]) {
    let n_dims = cos_sin.len();
    assert!(
        n_dims.is_multiple_of(2) && n_dims <= head.len(),
        "rope: bad table length {n_dims}"
    );
    crate::arch::with_fma(|| neox_pairs(head, cos_sin));
}

#[inline(always)]
fn neox_pairs(head: &mut [f32], cos_sin: &[f32]) {
    let n_dims = cos_sin.len();
    let (first, second) = head[..n_dims].split_at_mut(n_dims / 2);
    for ((a, b), cs) in first
        .iter_mut()
        .zip(second.iter_mut())
        .zip(cos_sin.chunks_exact(2))
    {
        (*a, *b) = rotate(*a, *b, cs[0], cs[1]);
    }
}

#[cfg(test)]
#[path = "rope_tests.rs"]
mod tests;
