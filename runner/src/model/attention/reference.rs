//! The reference attention: each sequence's keys and values gathered in position order
//! as f32, every score computed, one softmax, the weighted sum, all in llama.cpp's order.

use std::sync::Mutex;

use kernels::cpu::Isa;
use kernels::ops::{
    dot_f32_ggml_isa, softmax_scaled_masked, weighted_sum_ggml_isa, weighted_sum_tiled_isa,
};
use kernels::pool::ThreadPool;
use plan::compute::reference::{ALIGN, runs};

use super::{AttentionShape, lock};
use crate::kvcache::{Gathered, LayerView};
use crate::model::activations::touched;
use crate::model::{Batch, ModelError};

/// Scratch of the reference path: one sequence's gathered rows and a row of scores per
/// run.
#[derive(Debug)]
pub struct ReferenceWork {
    gathered: Gathered,
    scores: Vec<Mutex<Vec<f32>>>,
}

impl ReferenceWork {
    /// Scratch for `num_ctx` positions on `threads` threads, allocated now:
    /// [`plan::compute::reference::bytes_for`] bytes.
    pub fn new(shape: &AttentionShape, num_ctx: usize, threads: usize) -> Self {
        let rows = num_ctx + ALIGN;
        let gathered = Gathered {
            first: 0,
            present: vec![std::hint::black_box(false); rows],
            k: touched(rows * shape.k_dim()),
            v: touched(rows * shape.v_dim()),
        };
        let scores = (0..runs(threads, usize::MAX))
            .map(|_| Mutex::new(touched(num_ctx)))
            .collect();
        Self { gathered, scores }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        let g = &self.gathered;
        let scores: usize = self.scores.iter().map(|s| lock(s).capacity() * 4).sum();
        g.present.capacity() + (g.k.capacity() + g.v.capacity()) * 4 + scores
    }
}

/// The tokens of each sequence in the batch, sequences in order of first appearance.
pub(super) fn tokens_by_seq(batch: &Batch) -> Vec<(usize, Vec<usize>)> {
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (t, &seq) in batch.seqs().iter().enumerate() {
        match groups.iter_mut().find(|(s, _)| *s == seq) {
            Some((_, tokens)) => tokens.push(t),
            None => groups.push((seq, vec![t])),
        }
    }
    groups
}

/// The rows one sequence's tokens read: positions `base..`, present or not.
struct Rows<'a> {
    base: usize,
    keys: &'a [f32],
    values: &'a [f32],
    present: Option<&'a [bool]>,
}

/// See the module docs; the batch's rows are already in `view`.
#[allow(clippy::too_many_arguments)]
pub(super) fn attention(
    pool: &ThreadPool,
    isa: Isa,
    shape: &AttentionShape,
    view: &LayerView<'_>,
    batch: &Batch,
    q: &[f32],
    work: &mut ReferenceWork,
    out: &mut [f32],
) -> Result<(), ModelError> {
    let (kd, vd, od) = (shape.k_dim(), shape.v_dim(), shape.out_dim());
    let outs: Vec<Mutex<&mut [f32]>> = out.chunks_mut(od).map(Mutex::new).collect();
    for (seq, tokens) in tokens_by_seq(batch) {
        // Positions were checked when the batch was placed.
        let pos = |t: usize| batch.positions()[t] as usize;
        let p_min = tokens.iter().map(|&t| pos(t)).min().unwrap_or(0);
        let p_max = tokens.iter().map(|&t| pos(t)).max().unwrap_or(0);
        let first = view.window.map_or(0, |w| (p_min + 1).saturating_sub(w));
        let base = first - first % ALIGN;
        let n = p_max + 1 - base;
        let rows = match view.contiguous_f32(seq, base as i32, n) {
            Some((keys, values)) => Rows {
                base,
                keys,
                values,
                present: None,
            },
            None => {
                view.gather(seq, base as i32, n, kd, vd, &mut work.gathered)?;
                let g = &work.gathered;
                Rows {
                    base,
                    keys: &g.k,
                    values: &g.v,
                    present: Some(&g.present),
                }
            }
        };
        let units = tokens.len() * shape.n_head;
        let n_runs = runs(pool.threads(), units).min(work.scores.len());
        let per_run = units.div_ceil(n_runs);
        let alone = tokens.len() == 1;
        let (rows, tokens, outs, scores) = (&rows, &tokens, &outs, &work.scores);
        pool.run(n_runs, |run| {
            let mut row = lock(&scores[run]);
            for u in run * per_run..((run + 1) * per_run).min(units) {
                let (t, h) = (tokens[u / shape.n_head], u % shape.n_head);
                let mut o = lock(&outs[t]);
                let o = &mut o[h * shape.head_dim_v..(h + 1) * shape.head_dim_v];
                attend_head(
                    isa,
                    shape,
                    view.window,
                    rows,
                    batch,
                    alone,
                    q,
                    t,
                    h,
                    &mut row,
                    o,
                );
            }
        });
    }
    Ok(())
}

/// Head `h` of token `t`: scores over its sequence so far (its window of it), softmax,
/// weighted values.
#[allow(clippy::too_many_arguments)]
fn attend_head(
    isa: Isa,
    shape: &AttentionShape,
    window: Option<usize>,
    rows: &Rows<'_>,
    batch: &Batch,
    alone: bool,
    q: &[f32],
    t: usize,
    h: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let (kd, vd) = (shape.k_dim(), shape.v_dim());
    let (hk, hv) = (shape.head_dim_k, shape.head_dim_v);
    let kv_h = h / shape.group();
    let n = batch.positions()[t] as usize + 1;
    let first = window.map_or(0, |w| n.saturating_sub(w));
    let start = first - first % ALIGN;
    let q_h = &q[t * shape.q_dim() + h * hk..t * shape.q_dim() + (h + 1) * hk];
    let s = &mut scores[..n - start];
    for (j, s) in (start..n).zip(s.iter_mut()) {
        let i = j - rows.base;
        let present = rows.present.is_none_or(|p| p[i]);
        *s = if j < first || !present {
            f32::NEG_INFINITY
        } else {
            dot_f32_ggml_isa(
                isa,
                q_h,
                &rows.keys[i * kd + kv_h * hk..i * kd + (kv_h + 1) * hk],
            )
        };
    }
    if let Some(cap) = shape.softcap {
        soft_cap_scores(s, cap);
    }
    softmax_scaled_masked(s, shape.scale, None);
    let values = &rows.values[(start - rows.base) * vd + kv_h * hv..];
    // llama.cpp sends a batch of several tokens through llamafile's kernel, one token
    // through ggml's dot (see `kernels::ops::weighted_sum_tiled_isa`). We choose by the
    // sequence's own tokens (`alone`), which is the same for a batch of one sequence and
    // keeps a sequence's result independent of the others batched with it.
    if alone {
        weighted_sum_ggml_isa(isa, s, values, vd, out);
    } else {
        weighted_sum_tiled_isa(isa, s, values, vd, out);
    }
}

/// Gemma 2's attention logit soft-capping of the visible scores (masked ones stay
/// `-inf`), in llama.cpp's three steps: a scale by `1/cap`, `tanh`, a scale by `cap`.
fn soft_cap_scores(scores: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    for s in scores.iter_mut().filter(|s| s.is_finite()) {
        *s = (*s * inv).tanh() * cap;
    }
}
