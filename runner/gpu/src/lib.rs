//! GPU compute for the runner through [`wgpu`]: Vulkan on NVIDIA, AMD and Intel GPUs,
//! Metal on Apple, and Mesa's lavapipe (Vulkan on the CPU) in CI.
//!
//! - [`device`]: the adapters, the `OLLAMA_DEVICE` spec (`cpu`, `gpu` or an index) and
//!   the opened [`Gpu`], which turns every wgpu failure into a [`GpuError`] and counts
//!   the device memory its buffers hold.
//! - [`budget`]: each adapter's device memory, total and free (`VK_EXT_memory_budget`).
//! - [`buffer`]: GGUF blocks uploaded unchanged, f32 activations, readback.
//! - [`matmul`]: quantized matrix × activations and `get_rows`, dequantizing in the kernel.
//! - [`int_dot`]: the product on 8-bit activations, four bytes a step (`dot4I8Packed`).
//! - [`ops`]: RMSNorm, LayerNorm, RoPE, SwiGLU/GeGLU and softmax.
//! - [`elementwise`]: residual and bias adds, scaling, and gathering rows.
//! - [`experts`]: a mixture of experts' outputs scattered back to the router's order and
//!   mixed by its weights (each expert's product is [`Gpu::matmul_expert`]).
//! - [`attention`]: the K/V cache's cell table, storing K/V rows into cells (converted
//!   to F16, Q8_0 or Q4_0 as ggml does) and flash attention over the cells a token sees.
//!
//! Every kernel is WGSL under `src/shaders/` and is tested against its CPU twin in the
//! `kernels` crate (`tests/it`).
//!
//! Kernels are written for correctness and portability first: workgroups of 64 (8 per
//! matmul row, 8 rows and 8 tokens each; one per row for the norms and softmax) with tree
//! reductions in workgroup memory, no subgroup operations, no `shader-f16`.
//!
//! Kernel calls are recorded into one command encoder, in one compute pass, and submitted
//! together (batch.rs): by [`Gpu::flush`], by every readback and write into an existing
//! buffer, and every 256 commands. Their uniform blocks are slots of one buffer per
//! submission, and the small index arrays every layer reads (positions, cells) are
//! uploaded once per pass: on a real GPU the host's work per kernel bounds decode. A
//! kernel that wgpu rejects while recording is reported at that submission.

pub mod attention;
mod batch;
pub mod budget;
pub mod buffer;
pub mod device;
pub mod elementwise;
mod error;
pub mod experts;
pub mod int_dot;
mod kernel;
pub mod matmul;
pub mod ops;
#[doc(hidden)]
pub mod testing;

pub use attention::{AttentionParams, CellTable, KvType};
pub use budget::DeviceMemory;
pub use buffer::GpuBuffer;
pub use device::{
    AdapterDescription, DeviceKind, DeviceSpec, Gpu, SUBALLOCATION_BLOCK_BYTES, default_adapter,
    list_adapters,
};
pub use error::{GpuError, Result};
pub use int_dot::Q8Activations;
pub use matmul::{GpuMatrix, WeightType};
