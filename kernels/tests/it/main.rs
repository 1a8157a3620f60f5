//! Integration tests of the kernels crate: one binary, a module per area.

mod quant_dispatch;
mod quant_refs;
mod quant_roundtrip;
mod quant_simd;
