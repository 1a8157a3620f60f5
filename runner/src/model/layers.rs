//! Pieces of a transformer layer that several architectures share: causal attention over
//! the [`KvStore`] and the gated feed-forward network.

use std::sync::Mutex;

use gguf::GgufFile;
use kernels::cpu::Isa;
use kernels::ops::{
    dot_f32_ggml_isa, softmax_scaled_masked, weighted_sum_ggml_isa, weighted_sum_tiled_isa,
};
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
///
/// With a sliding window `Some(w)`, the token at `pos`
/// attends only to positions `j` with `pos - j < w` (llama.cpp's standard SWA mask,
/// `is_masked_swa`: masked when `pos - j >= w`), so the last `w` positions, itself
/// included. `None` (or a window at least `pos + 1`) is plain causal attention. Every
/// position is still stored.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    pool: &ThreadPool,
    shape: &AttentionShape,
    window: Option<usize>,
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
    let isa = Isa::detect().unwrap_or(Isa::Scalar);
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
            attend_head(
                isa, shape, window, cache, layer, batch, q, t, h, &mut row, o,
            );
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

/// Head `h` of token `t`: scores over its sequence so far (its window of it), softmax,
/// weighted values.
#[allow(clippy::too_many_arguments)]
fn attend_head(
    isa: Isa,
    shape: &AttentionShape,
    window: Option<usize>,
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
    let first = window.map_or(0, |w| n.saturating_sub(w));
    // llama.cpp's score rows start at position 0, positions outside the window masked
    // to -inf; starting at a multiple of 64 below the window groups the sums as its do.
    let start = first - first % 64;
    let (keys, values) = cache.read(layer, batch.seqs()[t], n);
    let q_h = &q[t * shape.q_dim() + h * hk..t * shape.q_dim() + (h + 1) * hk];
    let s = &mut scores[..n - start];
    for (j, s) in (start..n).zip(s.iter_mut()) {
        *s = if j < first {
            f32::NEG_INFINITY
        } else {
            let k_j = &keys[j * kd + kv_h * hk..j * kd + (kv_h + 1) * hk];
            dot_f32_ggml_isa(isa, q_h, k_j)
        };
    }
    softmax_scaled_masked(s, shape.scale, None);
    let rows = &values[start * vd + kv_h * hv..];
    // llama.cpp sends a batch of several tokens through llamafile's kernel, one token
    // through ggml's dot (see `kernels::ops::weighted_sum_tiled_isa`).
    if batch.len() == 1 {
        weighted_sum_ggml_isa(isa, s, rows, vd, out);
    } else {
        weighted_sum_tiled_isa(isa, s, rows, vd, out);
    }
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
        activation_into_up(act, self.gate.rows(), gate, up);
        self.down.forward(cpu, file, up, n, out)
    }
}

