//! Integration tests of the kernels crate: one binary, a module per area.

mod attn_sums_simd;
mod expf_simd;
mod kquant_refs;
mod quant_dispatch;
mod quant_refs;
mod quant_roundtrip;
mod quant_simd;
