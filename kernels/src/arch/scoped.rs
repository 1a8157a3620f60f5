//! The unsafe core of [`crate::pool::ThreadPool`]: lending a borrowed closure to
//! persistent worker threads for the length of one call, without allocating.
//!
//! Protocol (one `run` at a time, guarded by `busy`). `gate` packs an epoch (high 32
//! bits), a closed flag (bit 31) and the number of workers inside the current run (low
//! bits):
//!
//! 1. The caller writes the job (a pointer to its closure and a monomorphised trampoline)
//!    and the task count, then stores a new epoch with count 0 into `gate`, which
//!    publishes them.
//! 2. A worker that sees a new epoch enters by a compare-and-swap that adds one to the
//!    count, which succeeds only while the gate is open; only then does it read the job.
//!    It claims task indices from `next` until none are left, then leaves (count - 1).
//! 3. The caller claims tasks too. When none are left it closes the gate and waits until
//!    the count is 0, so the closure outlives every use by a worker. A worker that had
//!    not entered by then never touches this run: a descheduled worker (other processes
//!    on the cores) costs the caller nothing but the work it would have done.
//!
//! Idle workers spin on `gate` for a while (a decode step issues products microseconds
//! apart), then sleep on a condition variable; `sleepers` tells the caller whether a
//! wake-up is needed, so a hot pool makes no system call per run.

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

const CLOSED: u64 = 1 << 31;
const COUNT: u64 = CLOSED - 1;

fn epoch_of(gate: u64) -> u64 {
    gate >> 32
}

/// A closure borrowed for one run: its address and the function that calls it.
#[derive(Clone, Copy)]
struct JobRef {
    data: *const (),
    call: unsafe fn(*const (), usize),
}

impl JobRef {
    fn new<F: Fn(usize) + Sync>(f: &F) -> Self {
        /// # Safety
        /// `data` must point to a live `F`.
        unsafe fn trampoline<F: Fn(usize) + Sync>(data: *const (), index: usize) {
            // SAFETY: `data` came from `&F` in `JobRef::new`, and the protocol keeps that
            // borrow alive until every worker that entered the run has left.
            let f = unsafe { &*data.cast::<F>() };
            f(index);
        }
        Self {
            data: (f as *const F).cast(),
            call: trampoline::<F>,
        }
    }

    fn idle() -> Self {
        fn nothing(_: *const (), _: usize) {}
        Self {
            data: std::ptr::null(),
            call: nothing,
        }
    }
}

/// State shared by the caller of `run` and the workers.
pub(crate) struct Shared {
    /// Epoch, closed flag and count of workers inside (see the module docs).
    gate: AtomicU64,
    /// The current job, written only by the `busy` holder while the gate is closed and
    /// empty.
    job: UnsafeCell<JobRef>,
    n_tasks: AtomicUsize,
    next: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    busy: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    workers: usize,
    spin: Duration,
}

// SAFETY: every field but `job` is a sync primitive. `job` is written only by the thread
// holding `busy`, while the gate is closed with no worker inside, before the release
// store that opens the gate; a worker reads it only after entering the open gate with an
// acquire compare-and-swap, and the writer does not return (or write again) until every
// worker inside has left. The closure it points to is `Sync`, so calling it from several
// threads at once is allowed.
unsafe impl Sync for Shared {}
// SAFETY: the raw pointer in `job` is only dereferenced under the protocol above, and the
// closure type behind it is `Sync`, so its reference may move between threads.
unsafe impl Send for Shared {}

impl Shared {
    /// Shared state for `workers` worker threads (the calling thread is not counted) that
    /// spin for `spin` before sleeping.
    pub(crate) fn new(workers: usize, spin: Duration) -> Self {
        Self {
            gate: AtomicU64::new(CLOSED),
            job: UnsafeCell::new(JobRef::idle()),
            n_tasks: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            workers,
            spin,
        }
    }

    /// Calls `f(i)` once for each `i` in `0..n_tasks`, on the workers and the calling
    /// thread, and returns when all calls have returned. A panic in any task is re-raised
    /// here after every worker has let go of `f`. A call made while another run of this
    /// pool is in progress (from a task, or another thread) runs its tasks serially.
    pub(crate) fn run<F: Fn(usize) + Sync>(&self, n_tasks: usize, f: &F) {
        if n_tasks == 0 {
            return;
        }
        if self.workers == 0 || n_tasks == 1 || self.busy.swap(true, Ordering::Acquire) {
            (0..n_tasks).for_each(f);
            return;
        }
        let closed = self.gate.load(Ordering::Relaxed);
        debug_assert!(closed & CLOSED != 0 && closed & COUNT == 0);
        // SAFETY: we hold `busy` and the gate is closed and empty (the previous run waited
        // for that), so no worker reads `job` until the gate opens below.
        unsafe { *self.job.get() = JobRef::new(f) };
        self.n_tasks.store(n_tasks, Ordering::Relaxed);
        self.next.store(0, Ordering::Relaxed);
        self.panicked.store(false, Ordering::Relaxed);
        let epoch = epoch_of(closed).wrapping_add(1) & u64::from(u32::MAX);
        self.gate.store(epoch << 32, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.wake.notify_all();
        }

        let mine = catch_unwind(AssertUnwindSafe(|| {
            while let Some(i) = self.claim(n_tasks) {
                f(i);
            }
        }));
        // Every task is claimed (or ours panicked): let no more workers in, then wait for
        // those inside to finish theirs.
        self.gate.fetch_or(CLOSED, Ordering::AcqRel);
        let start = Instant::now();
        while self.gate.load(Ordering::Acquire) & COUNT != 0 {
            if start.elapsed() < self.spin {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        // SAFETY: the gate is closed and empty (acquire above), so no worker reads `job`.
        unsafe { *self.job.get() = JobRef::idle() };
        let worker_panicked = self.panicked.load(Ordering::Relaxed);
        self.busy.store(false, Ordering::Release);
        if let Err(payload) = mine {
            resume_unwind(payload);
        }
        assert!(!worker_panicked, "a task of the thread pool panicked");
    }

    fn claim(&self, n_tasks: usize) -> Option<usize> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < n_tasks).then_some(i)
    }

