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

/// Asks the CPU to bring the cache lines of `bytes` toward its first-level cache, without
/// waiting: for rows read soon at addresses its own prefetchers cannot guess. A no-op
/// where there is no prefetch instruction.
#[inline(always)]
pub(crate) fn prefetch(bytes: &[u8]) {
    prefetch_lines::<1>(bytes);
}

/// [`prefetch`] into the second-level cache only: for memory needed after the work at
/// hand, which should not push that work's lines out of the first level.
#[inline(always)]
pub(crate) fn prefetch_l2(bytes: &[u8]) {
    prefetch_lines::<2>(bytes);
}

/// [`prefetch`] into cache level `LEVEL` (1 or 2).
#[inline(always)]
fn prefetch_lines<const LEVEL: u8>(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        use std::arch::x86_64::{_MM_HINT_T0, _MM_HINT_T1, _mm_prefetch};
        let at = line.as_ptr().cast();
        // SAFETY: `prefetcht0` and `prefetcht1` read nothing architecturally and cannot
        // fault; SSE is part of x86-64.
        unsafe {
            if LEVEL == 1 {
                _mm_prefetch::<_MM_HINT_T0>(at);
            } else {
                _mm_prefetch::<_MM_HINT_T1>(at);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}
