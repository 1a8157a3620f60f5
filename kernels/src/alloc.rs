//! A global allocator that counts: the system allocator, with the bytes live now and the
//! most ever live kept in two counters.
//!
//! The runner binary installs it (`#[global_allocator]`) so it can report the heap it
//! really holds next to its memory estimate, and a test can hold the estimate to it. It
//! lives here because a `GlobalAlloc` is an `unsafe impl` and `unsafe` code is allowed in
//! this crate only. Counting costs two relaxed atomic operations per allocation and one
//! per free (a third only when a new peak is reached); nothing else changes, the blocks
//! come from [`System`] as before.
//!
//! The counts are the sizes asked for (each [`Layout::size`]), not what `malloc` rounds
//! them up to or keeps in its free lists: the heap the program uses, which an estimate
//! can compute, rather than the allocator's overhead, which the resident set shows.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes allocated and not yet freed.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most [`LIVE`] has been since the start or the last [`reset_peak`].
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counted. Install it in a binary with
/// `#[global_allocator] static ALLOCATOR: CountingAllocator = CountingAllocator;`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    if live > PEAK.load(Ordering::Relaxed) {
        PEAK.fetch_max(live, Ordering::Relaxed);
    }
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees are ours; the counters are only updated after a successful
// allocation (a null pointer counts nothing) and before a free.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract (a non-zero size), passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`; `calloc` keeps large zeroed blocks untouched.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        // SAFETY: the caller passes a block this allocator (that is, `System`) gave out,
        // with its layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block `System` gave out, its layout and a valid new
        // size.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // The old block is gone and the new one live; on failure the old one stays.
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}

/// Heap bytes live now, or `None` when [`CountingAllocator`] is not the global allocator
/// (nothing has been counted).
pub fn live_bytes() -> Option<usize> {
    installed().then(|| LIVE.load(Ordering::Relaxed))
}

/// The most heap bytes live at once since the start or the last [`reset_peak`], or `None`
/// when [`CountingAllocator`] is not the global allocator.
pub fn peak_bytes() -> Option<usize> {
    installed().then(|| PEAK.load(Ordering::Relaxed))
}

/// Starts a new peak from the bytes live now, to measure the peak of one phase.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Whether anything was counted: a program that allocates nothing at all before asking
/// does not exist, so a peak of 0 means another allocator is installed.
fn installed() -> bool {
    PEAK.load(Ordering::Relaxed) > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test binary does not install the allocator, so the counts say so rather than
    /// 0; driving the allocator by hand then counts live and peak bytes, reallocations
    /// included. One test, as the hand-driven counts would end the "not installed" state.
    #[test]
    fn the_counts_follow_allocations_and_frees() {
        if PEAK.load(Ordering::Relaxed) == 0 {
            assert_eq!((live_bytes(), peak_bytes()), (None, None));
        }
        let a = CountingAllocator;
        let layout = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: a non-zero layout; the block is freed below with the layout it has.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(LIVE.load(Ordering::Relaxed), 1000);
            assert_eq!(peak_bytes(), Some(1000));
            let q = a.realloc(p, layout, 3000);
            assert!(!q.is_null());
            assert_eq!(live_bytes(), Some(3000));
            a.dealloc(q, Layout::from_size_align(3000, 8).unwrap());
        }
        assert_eq!((live_bytes(), peak_bytes()), (Some(0), Some(3000)));
        reset_peak();
        assert_eq!(
            peak_bytes(),
            None,
            "a peak reset to 0 live bytes reads as unset"
        );
    }
}