/// `up = act(gate, up)` row by row (`width` values a token) without a third buffer: done
/// in chunks through a small stack buffer, since the activations take separate input and
/// output slices. Chunks start at each row's start (a multiple of 16 into it), so SwiGLU's
/// vector groups and scalar tail fall where llama.cpp's do.
fn activation_into_up(
    act: fn(&[f32], &[f32], &mut [f32]),
    width: usize,
    gate: &[f32],
    up: &mut [f32],
) {
    const CHUNK: usize = 256;
    let mut tmp = [0.0f32; CHUNK];
    for (g_row, u_row) in gate.chunks(width).zip(up.chunks_mut(width)) {
        for (g, u) in g_row.chunks(CHUNK).zip(u_row.chunks_mut(CHUNK)) {
            let t = &mut tmp[..g.len()];
            act(g, u, t);
            u.copy_from_slice(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KvShape;

    const SHAPE: AttentionShape = AttentionShape {
        n_head: 4,
        n_head_kv: 2,
        head_dim_k: 8,
        head_dim_v: 6,
        scale: 0.35,
    };

    /// Deterministic values in (-1, 1) that differ for every index and `salt`.
    fn values(len: usize, salt: f32) -> Vec<f32> {
        (0..len)
            .map(|i| (i as f32 * 0.731 + salt * 12.9898).sin())
            .collect()
    }

    /// Runs `n` tokens of sequence 0 at positions `0..n` through one attention layer
    /// with keys and values `k`, `v` and the given window; returns every token's output.
    fn run(pool: &ThreadPool, window: Option<usize>, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        let n = q.len() / SHAPE.q_dim();
        let shape = KvShape {
            n_layers: 1,
            k_dim: SHAPE.k_dim(),
            v_dim: SHAPE.v_dim(),
        };
        let mut cache = KvStore::new(shape, n, 1).unwrap();
        let mut batch = Batch::new();
        for t in 0..n {
            batch.push(1, t as i32, 0, false);
        }
        let mut scores = vec![0.0; attention_scratch_len(pool, n)];
        let mut out = vec![0.0; n * SHAPE.out_dim()];
        attention(
            pool,
            &SHAPE,
            window,
            &mut cache,
            0,
            &batch,
            q,
            k,
            v,
            &mut scores,
            &mut out,
        );
        out
    }

    #[test]
    fn a_token_past_the_window_sees_only_the_window() {
        let pool = ThreadPool::new(2).unwrap();
        let (n, w) = (40, 7);
        let q = values(n * SHAPE.q_dim(), 1.0);
        let k = values(n * SHAPE.k_dim(), 2.0);
        let v = values(n * SHAPE.v_dim(), 3.0);
        let windowed = run(&pool, Some(w), &q, &k, &v);
        // Token t with the window equals plain causal attention over positions
        // t+1-w..=t alone: the same keys and values, re-stored at positions 0..w.
        for t in [w - 1, w, n - 1] {
            let first = t + 1 - w;
            let only = run(
                &pool,
                None,
                &q[first * SHAPE.q_dim()..(t + 1) * SHAPE.q_dim()],
                &k[first * SHAPE.k_dim()..(t + 1) * SHAPE.k_dim()],
                &v[first * SHAPE.v_dim()..(t + 1) * SHAPE.v_dim()],
            );
            let od = SHAPE.out_dim();
            // Equal up to the order of the sums, which may group masked positions too.
            let (a, b) = (&windowed[t * od..(t + 1) * od], &only[(w - 1) * od..w * od]);
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-6, "token {t}: {a:?} vs {b:?}");
            }
        }
        // Without the window the last token also sees the old positions.
        let plain = run(&pool, None, &q, &k, &v);
        let last = (n - 1) * SHAPE.out_dim()..n * SHAPE.out_dim();
        let moved = plain[last.clone()]
            .iter()
            .zip(&windowed[last])
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(
            moved > 1e-3,
            "seeing the old positions moved the output by only {moved}"
        );
    }

    #[test]
    fn positions_older_than_the_window_do_not_matter() {
        let pool = ThreadPool::new(1).unwrap();
        let (n, w) = (20, 5);
        let q = values(n * SHAPE.q_dim(), 4.0);
        let (mut k, mut v) = (
            values(n * SHAPE.k_dim(), 5.0),
            values(n * SHAPE.v_dim(), 6.0),
        );
        let before = run(&pool, Some(w), &q, &k, &v);
        // Position n - 1 - w is the newest one outside the last token's window.
        k[..(n - w) * SHAPE.k_dim()].fill(9.0);
        v[..(n - w) * SHAPE.v_dim()].fill(-9.0);
        let after = run(&pool, Some(w), &q, &k, &v);
        let last = (n - 1) * SHAPE.out_dim()..n * SHAPE.out_dim();
        assert_eq!(&before[last.clone()], &after[last.clone()]);
        // Position n - w is inside it: changing it changes the output.
        k[(n - w) * SHAPE.k_dim()..(n - w + 1) * SHAPE.k_dim()].fill(9.0);
        let inside = run(&pool, Some(w), &q, &k, &v);
        assert_ne!(&before[last.clone()], &inside[last]);
    }

    #[test]
    fn a_window_as_long_as_the_sequence_is_plain_causal_attention() {
        let pool = ThreadPool::new(2).unwrap();
        let n = 13;
        let q = values(n * SHAPE.q_dim(), 7.0);
        let k = values(n * SHAPE.k_dim(), 8.0);
        let v = values(n * SHAPE.v_dim(), 9.0);
        let plain = run(&pool, None, &q, &k, &v);
        assert_eq!(run(&pool, Some(n), &q, &k, &v), plain);
        assert_eq!(run(&pool, Some(1000), &q, &k, &v), plain);
        // A window of one: each token attends to itself alone and outputs its value.
        let own = run(&pool, Some(1), &q, &k, &v);
        for t in 0..n {
            for h in 0..SHAPE.n_head {
                let kv_h = h / (SHAPE.n_head / SHAPE.n_head_kv);
                let hv = SHAPE.head_dim_v;
                let o = &own[t * SHAPE.out_dim() + h * hv..t * SHAPE.out_dim() + (h + 1) * hv];
                let want = &v[t * SHAPE.v_dim() + kv_h * hv..t * SHAPE.v_dim() + (kv_h + 1) * hv];
                for (x, y) in o.iter().zip(want) {
                    assert!(
                        (x - y).abs() <= 1e-6,
                        "token {t} head {h}: {o:?} vs {want:?}"
                    );
                }
            }
        }
    }
}
