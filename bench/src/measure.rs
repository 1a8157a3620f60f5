//! The measurements: streaming read bandwidth, matrix-vector GB/s, batched GFLOP/s and the
//! pool's cost per call. Each figure is the median of several timed runs.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use kernels::GgmlType;
use kernels::arch::cast::as_bytes_mut;
use kernels::cpu::{Isa, Numerics};
use kernels::matmul::{Layout, MatmulScratch, Weights, matmul, matmul_fast};
use kernels::pool::ThreadPool;

/// How long and how often to time.
#[derive(Debug, Clone, Copy)]
pub struct Effort {
    /// Timed runs per figure (the median is reported).
    pub runs: usize,
    /// Minimum seconds per run.
    pub min_run: f64,
    /// Time the calling thread's on-CPU time instead of the wall clock (meaningful with one
    /// thread only: it leaves out the time other processes held the core).
    pub cpu_time: bool,
}

/// Seconds the calling thread has spent on a CPU, from /proc/thread-self/schedstat.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(f64::NAN, |ns| ns as f64 * 1e-9)
}

/// A clock: wall seconds, or on-CPU seconds of this thread.
fn now(effort: Effort) -> f64 {
    if effort.cpu_time {
        thread_cpu_seconds()
    } else {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64()
    }
}

/// Median seconds per call of `f`, calling it enough times per run to fill `min_run`.
fn time_per_call(effort: Effort, mut f: impl FnMut()) -> f64 {
    // Calibrate with the wall clock: the on-CPU clock only advances at scheduler ticks.
    let start = Instant::now();
    f();
    let once = start.elapsed().as_secs_f64().max(1e-9);
    let calls = ((effort.min_run / once).ceil() as usize).clamp(1, 1_000_000);
    let mut runs: Vec<f64> = (0..effort.runs)
        .map(|_| {
            let start = now(effort);
            for _ in 0..calls {
                f();
            }
            (now(effort) - start) / calls as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// A deterministic pseudo-random stream (splitmix64), enough to fill benchmark buffers.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in -1..1.
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Byte offsets of the f16 scales in one block (random bits there could be NaN).
fn scale_offsets(ty: GgmlType) -> &'static [usize] {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL => &[0],
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        _ => &[],
    }
}

/// A weight matrix filled with random quants and small finite scales, in 4-byte-aligned
/// storage.
pub struct Matrix {
    words: Vec<u32>,
    bytes: usize,
    /// Type, rows and columns.
    pub ty: GgmlType,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    layout: Layout,
}

impl Matrix {
    /// The matrix repacked as the runner repacks its weights for `numerics` on `isa`
    /// (`ollama_runner`'s `model::repack`): in groups of eight rows for the fast SIMD
    /// kernels when the type has that layout, else as it is.
    pub fn loaded_for(mut self, numerics: Numerics, isa: Isa) -> Self {
        let packs = numerics == Numerics::Fast
            && isa != Isa::Scalar
            && kernels::repack::packable(self.ty)
            && self.rows.is_multiple_of(kernels::repack::ROWS);
        if packs {
            let raw = &mut as_bytes_mut(&mut self.words)[..self.bytes];
            kernels::repack::repack_rows8(self.ty, self.rows, self.cols, raw)
                .expect("a packable matrix of whole groups repacks");
            self.layout = Layout::Rows8;
        }
        self
    }

    /// A random `rows x cols` matrix of `ty`.
    pub fn random(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Self {
        let bytes = rows * cols / ty.block_size() * ty.type_size();
        let mut words = vec![0u32; bytes.div_ceil(4)];
        let mut rng = Random(seed);
        let raw = &mut as_bytes_mut(&mut words)[..bytes];
        match ty {
            GgmlType::F32 => raw
                .chunks_exact_mut(4)
                .for_each(|v| v.copy_from_slice(&rng.unit().to_le_bytes())),
            GgmlType::F16 => raw.chunks_exact_mut(2).for_each(|v| {
                v.copy_from_slice(&half_bits(rng.unit()).to_le_bytes());
            }),
            _ => {
                for chunk in raw.chunks_mut(8) {
                    let r = rng.next().to_le_bytes();
                    chunk.copy_from_slice(&r[..chunk.len()]);
                }
                let scale = half_bits(0.01).to_le_bytes();
                for block in raw.chunks_exact_mut(ty.type_size()) {
                    for &at in scale_offsets(ty) {
                        block[at..at + 2].copy_from_slice(&scale);
                    }
                }
            }
        }
        Self {
            words,
            bytes,
            ty,
            rows,
            cols,
            layout: Layout::Rows,
        }
    }

    /// The matrix as [`Weights`].
    pub fn weights(&self) -> Weights<'_> {
        let bytes = &kernels::arch::cast::as_bytes(&self.words)[..self.bytes];
        Weights {
            bytes,
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
            layout: self.layout,
        }
    }

    /// Bytes of weights.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// f32 to f16 bits (round toward zero; fine for benchmark data in -1..1).
fn half_bits(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    if exp <= 0 {
        return sign;
    }
    sign | ((exp as u16) << 10) | ((bits >> 13) & 0x3ff) as u16
}

/// Streaming read bandwidth in GB/s: every thread sums its share of a `bytes` buffer.
pub fn stream_read(pool: &ThreadPool, bytes: usize, effort: Effort) -> f64 {
    let words: Vec<u64> = (0..bytes / 8).map(|i| i as u64).collect();
    let total = AtomicU64::new(0);
    let tasks = pool.threads() * 4;
    let per_task = words.len().div_ceil(tasks);
    let secs = time_per_call(effort, || {
        pool.run(tasks, |t| {
            let part = words.chunks(per_task).nth(t).unwrap_or(&[]);
            let mut lanes = [0u64; 8];
            for c in part.chunks_exact(8) {
                for (l, v) in lanes.iter_mut().zip(c) {
                    *l = l.wrapping_add(*v);
                }
            }
            let sum = lanes.iter().fold(0u64, |a, &b| a.wrapping_add(b));
            total.fetch_add(sum, Ordering::Relaxed);
        });
    });
    black_box(total.load(Ordering::Relaxed));
    bytes as f64 / secs / 1e9
}

/// One product in the numerics `OLLAMA_NUMERICS` names (fast unless it says exact).
fn product(
    pool: &ThreadPool,
    isa: Isa,
    w: Weights<'_>,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) {
    let numerics = Numerics::from_env().expect("OLLAMA_NUMERICS is checked at start-up");
    let product = match numerics {
        Numerics::Exact => matmul,
        Numerics::Fast => matmul_fast,
    };
    product(pool, isa, w, x, n, out, scratch).expect("benchmark shapes are valid");
}

/// Microseconds per matrix-vector product of `m` (a small matrix: the cost per call).
pub fn matvec_call(pool: &ThreadPool, isa: Isa, m: &Matrix, effort: Effort) -> f64 {
    let gbs = matvec(pool, isa, std::slice::from_ref(m), effort);
    m.bytes() as f64 / (gbs * 1e9) * 1e6
}

/// Matrix-vector GB/s of weight bytes, rotating over `copies` so that a matrix larger than
/// the last-level cache is really read from memory on every call.
pub fn matvec(pool: &ThreadPool, isa: Isa, copies: &[Matrix], effort: Effort) -> f64 {
    copies[0].bytes() as f64 / few_tokens(pool, isa, copies, 1, effort) / 1e9
}

/// Seconds per product of `n_tokens` activation rows (a decode step of that many streams,
/// or a batch), rotating over `copies` as [`matvec`] does.
pub fn few_tokens(
    pool: &ThreadPool,
    isa: Isa,
    copies: &[Matrix],
    n_tokens: usize,
    effort: Effort,
) -> f64 {
    let m = &copies[0];
    let x: Vec<f32> = {
        let mut rng = Random(7);
        (0..n_tokens * m.cols).map(|_| rng.unit()).collect()
    };
    let mut out = vec![0.0f32; n_tokens * m.rows];
    let mut scratch = MatmulScratch::for_shape(m.ty, m.cols, n_tokens);
    let mut next = 0;
    time_per_call(effort, || {
        let w = copies[next % copies.len()].weights();
        next += 1;
        product(pool, isa, w, &x, n_tokens, &mut out, &mut scratch);
        black_box(&out);
    })
}

/// GFLOP/s of the batched product of `m` with `n_tokens` activation rows.
pub fn batched(pool: &ThreadPool, isa: Isa, m: &Matrix, n_tokens: usize, effort: Effort) -> f64 {
    let secs = few_tokens(pool, isa, std::slice::from_ref(m), n_tokens, effort);
    2.0 * (m.rows * m.cols * n_tokens) as f64 / secs / 1e9
}

/// Microseconds per `run` with one empty task per thread.
pub fn pool_overhead(pool: &ThreadPool, effort: Effort) -> f64 {
    let n = pool.threads();
    time_per_call(effort, || {
        pool.run(n, |i| {
            black_box(i);
        })
    }) * 1e6
}
