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

/// Asks the CPU to bring the `lines` cache lines from `at` (one every 64 bytes) toward
/// its first-level cache, without waiting: for rows read soon at addresses its own
/// prefetchers cannot guess. One instruction a line and no bounds: a prefetch past the
/// data, even past the mapping, is dropped, never a fault. A no-op where there is no
/// prefetch instruction.
#[inline(always)]
pub(crate) fn prefetch_from(at: *const u8, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in 0..lines {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: `prefetcht0` reads nothing architecturally and cannot fault; SSE is
        // part of x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64 * line).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, lines);
}

/// Prefetches into the second-level cache only, for memory needed after the work at
/// hand (which should not push that work's lines out of the first level): `lines`
/// lines, one every 64 bytes from `at`. A prefetch of an address past the data, even
/// past the mapping, is dropped, never a fault, so `at` needs no bounds; with `lines` a
/// constant the loop unrolls, and the caller's loop pays one instruction a line.
#[inline(always)]
pub(crate) fn prefetch_l2_from(at: *const u8, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in 0..lines {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        // SAFETY: `prefetcht1` reads nothing architecturally and cannot fault; SSE is
        // part of x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(64 * line).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, lines);
}
