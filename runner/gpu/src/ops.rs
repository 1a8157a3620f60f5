//! The layer math between the matrix products: RMSNorm, LayerNorm, RoPE, SwiGLU/GeGLU and
//! softmax,
//! each a WGSL kernel over f32 buffers with the CPU twin in `kernels::ops`.

use crate::buffer::GpuBuffer;
use crate::device::Gpu;
use crate::error::{GpuError, Result};
use crate::kernel::{Dispatch, Params, WORKGROUP, to_u32};

const RMS_NORM: &str = include_str!("shaders/rms_norm.wgsl");
const LAYER_NORM: &str = include_str!("shaders/layer_norm.wgsl");
const SOFTMAX: &str = include_str!("shaders/softmax.wgsl");
const GLU: &str = include_str!("shaders/glu.wgsl");
const ROPE: &str = include_str!("shaders/rope.wgsl");

/// Which elements of a head form the rotated pairs (ggml's rope modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Adjacent pairs `(2i, 2i + 1)`: llama, Mistral, SmolLM2.
    Normal,
    /// Pairs `(i, i + n_dims/2)`: Gemma, Qwen, Phi, GPT-NeoX.
    NeoX,
}

/// A rotary embedding's shape and frequencies, with the field names of ggml's `rope_ext`
/// (and of `kernels::ops::RopeParams`), so the runner can fill one from the other.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeConfig {
    /// Rotated dimensions per head (even; fewer than `head_dim` for partial rotary).
    pub n_dims: usize,
    /// Elements per head.
    pub head_dim: usize,
    /// The pair layout.
    pub layout: RopeLayout,
    /// Base of the frequency progression (`rope.freq_base`).
    pub freq_base: f32,
    /// Position interpolation factor (1 for none).
    pub freq_scale: f32,
    /// YaRN extrapolation mix (0 for plain RoPE).
    pub ext_factor: f32,
    /// Magnitude multiplier of cos and sin.
    pub attn_factor: f32,
    /// YaRN correction dimensions `[low, high]`.
    pub corr_dims: [f32; 2],
}

impl RopeConfig {
    /// Plain RoPE: no scaling, no YaRN.
    pub fn new(n_dims: usize, head_dim: usize, layout: RopeLayout, freq_base: f32) -> Self {
        Self {
            n_dims,
            head_dim,
            layout,
            freq_base,
            freq_scale: 1.0,
            ext_factor: 0.0,
            attn_factor: 1.0,
            corr_dims: [0.0, 0.0],
        }
    }
}

pub(crate) fn shape(kernel: &'static str, detail: String) -> GpuError {
    GpuError::Shape { kernel, detail }
}

/// Checks that each buffer holds at least `need` f32 values.
pub(crate) fn check_len(
    kernel: &'static str,
    need: usize,
    buffers: &[(&str, &GpuBuffer)],
) -> Result<()> {
    for (name, buffer) in buffers {
        if buffer.len_words() < need {
            return Err(shape(
                kernel,
                format!("{name} holds {} values, {need} needed", buffer.len_words()),
            ));
        }
    }
    Ok(())
}

impl Gpu {
    /// RMSNorm of `rows` rows of `n` values with a weight of `n` values:
    /// `out = x / sqrt(mean(x²) + eps) * weight` (as `kernels::ops::rms_norm`).
    pub fn rms_norm(
        &self,
        x: &GpuBuffer,
        weight: &GpuBuffer,
        out: &GpuBuffer,
        rows: usize,
        n: usize,
        eps: f32,
    ) -> Result<()> {
        const KERNEL: &str = "rms_norm";
        check_len(KERNEL, rows * n, &[("x", x), ("out", out)])?;
        check_len(KERNEL, n, &[("weight", weight)])?;
        if n == 0 {
            return Ok(());
        }
        let rows = to_u32(KERNEL, "rows", rows)?;
        let pipeline = self.pipeline(KERNEL, || RMS_NORM.to_owned())?;
        let [gx, gy] = self.grid(rows);
        self.dispatch(
            &pipeline,
            Dispatch {
                kernel: KERNEL,
                buffers: &[x, weight, out],
                params: Params::default()
                    .u32(rows)
                    .u32(to_u32(KERNEL, "n", n)?)
                    .f32(eps),
                workgroups: [gx, gy, 1],
            },
        )
    }

