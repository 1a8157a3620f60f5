//! The elementwise glue of a forward pass that the runner would otherwise do on the CPU
//! between kernels: residual and bias adds, scaling, and gathering rows (the last token
//! of each sequence for the logits).

use crate::buffer::GpuBuffer;
use crate::device::Gpu;
use crate::error::Result;
use crate::kernel::{Dispatch, Params, WORKGROUP, check_distinct, to_u32};
use crate::ops::{check_len, shape};

const ADD: &str = include_str!("shaders/add.wgsl");
const SCALE: &str = include_str!("shaders/scale.wgsl");
const COPY_ROWS: &str = include_str!("shaders/copy_rows.wgsl");

impl Gpu {
    /// `dst[i] += src[i % period]` for `i` in `0..n`: the residual add when
    /// `period == n`, a bias row broadcast over tokens when `period` is the row width.
    /// `dst` and `src` must be different buffers.
    pub fn add_assign(
        &self,
        dst: &GpuBuffer,
        src: &GpuBuffer,
        n: usize,
        period: usize,
    ) -> Result<()> {
        const KERNEL: &str = "add_assign";
        if n == 0 {
            return Ok(());
        }
        if period == 0 || period > n {
            return Err(shape(KERNEL, format!("period {period} must be in 1..={n}")));
        }
        check_len(KERNEL, n, &[("dst", dst)])?;
        check_len(KERNEL, period, &[("src", src)])?;
        check_distinct(KERNEL, dst, src)?;
        let n = to_u32(KERNEL, "n", n)?;
        let pipeline = self.pipeline(KERNEL, || ADD.to_owned())?;
        let [gx, gy] = self.grid(n.div_ceil(WORKGROUP));
        self.dispatch(
            &pipeline,
            Dispatch {
                kernel: KERNEL,
                buffers: &[dst, src],
                params: Params::default().u32(n).u32(period as u32),
                workgroups: [gx, gy, 1],
            },
        )
    }

    /// `x[i] *= factor` for `i` in `0..n`: embedding scales (Gemma's `sqrt(n_embd)`) and
    /// logit scales, without a round trip to the CPU.
    pub fn scale_assign(&self, x: &GpuBuffer, n: usize, factor: f32) -> Result<()> {
        const KERNEL: &str = "scale_assign";
        check_len(KERNEL, n, &[("x", x)])?;
        let n = to_u32(KERNEL, "n", n)?;
        let pipeline = self.pipeline(KERNEL, || SCALE.to_owned())?;
        let [gx, gy] = self.grid(n.div_ceil(WORKGROUP));
        self.dispatch(
            &pipeline,
            Dispatch {
                kernel: KERNEL,
                buffers: &[x],
                params: Params::default().u32(n).f32(factor),
                workgroups: [gx, gy, 1],
            },
        )
    }

    /// Row `k` of `dst` (`width` f32 values) becomes row `rows[k]` of `src`, for `k` in
    /// `0..rows.len()`: gathers the tokens whose logits are wanted before the output
    /// matrix, so it multiplies only those. `dst` and `src` must be different buffers.
    pub fn copy_rows(
        &self,
        src: &GpuBuffer,
        rows: &[u32],
        width: usize,
        dst: &GpuBuffer,
    ) -> Result<()> {
        self.move_rows(("copy_rows", COPY_ROWS), src, rows, width, dst, false)
    }

    /// Moves rows of `width` values from `src` to `dst` by the index `rows`: row `k` of
    /// `dst` from row `rows[k]` of `src` (a gather), or with `scatter` row `rows[k]` of
    /// `dst` from row `k` of `src`. The shader binds `src`, the uploaded `rows` and `dst`.
    pub(crate) fn move_rows(
        &self,
        (kernel, shader): (&'static str, &'static str),
        src: &GpuBuffer,
        rows: &[u32],
        width: usize,
        dst: &GpuBuffer,
        scatter: bool,
    ) -> Result<()> {
        if rows.is_empty() || width == 0 {
            return Ok(());
        }
        let (indexed, packed) = if scatter {
            (("dst", dst), ("src", src))
        } else {
            (("src", src), ("dst", dst))
        };
        let indexed_rows = indexed.1.len_words() / width;
        if let Some(bad) = rows.iter().find(|&&r| r as usize >= indexed_rows) {
            return Err(shape(
                kernel,
                format!(
                    "row {bad} is past the {indexed_rows} rows of {width} values in {}",
                    indexed.0
                ),
            ));
        }
        let n = rows.len().saturating_mul(width);
        check_len(kernel, n, &[packed])?;
        check_distinct(kernel, dst, src)?;
        let n = to_u32(kernel, "values", n)?;
        let rows = self.upload_u32(kernel, rows)?;
        let pipeline = self.pipeline(kernel, || shader.to_owned())?;
        let [gx, gy] = self.grid(n.div_ceil(WORKGROUP));
        self.dispatch(
            &pipeline,
            Dispatch {
                kernel,
                buffers: &[src, &rows, dst],
                params: Params::default()
                    .u32(n)
                    .u32(to_u32(kernel, "width", width)?),
                workgroups: [gx, gy, 1],
            },
        )
    }
}
