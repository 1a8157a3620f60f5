//! Pooling the embeddings of a sequence's tokens into one vector, as an embeddings request
//! returns it.
//!
//! A batch that asks for [`Output::Embeddings`] gets, for each token whose flag is set, its
//! final hidden state after the model's final norm. [`Pooler`] turns those rows into one
//! vector per input: the mean of every token's row, the first token's row (`cls`) or the
//! last token's row (`last`), optionally scaled to unit length. It accumulates across
//! forward passes, so a prompt longer than one batch can be run in chunks.
//!
//! The pooling comes from the GGUF key `{arch}.pooling_type`, with llama.cpp's values
//! (`0` none, `1` mean, `2` cls, `3` last, `4` rank). llama.cpp pools exactly so
//! (`build_pooling` and the `inp_mean`/`inp_cls` inputs in `src/llama-graph.cpp`): mean
//! over every token of the sequence, the BOS token included when the tokenizer adds one;
//! cls and last take the row of the token at the sequence's smallest and largest position.
//! It does not normalize; its tools and bindings scale to unit L2 length when asked
//! (`common_embd_normalize`, llama-cpp-python's `normalize_embedding`), leaving a zero
//! vector as it is. We do the same.

use std::fmt;

use gguf::{Metadata, MetadataError};
use thiserror::Error;

use super::{Batch, Logits, Output};

/// The metadata key, after `{arch}.`, that names a model's pooling.
pub const POOLING_TYPE_KEY: &str = "pooling_type";

/// How the token embeddings of one input become its one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of every token's embedding.
    Mean,
    /// The embedding of the first token (the smallest position).
    Cls,
    /// The embedding of the last token (the largest position).
    Last,
}

/// Why a model's pooling cannot be used, or rows cannot be pooled.
#[derive(Debug, Error)]
pub enum PoolingError {
    /// `{arch}.pooling_type` is missing its architecture or holds a non-integer.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// `{arch}.pooling_type` names a pooling that gives no embedding.
    #[error("metadata key '{key}' is {value}: {why}")]
    Unsupported {
        /// The key.
        key: String,
        /// Its value.
        value: u32,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A row has another length than the pooler's.
    #[error("an embedding row has {actual} values, expected {expected}")]
    Width {
        /// The pooler's width (`n_embd`).
        expected: usize,
        /// The row's length.
        actual: usize,
    },
    /// The forward pass wrote logits, not embeddings.
    #[error("the batch produced logits, not embeddings")]
    NotEmbeddings,
    /// Nothing was pooled: the input had no token.
    #[error("no token embedding was pooled: the input is empty")]
    Empty,
}

impl Pooling {
    /// The pooling `{arch}.pooling_type` names. Absent, or `0` (none: one embedding per
    /// token, which the API cannot return), gives [`Pooling::Mean`]: a generative model
    /// still embeds, by the mean of its last hidden states, as llama.cpp's embedding mode
    /// pools (Ollama refuses such models). `4` (rank, a reranker's classification score)
    /// and unknown values are errors naming the value.
    pub fn from_metadata(metadata: &Metadata) -> Result<Self, PoolingError> {
        let key = metadata.arch_key(POOLING_TYPE_KEY)?;
        let Some(value) = metadata.get_opt::<u32>(&key)? else {
            return Ok(Self::Mean);
        };
        let unsupported = |why| PoolingError::Unsupported {
            key: key.clone(),
            value,
            why,
        };
        match value {
            0 | 1 => Ok(Self::Mean),
            3 => Ok(Self::Last),
            2 => Ok(Self::Cls),
            4 => Err(unsupported(
                "rank pooling scores a query against a document; it gives no embedding",
            )),
            _ => Err(unsupported(
                "llama.cpp's pooling types are 0 none, 1 mean, 2 cls, 3 last, 4 rank",
            )),
        }
    }

    /// Whether the token at `index` of an input of `len` tokens is needed: every token for
    /// the mean, the first for cls, the last for last. The engine asks output of these
    /// tokens only.
    pub fn wants_token(self, index: usize, len: usize) -> bool {
        match self {
            Self::Mean => index < len,
            Self::Cls => index == 0 && len > 0,
            Self::Last => index + 1 == len,
        }
    }

