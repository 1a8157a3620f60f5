//! The thread pool that splits products by output rows.
//!
//! A [`ThreadPool`] of `n` threads is `n - 1` persistent workers plus the thread that
//! calls [`ThreadPool::run`], which takes part in the work. A run allocates nothing and,
//! while the workers are still spinning from the previous run, makes no system call: a
//! decode step of a small model issues hundreds of products, so the cost per call matters
//! as much as the cost per byte (`kernels-bench` measures it). Idle workers spin for
//! [`DEFAULT_SPIN`] and then sleep until the next run.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use thiserror::Error;

use crate::arch::scoped::{Shared, Split, SplitPart};

/// How long an idle worker spins before it sleeps.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(500);

/// Why a pool could not be built.
#[derive(Debug, Error)]
pub enum PoolError {
    /// A pool needs at least the calling thread.
    #[error("a thread pool needs at least one thread")]
    NoThreads,
    /// The operating system refused a thread.
    #[error("cannot start kernel worker thread {index}: {source}")]
    Spawn {
        /// Which worker.
        index: usize,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A persistent pool of worker threads; see the module docs.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    /// A pool of `threads` threads in all (the caller of `run` counts as one).
    pub fn new(threads: usize) -> Result<Self, PoolError> {
        Self::with_spin(threads, DEFAULT_SPIN)
    }

    /// A pool whose idle workers spin for `spin` before sleeping.
    pub fn with_spin(threads: usize, spin: Duration) -> Result<Self, PoolError> {
        if threads == 0 {
            return Err(PoolError::NoThreads);
        }
        let shared = Arc::new(Shared::new(threads - 1, spin));
        let mut pool = Self {
            shared,
            workers: Vec::with_capacity(threads - 1),
        };
        for index in 1..threads {
            let shared = Arc::clone(&pool.shared);
            let handle = std::thread::Builder::new()
                .name(format!("kernels-{index}"))
                .spawn(move || shared.work())
                .map_err(|source| PoolError::Spawn { index, source })?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// The number of threads, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `f(i)` exactly once for each `i` in `0..n_tasks`, spread over the pool's
    /// threads, and returns when all calls have returned.
    ///
    /// Tasks are claimed dynamically, so give it a few more tasks than threads when their
    /// costs differ. A panic in a task is re-raised here. A nested call (from inside a
    /// task) or a concurrent call from another thread runs its tasks on its own thread.
    pub fn run<F: Fn(usize) + Sync>(&self, n_tasks: usize, f: F) {
        self.shared.run(n_tasks, &f);
    }

    /// Calls `f(start, part)` for consecutive parts of `buf` of `chunk` elements (the last
    /// may be shorter), `start` being the part's first index, spread over the pool: a
    /// row-wise step (a norm, an activation, attention per token) split over the threads.
    pub fn for_chunks_mut<T: Send, F>(&self, buf: &mut [T], chunk: usize, f: F)
    where
        F: Fn(usize, &mut [T]) + Sync,
    {
        if buf.is_empty() {
            return;
        }
        let split = Split {
            outer: 1,
            inner: buf.len(),
            per_task: chunk.max(1),
        };
        self.run_split(buf, split, |_, mut part| {
            let start = part.start();
            f(start, part.row(0));
        });
    }

    /// Runs `f(task, part)` once per task of `split`, each task owning its own columns of
    /// every row of `buf` (see [`Split`]).
    pub(crate) fn run_split<T: Send, F>(&self, buf: &mut [T], split: Split, f: F)
    where
        F: Fn(usize, SplitPart<'_, T>) + Sync,
    {
        self.shared.run_split(buf, split, f);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shut_down();
        for worker in self.workers.drain(..) {
            // A worker catches task panics, so joining cannot report one.
            let _ = worker.join();
        }
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("threads", &self.threads())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counts_after(pool: &ThreadPool, n_tasks: usize) -> Vec<usize> {
        let counts: Vec<AtomicUsize> = (0..n_tasks).map(|_| AtomicUsize::new(0)).collect();
        pool.run(n_tasks, |i| {
            counts[i].fetch_add(1, Ordering::Relaxed);
        });
        counts.into_iter().map(AtomicUsize::into_inner).collect()
    }

    #[test]
    fn chunks_cover_the_buffer_once_with_their_starts() {
        let pool = ThreadPool::new(3).unwrap();
        for (len, chunk) in [(0, 4), (1, 4), (10, 3), (64, 64), (100, 7), (5, 0)] {
            let mut buf = vec![usize::MAX; len];
            pool.for_chunks_mut(&mut buf, chunk, |start, part| {
                assert!(part.len() <= chunk.max(1));
                for (i, v) in part.iter_mut().enumerate() {
                    *v = start + i;
                }
            });
            assert_eq!(buf, (0..len).collect::<Vec<_>>(), "len {len} chunk {chunk}");
        }
    }

    #[test]
    fn every_index_runs_exactly_once() {
        for threads in [1, 2, 3, 5] {
            let pool = ThreadPool::new(threads).unwrap();
            for n_tasks in [0, 1, 2, 3, 7, 64, 1000] {
                for _ in 0..20 {
                    assert!(counts_after(&pool, n_tasks).iter().all(|&c| c == 1));
                }
            }
        }
    }

    #[test]
    fn every_index_runs_once_after_workers_fell_asleep() {
        let pool = ThreadPool::with_spin(3, Duration::ZERO).unwrap();
        for n_tasks in [5, 17, 100] {
            std::thread::sleep(Duration::from_millis(2));
            assert!(counts_after(&pool, n_tasks).iter().all(|&c| c == 1));
        }
    }

    #[test]
    fn concurrent_and_nested_runs_each_cover_their_indices() {
        let pool = ThreadPool::new(3).unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        assert!(counts_after(&pool, 33).iter().all(|&c| c == 1));
                    }
                });
            }
        });
        let total = AtomicUsize::new(0);
        pool.run(4, |_| {
            let inner = counts_after(&pool, 5);
            assert!(inner.iter().all(|&c| c == 1));
            total.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(total.into_inner(), 4);
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_pool_survives() {
        let pool = ThreadPool::new(2).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(64, |i| assert!(i != 40, "task 40 fails"));
        }));
        assert!(result.is_err());
        assert!(counts_after(&pool, 64).iter().all(|&c| c == 1));
    }

    #[test]
    fn zero_threads_is_an_error() {
        assert!(matches!(ThreadPool::new(0), Err(PoolError::NoThreads)));
    }
}