    /// LayerNorm of `rows` rows of `n` values with a weight and a bias of `n` values:
    /// `out = (x - mean) / sqrt(var + eps) * weight + bias` (as `kernels::ops::layer_norm`;
    /// BERT's encoders).
    #[expect(
        clippy::too_many_arguments,
        reason = "ggml's norm operands and sizes; a struct would only rename them"
    )]
    pub fn layer_norm(
        &self,
        x: &GpuBuffer,
        weight: &GpuBuffer,
        bias: &GpuBuffer,
        out: &GpuBuffer,
        rows: usize,
        n: usize,
        eps: f32,
    ) -> Result<()> {
        const KERNEL: &str = "layer_norm";
        check_len(KERNEL, rows * n, &[("x", x), ("out", out)])?;
        check_len(KERNEL, n, &[("weight", weight), ("bias", bias)])?;
        if n == 0 {
            return Ok(());
        }
        let rows = to_u32(KERNEL, "rows", rows)?;
        let pipeline = self.pipeline(KERNEL, || LAYER_NORM.to_owned())?;
        let [gx, gy] = self.grid(rows);
        self.dispatch(
            &pipeline,
            Dispatch {
                kernel: KERNEL,
                buffers: &[x, weight, bias, out],
                params: Params::default()
                    .u32(rows)
                    .u32(to_u32(KERNEL, "n", n)?)
                    .f32(eps),
                workgroups: [gx, gy, 1],
            },
        )
    }

    /// Softmax of each of `rows` rows of `n` values of `x * scale` into `out` (as
    /// `kernels::ops::softmax_scaled_masked` without a mask); an all `-inf` row gives zeros.
    pub fn softmax(
        &self,
        x: &GpuBuffer,
        out: &GpuBuffer,
        rows: usize,
        n: usize,
        scale: f32,
    ) -> Result<()> {
        const KERNEL: &str = "softmax";
        check_len(KERNEL, rows * n, &[("x", x), ("out", out)])?;
        if n == 0 {
            return Ok(());
        }
        let rows = to_u32(KERNEL, "rows", rows)?;
        let pipeline = self.pipeline(KERNEL, || SOFTMAX.to_owned())?;
        let [gx, gy] = self.grid(rows);
        self.dispatch(
            &pipeline,
            Dispatch {
                kernel: KERNEL,
                buffers: &[x, out],
                params: Params::default()
                    .u32(rows)
                    .u32(to_u32(KERNEL, "n", n)?)
                    .f32(scale),
                workgroups: [gx, gy, 1],
            },
        )
    }

    /// SwiGLU over `n` values: `out = silu(gate) * up` (as `kernels::ops::swiglu`).
    pub fn swiglu(
        &self,
        gate: &GpuBuffer,
        up: &GpuBuffer,
        out: &GpuBuffer,
        n: usize,
    ) -> Result<()> {
        self.glu("swiglu", gate, up, out, n)
    }

    /// GeGLU over `n` values: `out = gelu_tanh(gate) * up` (as `kernels::ops::geglu`,
    /// which rounds through ggml's f16 table; this computes the formula in f32).
    pub fn geglu(&self, gate: &GpuBuffer, up: &GpuBuffer, out: &GpuBuffer, n: usize) -> Result<()> {
        self.glu("geglu", gate, up, out, n)
    }

    fn glu(
        &self,
        kernel: &'static str,
        gate: &GpuBuffer,
        up: &GpuBuffer,
        out: &GpuBuffer,
        n: usize,
    ) -> Result<()> {
        check_len(kernel, n, &[("gate", gate), ("up", up), ("out", out)])?;
        let n = to_u32(kernel, "n", n)?;
        let gelu = kernel == "geglu";
        let pipeline = self.pipeline(kernel, || format!("const GELU: bool = {gelu};\n{GLU}"))?;
        let [gx, gy] = self.grid(n.div_ceil(WORKGROUP));
        self.dispatch(
            &pipeline,
            Dispatch {
                kernel,
                buffers: &[gate, up, out],
                params: Params::default().u32(n),
                workgroups: [gx, gy, 1],
            },
        )
    }

    /// Rotates, in place, `positions.len()` tokens of `n_heads` heads in `x`
    /// (`[token][head][head_dim]`), token `t` at `positions[t]` (as `kernels::ops::Rope`).
    /// `freq_factors`, when given, divides each pair's angle (Llama 3.1's `rope_freqs`).
    pub fn rope(
        &self,
        x: &GpuBuffer,
        n_heads: usize,
        positions: &[i32],
        config: &RopeConfig,
        freq_factors: Option<&[f32]>,
    ) -> Result<()> {
        const KERNEL: &str = "rope";
        let RopeConfig {
            n_dims, head_dim, ..
        } = *config;
        if n_dims == 0 || !n_dims.is_multiple_of(2) || n_dims > head_dim {
            return Err(shape(
                KERNEL,
                format!(
                    "{n_dims} rotated dimensions must be even, non-zero and at most the head size {head_dim}"
                ),
            ));
        }
        let pairs = n_dims / 2;
        if freq_factors.is_some_and(|f| f.len() < pairs) {
            return Err(shape(
                KERNEL,
                format!("fewer frequency factors than the {pairs} pairs"),
            ));
        }
        check_len(KERNEL, positions.len() * n_heads * head_dim, &[("x", x)])?;
        let total = to_u32(KERNEL, "pairs", positions.len() * n_heads * pairs)?;
        if total == 0 {
            return Ok(());
        }
        let ones;
        let factors = match freq_factors {
            Some(f) => &f[..pairs],
            None => {
                ones = vec![1.0; pairs];
                &ones
            }
        };
        let factors = self.constant("rope frequency factors", bytemuck::cast_slice(factors))?;
        let positions_gpu = self.constant("rope positions", bytemuck::cast_slice(positions))?;
        let mscale = if config.ext_factor != 0.0 {
            config.attn_factor * (1.0 + 0.1 * (1.0 / config.freq_scale).ln())
        } else {
            config.attn_factor
        };
        let pipeline = self.pipeline(KERNEL, || ROPE.to_owned())?;
        let [gx, gy] = self.grid(total.div_ceil(WORKGROUP));
        self.dispatch(
            &pipeline,
            Dispatch {
                kernel: KERNEL,
                buffers: &[x, &positions_gpu, &factors],
                params: Params::default()
                    .u32(to_u32(KERNEL, "tokens", positions.len())?)
                    .u32(to_u32(KERNEL, "heads", n_heads)?)
                    .u32(to_u32(KERNEL, "head_dim", head_dim)?)
                    .u32(pairs as u32 * 2)
                    .u32(u32::from(config.layout == RopeLayout::NeoX))
                    .f32(config.freq_scale)
                    .f32(config.ext_factor)
                    .f32(mscale)
                    .f32(config.freq_base.powf(-2.0 / n_dims as f32))
                    .f32(config.corr_dims[0])
                    .f32(config.corr_dims[1]),
                workgroups: [gx, gy, 1],
            },
        )
    }
}
