//! Compute kernels for the runner.
//!
//! This crate owns the numerical work of running a transformer on a CPU: the GGML block
//! formats (their layout, quantization and dequantization), dot products and matrix
//! products over quantized weights, and the element-wise math of a layer.
//!
//! It must not do I/O, spawn async tasks or know about models: everything here is a plain
//! function over slices, so it can be tested against scalar twins and benchmarked alone.
//! `unsafe` SIMD code lives in `arch` and only there, each block with a `// SAFETY:` line;
//! the one other `unsafe` item is the counting allocator in `alloc`.

#[allow(unsafe_code)] // The counting allocator's `unsafe impl GlobalAlloc`.
pub mod alloc;
#[allow(unsafe_code)] // The SIMD code: each block has its `// SAFETY:` line.
pub mod arch;
pub mod blocks;
pub mod cpu;
pub mod dot;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod quant;
pub mod repack;

/// The GGML types, a crate of their own so the GGUF reader and the memory plan share them
/// without linking the kernels; re-exported so kernel code names them `crate::ggml_type`.
pub use ggml_type;
pub use ggml_type::{GgmlType, UnknownGgmlType};
