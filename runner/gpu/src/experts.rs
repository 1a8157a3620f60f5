//! The glue of a mixture of experts on the device: each expert's outputs put back in the
//! order of the router's choices, and each token's chosen outputs summed with their
//! weights. The router's choice itself is made on the CPU from the router's logits; each
//! expert's products are [`Gpu::matmul_expert`].

use crate::buffer::GpuBuffer;
use crate::device::Gpu;
use crate::error::Result;
use crate::kernel::{Dispatch, Params, WORKGROUP, check_distinct, to_u32};
use crate::ops::{check_len, shape};

const SCATTER_ROWS: &str = include_str!("shaders/scatter_rows.wgsl");
const COMBINE_EXPERTS: &str = include_str!("shaders/combine_experts.wgsl");

impl Gpu {
    /// Row `rows[k]` of `dst` (`width` f32 values) becomes row `k` of `src`, for `k` in
    /// `0..rows.len()`: the inverse of [`Gpu::copy_rows`]. The rows must be distinct.
    /// `dst` and `src` must be different buffers.
    pub fn scatter_rows(
        &self,
        src: &GpuBuffer,
        rows: &[u32],
        width: usize,
        dst: &GpuBuffer,
    ) -> Result<()> {
        let mut sorted = rows.to_vec();
        sorted.sort_unstable();
        if let Some(twice) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(shape(
                "scatter_rows",
                format!("row {} is written twice", twice[0]),
            ));
        }
        self.move_rows(("scatter_rows", SCATTER_ROWS), src, rows, width, dst, true)
    }

    /// `dst[t] = Σ_s weights[t·k + s] · outputs[t·k + s]` over rows of `width` values, for
    /// the `weights.len() / k` tokens, the slots added in order: each token's `k` chosen
    /// experts' outputs (in `outputs`, slot by slot) mixed by the router's weights.
    pub fn combine_experts(
        &self,
        outputs: &GpuBuffer,
        weights: &[f32],
        k: usize,
        width: usize,
        dst: &GpuBuffer,
    ) -> Result<()> {
        const KERNEL: &str = "combine_experts";
        if k == 0 || !weights.len().is_multiple_of(k) {
            return Err(shape(
                KERNEL,
                format!(
                    "{} weights are not whole tokens of {k} slots",
                    weights.len()
                ),
            ));
        }
        if weights.is_empty() || width == 0 {
            return Ok(());
        }
        let n = (weights.len() / k).saturating_mul(width);
        check_len(KERNEL, n, &[("dst", dst)])?;
        check_len(KERNEL, n.saturating_mul(k), &[("outputs", outputs)])?;
        check_distinct(KERNEL, dst, outputs)?;
        let n = to_u32(KERNEL, "values", n)?;
        let weights = self.upload_f32("expert weights", weights)?;
        let pipeline = self.pipeline(KERNEL, || COMBINE_EXPERTS.to_owned())?;
        let [gx, gy] = self.grid(n.div_ceil(WORKGROUP));
        self.dispatch(
            &pipeline,
            Dispatch {
                kernel: KERNEL,
                buffers: &[outputs, &weights, dst],
                params: Params::default()
                    .u32(n)
                    .u32(to_u32(KERNEL, "width", width)?)
                    .u32(to_u32(KERNEL, "k", k)?),
                workgroups: [gx, gy, 1],
            },
        )
    }
}