    /// The name llama.cpp and the API use: `mean`, `cls` or `last`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Cls => "cls",
            Self::Last => "last",
        }
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The pooled embedding of one input, accumulated over one or more forward passes.
///
/// Rows come with their token's position in the input; cls keeps the row of the smallest
/// position seen and last the row of the largest (a later row wins a tie, as in
/// llama.cpp), so the order of pushes does not matter. The mean sums in `f64`, so
/// pushing the same rows in the same order gives the same bits however they were split
/// into passes.
#[derive(Debug, Clone)]
pub struct Pooler {
    pooling: Pooling,
    dim: usize,
    /// The running sum (mean) or the row kept so far (cls, last).
    acc: Vec<f64>,
    /// The position of the row kept (cls, last).
    kept: Option<i32>,
    count: usize,
}

impl Pooler {
    /// An empty pooler of rows of `dim` values (the model's `n_embd`).
    pub fn new(pooling: Pooling, dim: usize) -> Self {
        Self {
            pooling,
            dim,
            acc: vec![0.0; dim],
            kept: None,
            count: 0,
        }
    }

    /// The pooling it applies.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// The number of rows pushed so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds the embedding of the token at `position` of the input.
    pub fn push(&mut self, position: i32, row: &[f32]) -> Result<(), PoolingError> {
        if row.len() != self.dim {
            return Err(PoolingError::Width {
                expected: self.dim,
                actual: row.len(),
            });
        }
        let replace = match (self.pooling, self.kept) {
            (Pooling::Mean, _) => {
                for (a, &v) in self.acc.iter_mut().zip(row) {
                    *a += f64::from(v);
                }
                false
            }
            (_, None) => true,
            (Pooling::Cls, Some(kept)) => position < kept,
            (Pooling::Last, Some(kept)) => position >= kept,
        };
        if replace {
            for (a, &v) in self.acc.iter_mut().zip(row) {
                *a = f64::from(v);
            }
            self.kept = Some(position);
        }
        self.count += 1;
        Ok(())
    }

    /// Adds consecutive tokens' embeddings, `dim` values each, the first at
    /// `first_position`.
    pub fn push_rows(&mut self, first_position: i32, rows: &[f32]) -> Result<(), PoolingError> {
        if self.dim == 0 || !rows.len().is_multiple_of(self.dim) {
            return Err(PoolingError::Width {
                expected: self.dim,
                actual: rows.len(),
            });
        }
        let mut position = first_position;
        for row in rows.chunks_exact(self.dim) {
            self.push(position, row)?;
            position = position.saturating_add(1);
        }
        Ok(())
    }

    /// Adds the embeddings a forward pass of `batch` wrote into `out` for the tokens of
    /// sequence `seq`, each at its position in the batch; returns how many it added.
    pub fn push_batch(
        &mut self,
        batch: &Batch,
        out: &Logits,
        seq: usize,
    ) -> Result<usize, PoolingError> {
        if out.output() != Output::Embeddings {
            return Err(PoolingError::NotEmbeddings);
        }
        let mut added = 0;
        for (t, row) in out.rows() {
            if batch.seqs().get(t) == Some(&seq) {
                self.push(batch.positions()[t], row)?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// The pooled embedding, scaled to unit L2 length when `normalize` is set (a zero
    /// vector stays zero).
    pub fn finish(self, normalize: bool) -> Result<Vec<f32>, PoolingError> {
        if self.count == 0 {
            return Err(PoolingError::Empty);
        }
        let mut v = self.acc;
        if self.pooling == Pooling::Mean {
            let n = self.count as f64;
            v.iter_mut().for_each(|a| *a /= n);
        }
        if normalize {
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|a| *a /= norm);
            }
        }
        Ok(v.into_iter().map(|a| a as f32).collect())
    }
}

#[cfg(test)]
mod tests {
    use gguf::MetadataValue;

    use super::*;

    /// Four tokens of three values each.
    const ROWS: [f32; 12] = [
        1.0, 2.0, 3.0, //
        -1.0, 0.0, 5.0, //
        4.0, 4.0, -2.0, //
        0.0, 2.0, 2.0,
    ];

    fn pool(pooling: Pooling, normalize: bool) -> Vec<f32> {
        let mut p = Pooler::new(pooling, 3);
        p.push_rows(0, &ROWS).unwrap();
        p.finish(normalize).unwrap()
    }

    #[test]
    fn mean_cls_and_last_pick_what_they_say() {
        assert_eq!(pool(Pooling::Mean, false), vec![1.0, 2.0, 2.0]);
        assert_eq!(pool(Pooling::Cls, false), vec![1.0, 2.0, 3.0]);
        assert_eq!(pool(Pooling::Last, false), vec![0.0, 2.0, 2.0]);
    }

    #[test]
    fn normalizing_gives_unit_length_and_keeps_direction() {
        // The mean (1, 2, 2) has length 3.
        assert_eq!(
            pool(Pooling::Mean, true),
            vec![1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0]
        );
        for pooling in [Pooling::Mean, Pooling::Cls, Pooling::Last] {
            let v = pool(pooling, true);
            let len = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((len - 1.0).abs() < 1e-6, "{pooling}: {len}");
        }
    }

