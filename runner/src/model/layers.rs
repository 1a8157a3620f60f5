//! Pieces of a transformer layer that several architectures share: causal attention over
//! the [`KvStore`] and the gated feed-forward network.

use std::sync::Mutex;

use gguf::GgufFile;
use kernels::pool::ThreadPool;

use super::kv_store::KvStore;
use super::weights::{Cpu, Linear};
use super::{Batch, ModelError};

/// The head layout of one attention layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionShape {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads; each serves `n_head / n_head_kv` query heads.
    pub n_head_kv: usize,
    /// Values per query/key head.
    pub head_dim_k: usize,
    /// Values per value head.
    pub head_dim_v: usize,
    /// Factor applied to `q·k` before the softmax (usually `1/sqrt(head_dim_k)`).
    pub scale: f32,
}

impl AttentionShape {
    /// Key values per token.
    pub fn k_dim(&self) -> usize {
        self.n_head_kv * self.head_dim_k
    }

    /// Value values per token.
    pub fn v_dim(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }

    /// Query values per token.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim_k
    }

    /// Attention output values per token.
    pub fn out_dim(&self) -> usize {
        self.n_head * self.head_dim_v
    }
}

/// Causal grouped-query attention of layer `layer` for every token of `batch`.
///
/// `q`, `k` and `v` hold the batch's projections (rotated already), token after token.
/// The keys and values are stored first, then each token attends to positions
/// `0..=pos` of its own sequence: `softmax(scale · q·kᵀ) · V`, written to `out`
/// (`out_dim` values per token). The (token, head) pairs are split over the pool in
/// runs; each run owns its slice of `out` and a row of `scores`, which must hold
/// [`attention_scratch_len`] values.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    pool: &ThreadPool,
    shape: &AttentionShape,
    cache: &mut KvStore,
    layer: usize,
    batch: &Batch,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    scores: &mut [f32],
    out: &mut [f32],
) {
    let (kd, vd) = (shape.k_dim(), shape.v_dim());
    for (t, (&seq, &pos)) in batch.seqs().iter().zip(batch.positions()).enumerate() {
        // Positions were checked by `KvStore::plan`.
        let pos = pos as usize;
        cache.write(
            layer,
            seq,
            pos,
            &k[t * kd..(t + 1) * kd],
            &v[t * vd..(t + 1) * vd],
        );
    }
    let cache = &*cache;
    let units = batch.len() * shape.n_head;
    if units == 0 {
        return;
    }
    let runs = runs(pool, units);
    let per_run = units.div_ceil(runs);
    let hv = shape.head_dim_v;
    // One lock per run, taken once: the runs own disjoint slices.
    let outs: Vec<Mutex<&mut [f32]>> = out.chunks_mut(per_run * hv).map(Mutex::new).collect();
    let rows: Vec<Mutex<&mut [f32]>> = scores
        .chunks_mut(cache.num_ctx())
        .take(outs.len())
        .map(Mutex::new)
        .collect();
    pool.run(outs.len(), |run| {
        let mut out = outs[run].lock().unwrap_or_else(|e| e.into_inner());
        let mut row = rows[run].lock().unwrap_or_else(|e| e.into_inner());
        let first = run * per_run;
        for (i, o) in out.chunks_exact_mut(hv).enumerate() {
            let (t, h) = ((first + i) / shape.n_head, (first + i) % shape.n_head);
            attend_head(shape, cache, layer, batch, q, t, h, &mut row, o);
        }
    });
}

/// Scratch [`attention`] needs for a store of `num_ctx` positions on `pool`.
pub fn attention_scratch_len(pool: &ThreadPool, num_ctx: usize) -> usize {
    runs(pool, usize::MAX) * num_ctx
}

/// Runs to split `units` (token, head) pairs into: a few per thread, so uneven rows
/// (later tokens see more positions) balance out.
fn runs(pool: &ThreadPool, units: usize) -> usize {
    (pool.threads() * 4).min(units).max(1)
}

