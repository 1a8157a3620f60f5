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

/// Runs `f` compiled with the FMA instructions where the CPU has them, for scalar code
/// whose `mul_add` is otherwise a call into the C library's `fmaf`: one instruction
/// instead, with the same bits (both round once). `f` must be inlined into this call
/// (`#[inline(always)]` on what it calls) for the instructions to reach it.
#[inline(always)]
pub(crate) fn with_fma(f: impl FnOnce()) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "fma")]
        fn fused(f: impl FnOnce()) {
            f()
        }
        // SAFETY: the CPU has FMA, checked just above.
        return unsafe { fused(f) };
    }
    f()
}