    #[test]
    fn a_zero_vector_stays_zero_when_normalized() {
        let mut p = Pooler::new(Pooling::Mean, 2);
        p.push_rows(0, &[1.0, -2.0, -1.0, 2.0]).unwrap();
        assert_eq!(p.finish(true).unwrap(), vec![0.0, 0.0]);
    }

    #[test]
    fn chunked_accumulation_equals_one_shot_in_any_order_of_chunks() {
        for pooling in [Pooling::Mean, Pooling::Cls, Pooling::Last] {
            let mut chunked = Pooler::new(pooling, 3);
            chunked.push_rows(3, &ROWS[9..]).unwrap();
            chunked.push_rows(0, &ROWS[..3]).unwrap();
            chunked.push_rows(1, &ROWS[3..9]).unwrap();
            assert_eq!(chunked.count(), 4);
            assert_eq!(chunked.finish(false).unwrap(), pool(pooling, false));
        }
    }

    #[test]
    fn bad_rows_and_empty_inputs_are_errors() {
        let mut p = Pooler::new(Pooling::Mean, 3);
        assert!(matches!(
            p.push(0, &[1.0, 2.0]),
            Err(PoolingError::Width {
                expected: 3,
                actual: 2
            })
        ));
        assert!(matches!(
            p.push_rows(0, &ROWS[..4]),
            Err(PoolingError::Width { .. })
        ));
        assert!(matches!(p.finish(true), Err(PoolingError::Empty)));
    }

    #[test]
    fn push_batch_takes_one_sequences_embeddings_at_their_positions() {
        let mut batch = Batch::new();
        batch.set_output(Output::Embeddings);
        for (k, seq) in [0, 1, 0, 1].into_iter().enumerate() {
            batch.push(7, 10 + k as i32, seq, true);
        }
        let mut out = Logits::new();
        out.prepare_output(Output::Embeddings, 3, 0..4)
            .copy_from_slice(&ROWS);
        let mut last = Pooler::new(Pooling::Last, 3);
        assert_eq!(last.push_batch(&batch, &out, 0).unwrap(), 2);
        assert_eq!(last.finish(false).unwrap(), vec![4.0, 4.0, -2.0]);

        out.prepare(3, 0..4);
        let mut p = Pooler::new(Pooling::Last, 3);
        assert!(matches!(
            p.push_batch(&batch, &out, 0),
            Err(PoolingError::NotEmbeddings)
        ));
    }

    #[test]
    fn a_cleared_batch_asks_for_logits_again() {
        let mut batch = Batch::new();
        assert_eq!(batch.output(), Output::Logits);
        batch.set_output(Output::Embeddings);
        batch.push(1, 0, 0, true);
        assert_eq!(batch.output(), Output::Embeddings);
        batch.clear();
        assert_eq!(batch.output(), Output::Logits);
    }

    #[test]
    fn the_engine_asks_output_of_the_tokens_the_pooling_needs() {
        let wanted = |p: Pooling| (0..4).filter(|&i| p.wants_token(i, 4)).collect::<Vec<_>>();
        assert_eq!(wanted(Pooling::Mean), vec![0, 1, 2, 3]);
        assert_eq!(wanted(Pooling::Cls), vec![0]);
        assert_eq!(wanted(Pooling::Last), vec![3]);
    }

    fn metadata(pooling_type: Option<MetadataValue>) -> Metadata {
        let mut md = Metadata::new();
        md.insert("general.architecture", "llama");
        if let Some(v) = pooling_type {
            md.insert("llama.pooling_type", v);
        }
        md
    }

    #[test]
    fn pooling_comes_from_the_metadata_with_mean_for_none() {
        let read = |v: Option<u32>| Pooling::from_metadata(&metadata(v.map(MetadataValue::U32)));
        assert_eq!(read(None).unwrap(), Pooling::Mean);
        assert_eq!(read(Some(0)).unwrap(), Pooling::Mean);
        assert_eq!(read(Some(1)).unwrap(), Pooling::Mean);
        assert_eq!(read(Some(2)).unwrap(), Pooling::Cls);
        assert_eq!(read(Some(3)).unwrap(), Pooling::Last);
        let rank = read(Some(4)).unwrap_err().to_string();
        assert!(rank.contains("'llama.pooling_type' is 4"), "{rank}");
        assert!(rank.contains("rank"), "{rank}");
        let unknown = read(Some(9)).unwrap_err().to_string();
        assert!(unknown.contains("is 9"), "{unknown}");
        let text = metadata(Some(MetadataValue::String("mean".into())));
        assert!(matches!(
            Pooling::from_metadata(&text),
            Err(PoolingError::Metadata(_))
        ));
    }
}
