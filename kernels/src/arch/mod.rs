//! Instruction-set specific kernels (the only place for `unsafe` SIMD code).
//!
//! Everything here that is `unsafe` says why it is sound in a `// SAFETY:` line. The
//! `#[target_feature]` kernels are reached only through functions that take a capability
//! token from [`crate::cpu`], which detection alone can construct.

pub mod cast;
pub(crate) mod scoped;
#[cfg(target_arch = "x86_64")]
pub mod x86;
#[cfg(target_arch = "x86_64")]
pub mod x86_quant;
