//! The matrix product on 8-bit activations: the input rows are quantized once into runs
//! of 32 signed bytes with a scale (as ggml's `q8_1`), and each run of weights multiplies
//! them as small integers, four bytes a step (`dot4I8Packed`). Where the device has the
//! packed 4×8-bit dot product that is one instruction; wgpu's shader compiler lowers it to
//! shifts elsewhere, so the kernel runs everywhere. It reads a quarter of the activation
//! bytes of the f32 product and decodes no weight to f32.
//!
//! The weights are the types of [`WeightType::int_dot`]; the others keep the f32 product.
//! Rounding the activations to 8 bits is what llama.cpp's CPU and Vulkan backends do for
//! quantized weights, and what the CPU's exact path does.

use crate::buffer::GpuBuffer;
use crate::device::Gpu;
use crate::error::{GpuError, Result};
use crate::kernel::{Dispatch, Params, WORKGROUP, to_u32};
use crate::matmul::{GpuMatrix, Input, WeightType};
use crate::ops::shape;

const QUANTIZE_Q8: &str = include_str!("shaders/quantize_q8.wgsl");

/// Activations quantized to 8 bits for [`Gpu::matmul_q8`]: bytes four to a word, and per
/// run of 32 its scale and its scale times the sum of its bytes.
#[derive(Debug)]
pub struct Q8Activations {
    pub(crate) q: GpuBuffer,
    pub(crate) s: GpuBuffer,
    /// Values it holds at most.
    capacity: usize,
    /// Values the last [`Gpu::quantize_q8`] wrote.
    len: std::sync::atomic::AtomicUsize,
}

impl Q8Activations {
    /// Wraps `q` (at least `capacity / 4` words) and `s` (at least `capacity / 16`
    /// words) as room for `capacity` quantized values, a multiple of 32.
    pub fn new(q: GpuBuffer, s: GpuBuffer, capacity: usize) -> Result<Self> {
        if !capacity.is_multiple_of(32)
            || q.len_words() < capacity / 4
            || s.len_words() < capacity / 16
        {
            return Err(GpuError::Shape {
                kernel: "q8_activations",
                detail: format!(
                    "{capacity} values (a multiple of 32) need {} and {} words, the buffers hold {} and {}",
                    capacity / 4,
                    capacity / 16,
                    q.len_words(),
                    s.len_words()
                ),
            });
        }
        Ok(Self {
            q,
            s,
            capacity,
            len: 0.into(),
        })
    }

    /// Values it holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Words per 32 values in the two buffers [`Q8Activations::new`] takes: 8 of bytes
    /// and 2 of scale and sum.
    pub const WORDS_PER_RUN: (usize, usize) = (8, 2);
}

impl Gpu {
    /// Room for `capacity` quantized values (a multiple of 32).
    pub fn q8_activations(&self, what: &str, capacity: usize) -> Result<Q8Activations> {
        let (q, s) = Q8Activations::WORDS_PER_RUN;
        let runs = capacity / 32;
        Q8Activations::new(
            self.zeros_f32(&format!("{what} bytes"), (runs * q).max(1))?,
            self.zeros_f32(&format!("{what} scales"), (runs * s).max(1))?,
            capacity,
        )
    }

    /// Quantizes the first `n` values of `x` (a multiple of 32: whole runs of a row) into
    /// `out`.
    pub fn quantize_q8(&self, x: &GpuBuffer, n: usize, out: &Q8Activations) -> Result<()> {
        const KERNEL: &str = "quantize_q8";
        if !n.is_multiple_of(32) || n > out.capacity || x.len_words() < n {
            return Err(shape(
                KERNEL,
                format!(
                    "{n} values (a multiple of 32) from {} into room for {}",
                    x.len_words(),
                    out.capacity
                ),
            ));
        }
        out.len.store(n, std::sync::atomic::Ordering::Relaxed);
        if n == 0 {
            return Ok(());
        }
        let runs = to_u32(KERNEL, "runs", n / 32)?;
        let pipeline = self.pipeline(KERNEL, || QUANTIZE_Q8.to_owned())?;
        let [gx, gy] = self.grid(runs.div_ceil(WORKGROUP));
        self.dispatch(
            &pipeline,
            Dispatch {
                kernel: KERNEL,
                buffers: &[x, &out.q, &out.s],
                params: Params::default().u32(runs),
                workgroups: [gx, gy, 1],
            },
        )
    }

    /// [`Gpu::matmul`] on activations [`Gpu::quantize_q8`] wrote (`n_tokens × cols` of
    /// them), for a matrix of a type with [`WeightType::int_dot`].
    pub fn matmul_q8(
        &self,
        w: &GpuMatrix,
        x: &Q8Activations,
        n_tokens: usize,
        y: &GpuBuffer,
    ) -> Result<()> {
        const KERNEL: &str = "matmul_q8";
        let ty: WeightType = w.weight_type();
        if !ty.int_dot() {
            return Err(shape(
                KERNEL,
                format!("{ty:?} weights have no integer-dot kernel"),
            ));
        }
        let written = x.len.load(std::sync::atomic::Ordering::Relaxed);
        if written < n_tokens * w.cols() {
            return Err(shape(
                KERNEL,
                format!(
                    "{n_tokens} tokens of {} values need {} quantized, {written} were",
                    w.cols(),
                    n_tokens * w.cols()
                ),
            ));
        }
        self.matmul_parts(w, Input::Q8(x), n_tokens, y)
    }
}
