//! The end of every forward pass: the final norm and the output head, run only on the
//! tokens of a batch that asked for output. A batch that asks for embeddings stops after
//! the final norm.

use gguf::GgufFile;
use kernels::ops::{Rope, rms_norm};

use super::weights::{Cpu, Linear};
use super::{Batch, Logits, ModelError, Output};
use crate::kvcache::{KvCache, KvError, KvLayout, Placement};

/// `out[t] = rms_norm(x[t]) * weight` for every row.
pub(crate) fn norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (x, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        rms_norm(x, Some(weight), eps, o);
    }
}

/// Runs `body` with the batch's tokens placed in `cache` (made for `layout`); when it
/// fails, the tokens' cells are freed again. Keys whose positions were shifted are
/// re-rotated first, layer `il` with `rope_of(il)`.
pub(crate) fn with_placement<'r>(
    cache: &mut KvCache,
    layout: &KvLayout,
    batch: &Batch,
    rope_of: impl Fn(usize) -> &'r Rope,
    body: impl FnOnce(&mut KvCache, &Placement) -> Result<(), ModelError>,
) -> Result<(), ModelError> {
    if cache.layout() != layout {
        return Err(KvError::LayoutMismatch.into());
    }
    if cache.has_pending_shifts() {
        cache.apply_shifts(|il, delta, row| {
            rotate_key(rope_of(il), delta, row);
            Ok::<(), ModelError>(())
        })?;
    }
    let placement = cache.place(batch.seqs(), batch.positions())?;
    let result = body(cache, &placement);
    if result.is_err() {
        cache.unplace(&placement);
    }
    result
}

/// Rotates every head of a cached key row by `delta` more positions (the context shift):
/// RoPE angles grow linearly with the position, so rotating by the difference moves a
/// key to its new position.
pub(crate) fn rotate_key(rope: &Rope, delta: i32, row: &mut [f32]) {
    let mut cos_sin = vec![0.0; rope.n_dims()];
    rope.cos_sin_batch(&[delta], &mut cos_sin);
    rope.rotate_heads(row, &cos_sin);
}

/// Keeps the rows of `x` and `proj` (`d` values a token) of the tokens of `batch` that
/// asked for output, moved to the front in batch order, and returns how many: what
/// llama.cpp's graphs do before the last layer's residual add (`inp_out_ids`), so that
/// layer's feed-forward network runs on those rows only. Besides the time saved on a
/// prompt, this decides which kernel llama.cpp multiplies F32 weights with (one row or a
/// batch), and so its bits.
pub(crate) fn keep_output_rows(batch: &Batch, d: usize, x: &mut [f32], proj: &mut [f32]) -> usize {
    let mut k = 0;
    for (t, _) in (batch.wants_logits().iter().enumerate()).filter(|(_, w)| **w) {
        if t != k {
            x.copy_within(t * d..(t + 1) * d, k * d);
            proj.copy_within(t * d..(t + 1) * d, k * d);
        }
        k += 1;
    }
    k
}

/// The output head of a model: its final norm and its vocabulary projection.
pub(crate) struct OutputHead<'a> {
    /// The final RMSNorm's weight.
    pub norm: &'a [f32],
    /// Its epsilon.
    pub eps: f32,
    /// The vocabulary projection.
    pub output: &'a Linear,
}

impl OutputHead<'_> {
    /// Normalizes the rows of `x` (`d` values a token): one for each token that asked for
    /// output, in batch order (as [`keep_output_rows`] leaves them).
    ///
    /// For logits, the normalized rows go to `xn` and through the vocabulary projection
    /// into `out`; the logits written are returned, row after row, for the caller's
    /// last steps (soft-capping). For embeddings ([`Output::Embeddings`]), the normalized
    /// rows are the output: they are written straight into `out` (`d` values a row) and
    /// `None` is returned, since nothing after the final norm applies to them.
    pub(crate) fn run<'o>(
        &self,
        cpu: &mut Cpu,
        file: &GgufFile,
        batch: &Batch,
        x: &[f32],
        xn: &mut [f32],
        out: &'o mut Logits,
    ) -> Result<Option<&'o mut [f32]>, ModelError> {
        let d = self.norm.len();
        let wanted: Vec<usize> = (0..batch.len())
            .filter(|&t| batch.wants_logits()[t])
            .collect();
        if batch.output() == Output::Embeddings {
            let rows = out.prepare_output(Output::Embeddings, d, wanted.iter().copied());
            for (k, dst) in rows.chunks_exact_mut(d).enumerate() {
                rms_norm(&x[k * d..(k + 1) * d], Some(self.norm), self.eps, dst);
            }
            return Ok(None);
        }
        let m = wanted.len();
        for k in 0..m {
            let (src, dst) = (&x[k * d..(k + 1) * d], &mut xn[k * d..(k + 1) * d]);
            rms_norm(src, Some(self.norm), self.eps, dst);
        }
        let logits = out.prepare(self.output.rows(), wanted.into_iter());
        if m > 0 {
            self.output.forward(cpu, file, &xn[..m * d], m, logits)?;
        }
        Ok(Some(logits))
    }
}

#[cfg(test)]
mod tests {
    use kernels::ops::{RopeLayout, RopeParams};

    use super::*;

    /// A key stored at position `p` and rotated by `delta` is the key RoPE gives at
    /// `p + delta`, for both layouts: what the context shift relies on.
    #[test]
    fn rotating_a_stored_key_moves_it_to_its_new_position() {
        for layout in [RopeLayout::Normal, RopeLayout::NeoX] {
            let mut params = RopeParams::new(10_000.0);
            params.freq_scale = 0.5;
            let rope = Rope::new(64, 64, layout, params, None).unwrap();
            let key: Vec<f32> = (0..128).map(|i| (i as f32 * 0.37).sin()).collect();
            let at = |p: i32| {
                let mut cs = vec![0.0; 64];
                rope.cos_sin_batch(&[p], &mut cs);
                let mut k = key.clone();
                rope.rotate_heads(&mut k, &cs);
                k
            };
            for (p, delta) in [(900, -450), (37, 5), (4000, -1999)] {
                let mut moved = at(p);
                rotate_key(&rope, delta, &mut moved);
                let want = at(p + delta);
                let err = moved
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(err < 1e-3, "{layout:?} {p}{delta:+}: {err}");
            }
        }
    }
}
