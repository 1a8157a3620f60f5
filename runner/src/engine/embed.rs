//! Embedding requests, run on the compute thread in one slot's sequence: each input is
//! evaluated in passes of `num_batch` tokens, asking the model for the hidden states of
//! the tokens the pooling needs, then pooled (and normalized when asked).
//!
//! An encoder (`model::bert`) keeps nothing in the cache and sees each sequence of a
//! batch apart from the others, so its inputs are packed instead: as many whole inputs
//! as fit in `num_batch` tokens go in one pass, each as its own sequence (0, 1, ...),
//! which multiplies the weights once for all of them. The engine has checked that every
//! input fits in one pass.

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
    if crate::model::bert::embeds_only(model.architecture()) {
        let vectors = packed(model, cache, inputs, normalize, pooling, batch, out)?;
        return Ok(Embeddings {
            vectors,
            prompt_tokens: inputs.iter().map(Vec::len).sum(),
            duration: start.elapsed(),
        });
    }
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

/// The inputs of an encoder, packed whole into passes of at most `num_batch` tokens.
fn packed(
    model: &mut dyn Model,
    cache: &mut KvCache,
    inputs: &[Vec<TokenId>],
    normalize: bool,
    pooling: Pooling,
    batch: &mut Batch,
    out: &mut Logits,
) -> Result<Vec<Vec<f32>>, EngineError> {
    let num_batch = cache.config().num_batch;
    let mut vectors = Vec::with_capacity(inputs.len());
    let mut first = 0;
    while first < inputs.len() {
        // At least one input a pass; the engine refused any longer than num_batch.
        let mut end = first + 1;
        let mut tokens = inputs[first].len();
        while end < inputs.len() && tokens + inputs[end].len() <= num_batch {
            tokens += inputs[end].len();
            end += 1;
        }
        batch.clear();
        batch.set_output(Output::Embeddings);
        for (seq, input) in inputs[first..end].iter().enumerate() {
            for (index, &token) in input.iter().enumerate() {
                batch.push(
                    token,
                    index as i32,
                    seq,
                    pooling.wants_token(index, input.len()),
                );
            }
        }
        model.forward(batch, cache, out)?;
        for seq in 0..end - first {
            let mut pooler = Pooler::new(pooling, model.n_embd());
            pooler.push_batch(batch, out, seq)?;
            vectors.push(pooler.finish(normalize)?);
        }
        first = end;
    }
    Ok(vectors)
}
