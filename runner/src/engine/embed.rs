//! Embedding requests, run on the compute thread in one slot's sequence: each input is
//! evaluated in passes of `num_batch` tokens, asking the model for the hidden states of
//! the tokens the pooling needs, then pooled (and normalized when asked).

use std::time::Instant;

use super::{Embeddings, EngineError};
use crate::kvcache::KvCache;
use crate::model::pooling::{Pooler, Pooling};
use crate::model::{Batch, Logits, Model, Output};
use crate::tokenizer::TokenId;

/// Embeds `inputs` in sequence `seq` of `cache`, which is emptied before and after.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    model: &mut dyn Model,
    cache: &mut KvCache,
    seq: usize,
    inputs: &[Vec<TokenId>],
    normalize: bool,
    pooling: Pooling,
    batch: &mut Batch,
    out: &mut Logits,
) -> Result<Embeddings, EngineError> {
    let start = Instant::now();
    let num_batch = cache.config().num_batch;
    let mut embed_one = |input: &[TokenId]| -> Result<Vec<f32>, EngineError> {
        cache.seq_rm(seq, 0..i32::MAX);
        let mut pooler = Pooler::new(pooling, model.n_embd());
        for (c, chunk) in input.chunks(num_batch).enumerate() {
            batch.clear();
            batch.set_output(Output::Embeddings);
            for (k, &token) in chunk.iter().enumerate() {
                let index = c * num_batch + k;
                let wanted = pooling.wants_token(index, input.len());
                batch.push(token, index as i32, seq, wanted);
            }
            model.forward(batch, cache, out)?;
            pooler.push_batch(batch, out, seq)?;
        }
        Ok(pooler.finish(normalize)?)
    };
    let vectors: Result<Vec<_>, _> = inputs.iter().map(|i| embed_one(i)).collect();
    cache.seq_rm(seq, 0..i32::MAX);
    Ok(Embeddings {
        vectors: vectors?,
        prompt_tokens: inputs.iter().map(Vec::len).sum(),
        duration: start.elapsed(),
    })
}