    /// Enters the open run of `epoch`, or returns false when it is closed or gone.
    fn enter(&self, epoch: u64) -> bool {
        let mut gate = self.gate.load(Ordering::Relaxed);
        loop {
            if gate & CLOSED != 0 || epoch_of(gate) != epoch {
                return false;
            }
            match self.gate.compare_exchange_weak(
                gate,
                gate + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => gate = now,
            }
        }
    }

    /// The body of a worker thread; returns after [`Shared::shut_down`].
    pub(crate) fn work(&self) {
        let mut seen = epoch_of(self.gate.load(Ordering::Relaxed));
        while let Some(epoch) = self.wait_for_epoch(seen) {
            seen = epoch;
            if !self.enter(epoch) {
                continue;
            }
            // SAFETY: we entered the open gate with acquire ordering, so the job written
            // before it opened is visible, and the caller keeps it alive until we leave.
            let job = unsafe { *self.job.get() };
            let n_tasks = self.n_tasks.load(Ordering::Relaxed);
            let result = catch_unwind(AssertUnwindSafe(|| {
                while let Some(i) = self.claim(n_tasks) {
                    // SAFETY: `job.data` points to the caller's live closure (see above).
                    unsafe { (job.call)(job.data, i) };
                }
            }));
            if result.is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
            self.gate.fetch_sub(1, Ordering::Release);
        }
    }

    /// Waits until the gate shows an epoch other than `seen` (returns it) or the pool
    /// shuts down.
    fn wait_for_epoch(&self, seen: u64) -> Option<u64> {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if self.shutdown.load(Ordering::Relaxed) {
                return None;
            }
            let epoch = epoch_of(self.gate.load(Ordering::Relaxed));
            if epoch != seen {
                return Some(epoch);
            }
            spins += 1;
            if spins.is_multiple_of(64) && start.elapsed() >= self.spin {
                break;
            }
            std::hint::spin_loop();
        }
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if self.shutdown.load(Ordering::SeqCst) {
                break None;
            }
            let epoch = epoch_of(self.gate.load(Ordering::SeqCst));
            if epoch != seen {
                break Some(epoch);
            }
            guard = self
                .wake
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Tells the workers to return from [`Shared::work`].
    pub(crate) fn shut_down(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.wake.notify_all();
    }
}

/// How [`Shared::run_split`] cuts a buffer viewed as `outer` rows of `inner` values: task
/// `i` owns columns `i * per_task .. (i + 1) * per_task` (the last one fewer) of every row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Split {
    pub(crate) outer: usize,
    pub(crate) inner: usize,
    pub(crate) per_task: usize,
}

impl Split {
    pub(crate) fn n_tasks(&self) -> usize {
        self.inner.div_ceil(self.per_task.max(1))
    }
}

/// The part of a split buffer that one task owns: the same column range of every row.
pub(crate) struct SplitPart<'a, T> {
    base: *mut T,
    inner: usize,
    outer: usize,
    start: usize,
    end: usize,
    _owns: std::marker::PhantomData<&'a mut [T]>,
}

impl<T> SplitPart<'_, T> {
    /// The first column this task owns.
    pub(crate) fn start(&self) -> usize {
        self.start
    }

    /// This task's columns of row `o`.
    pub(crate) fn row(&mut self, o: usize) -> &mut [T] {
        assert!(o < self.outer, "row {o} of {}", self.outer);
        // SAFETY: `base` points to `outer * inner` values (checked in `run_split`), and
        // `o * inner + start .. o * inner + end` lies inside row `o`. Tasks own disjoint
        // column ranges and each task index runs once, so no other `SplitPart` reaches
        // these values; `&mut self` keeps two slices from this part from overlapping.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.base.add(o * self.inner + self.start),
                self.end - self.start,
            )
        }
    }
}

/// The buffer of a split run, shared by reference with the tasks.
struct SplitBuffer<T>(*mut T);

// SAFETY: tasks reach the buffer only through disjoint `SplitPart`s, and `T: Send` lets
// each part's values be written from another thread.
unsafe impl<T: Send> Sync for SplitBuffer<T> {}

impl Shared {
    /// Runs `f(task, part)` for each task of `split`, where `part` gives the task mutable
    /// access to its own columns of `buf` (`split.outer` rows of `split.inner` values).
    pub(crate) fn run_split<T: Send, F>(&self, buf: &mut [T], split: Split, f: F)
    where
        F: Fn(usize, SplitPart<'_, T>) + Sync,
    {
        assert_eq!(
            buf.len(),
            split.outer * split.inner,
            "split does not cover the buffer"
        );
        let per_task = split.per_task.max(1);
        let base = SplitBuffer(buf.as_mut_ptr());
        let base = &base;
        self.run(split.n_tasks(), &|task: usize| {
            let start = task * per_task;
            let part = SplitPart {
                base: base.0,
                inner: split.inner,
                outer: split.outer,
                start,
                end: (start + per_task).min(split.inner),
                _owns: std::marker::PhantomData,
            };
            f(task, part);
        });
    }
}
