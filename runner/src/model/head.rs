//! The end of every forward pass: the final norm and the output head, run only on the
//! tokens of a batch that asked for logits.

use gguf::GgufFile;
use kernels::ops::rms_norm;

use super::kv_store::{KvShape, KvStore};
use super::weights::{Cpu, Linear};
use super::{Batch, Logits, ModelError};

/// `out[t] = rms_norm(x[t]) * weight` for every row.
pub(crate) fn norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (x, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        rms_norm(x, Some(weight), eps, o);
    }
}

/// Fails unless `cache` was made for a model whose per-token shape is `model`.
pub(crate) fn check_store(cache: &KvStore, model: KvShape) -> Result<(), ModelError> {
    if cache.shape() != model {
        return Err(ModelError::KvShapeMismatch {
            store: cache.shape(),
            model,
        });
    }
    Ok(())
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
    /// Normalizes the rows of `x` (`d` values a token) whose tokens asked for logits into
    /// `xn` and projects them into `out`; returns the logits written, row after row.
    pub(crate) fn run<'o>(
        &self,
        cpu: &mut Cpu,
        file: &GgufFile,
        batch: &Batch,
        x: &[f32],
        xn: &mut [f32],
        out: &'o mut Logits,
    ) -> Result<&'o mut [f32], ModelError> {
        let d = self.norm.len();
        let wanted: Vec<usize> = (0..batch.len())
            .filter(|&t| batch.wants_logits()[t])
            .collect();
        for (k, &t) in wanted.iter().enumerate() {
            let (src, dst) = (&x[t * d..(t + 1) * d], &mut xn[k * d..(k + 1) * d]);
            rms_norm(src, Some(self.norm), self.eps, dst);
        }
        let m = wanted.len();
        let logits = out.prepare(self.output.rows(), wanted.into_iter());
        if m > 0 {
            self.output.forward(cpu, file, &xn[..m * d], m, logits)?;
        }
        Ok(logits)
    }
}