/// Head `h` of token `t`: scores over its sequence so far, softmax, weighted values.
#[allow(clippy::too_many_arguments)]
fn attend_head(
    shape: &AttentionShape,
    cache: &KvStore,
    layer: usize,
    batch: &Batch,
    q: &[f32],
    t: usize,
    h: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let (kd, vd) = (shape.k_dim(), shape.v_dim());
    let (hk, hv) = (shape.head_dim_k, shape.head_dim_v);
    let kv_h = h / (shape.n_head / shape.n_head_kv);
    let n = batch.positions()[t] as usize + 1;
    let (keys, values) = cache.read(layer, batch.seqs()[t], n);
    let q_h = &q[t * shape.q_dim() + h * hk..t * shape.q_dim() + (h + 1) * hk];
    let s = &mut scores[..n];
    for (j, s) in s.iter_mut().enumerate() {
        let k_j = &keys[j * kd + kv_h * hk..j * kd + (kv_h + 1) * hk];
        *s = dot(q_h, k_j);
    }
    kernels::ops::softmax_scaled_masked(s, shape.scale, None);
    out.fill(0.0);
    for (j, &p) in s.iter().enumerate() {
        let v_j = &values[j * vd + kv_h * hv..j * vd + (kv_h + 1) * hv];
        for (o, &v) in out.iter_mut().zip(v_j) {
            *o += p * v;
        }
    }
}

/// `Σ a[i]·b[i]` in `f32` with eight partial sums (as ggml's SIMD dot, to rounding).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A gated feed-forward network: `down(act(gate(x), up(x)))`.
#[derive(Debug, Clone)]
pub struct GatedMlp {
    /// The gate projection.
    pub gate: Linear,
    /// The up projection.
    pub up: Linear,
    /// The down projection.
    pub down: Linear,
}

/// Scratch for [`GatedMlp::forward`]: two rows of the hidden width per token.
#[derive(Debug, Default)]
pub struct MlpScratch {
    gate: Vec<f32>,
    up: Vec<f32>,
}

impl GatedMlp {
    /// `{prefix}_gate`, `{prefix}_up`, `{prefix}_down` (e.g. `blk.0.ffn`), `n_embd` in and
    /// out, `n_ff` hidden.
    pub fn load(
        file: &GgufFile,
        prefix: &str,
        n_embd: usize,
        n_ff: usize,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            gate: Linear::load(file, &format!("{prefix}_gate"), n_embd, n_ff)?,
            up: Linear::load(file, &format!("{prefix}_up"), n_embd, n_ff)?,
            down: Linear::load(file, &format!("{prefix}_down"), n_ff, n_embd)?,
        })
    }

    /// Runs `n` tokens of `x` through the network into `out`, with the gated activation
    /// `act(gate, up, out)` (SwiGLU for llama, GeGLU for Gemma).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        cpu: &mut Cpu,
        file: &GgufFile,
        act: fn(&[f32], &[f32], &mut [f32]),
        x: &[f32],
        n: usize,
        scratch: &mut MlpScratch,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let hidden = n * self.gate.rows();
        scratch.gate.resize(hidden, 0.0);
        scratch.up.resize(hidden, 0.0);
        self.gate.forward(cpu, file, x, n, &mut scratch.gate)?;
        self.up.forward(cpu, file, x, n, &mut scratch.up)?;
        let (gate, up) = (&scratch.gate, &mut scratch.up);
        activation_into_up(act, gate, up);
        self.down.forward(cpu, file, up, n, out)
    }
}

/// `up = act(gate, up)` without a third buffer: done in chunks through a small stack
/// buffer, since the activations take separate input and output slices.
fn activation_into_up(act: fn(&[f32], &[f32], &mut [f32]), gate: &[f32], up: &mut [f32]) {
    const CHUNK: usize = 256;
    let mut tmp = [0.0f32; CHUNK];
    for (g, u) in gate.chunks(CHUNK).zip(up.chunks_mut(CHUNK)) {
        let t = &mut tmp[..g.len()];
        act(g, u, t);
        u.copy_from_slice(t);
    }
}
