//! Model architectures: turning a batch of tokens into logits.
//!
//! Each architecture is one file that reads top to bottom like its paper and implements
//! [`Model`]; [`load`] picks it by `general.architecture`. Weights stay in the
//! memory-mapped GGUF file: a model holds the file and byte ranges into it
//! ([`weights`]). The pieces several architectures share (attention over the
//! [`KvCache`], the gated MLP) live in [`attention`] and [`layers`]; a model's buffers
//! are sized at load ([`activations`]).

pub mod activations;
pub mod attention;
pub mod gemma3;
mod head;
mod hparams;
pub mod layers;
pub mod llama;
pub mod weights;

use std::sync::Arc;

use gguf::{GgmlType, GgufError, GgufFile, MetadataError};
use kernels::matmul::MatmulError;
use kernels::ops::{FlashAttnError, RopeError};
use kernels::quant::QuantError;
use thiserror::Error;

use crate::kvcache::{KvCache, KvConfig, KvError, KvLayout};
use crate::tokenizer::TokenId;

/// Why a model cannot be loaded or run.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The file could not be read.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A hyper-parameter is missing or malformed (the error names the key).
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A hyper-parameter has a value the architecture cannot use.
    #[error("metadata key '{key}' is {value}: {why}")]
    BadHyperParameter {
        /// The key.
        key: String,
        /// Its value, printed.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// No implementation exists for the file's architecture.
    #[error("unknown model architecture '{0}'")]
    UnknownArchitecture(String),
    /// A tensor the architecture needs is not in the file.
    #[error("tensor '{0}' is missing")]
    MissingTensor(String),
    /// A tensor has another shape than the hyper-parameters imply.
    #[error("tensor '{name}' has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        /// The tensor.
        name: String,
        /// Its dims, ggml order.
        actual: Vec<u64>,
        /// The dims expected, ggml order.
        expected: Vec<u64>,
    },
    /// A tensor has a type no kernel handles in its role.
    #[error("tensor '{name}' has type {ty}, which is not supported here")]
    UnsupportedType {
        /// The tensor.
        name: String,
        /// Its type.
        ty: GgmlType,
    },
    /// A matrix product failed.
    #[error(transparent)]
    Matmul(#[from] MatmulError),
    /// The rotary embedding parameters are invalid.
    #[error(transparent)]
    Rope(#[from] RopeError),
    /// Dequantizing a tensor row failed.
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// The CPU lacks the instructions the kernels need.
    #[error(transparent)]
    Isa(#[from] kernels::cpu::IsaError),
    /// The worker threads could not start.
    #[error(transparent)]
    Pool(#[from] kernels::pool::PoolError),
    /// A token id is outside the vocabulary.
    #[error("token {token} is outside the vocabulary of {n_vocab}")]
    TokenOutOfRange {
        /// The token.
        token: TokenId,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// The K/V cache refused the batch or a configuration.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// Flash attention could not read the cache.
    #[error(transparent)]
    Attention(#[from] FlashAttnError),
}

/// Tokens to run through the model together, each with its position, its sequence and
/// whether its logits are wanted.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    tokens: Vec<TokenId>,
    positions: Vec<i32>,
    seqs: Vec<usize>,
    logits: Vec<bool>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token at `pos` of sequence `seq`; `logits` asks for its logits.
    pub fn push(&mut self, token: TokenId, pos: i32, seq: usize, logits: bool) {
        self.tokens.push(token);
        self.positions.push(pos);
        self.seqs.push(seq);
        self.logits.push(logits);
    }

    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.positions.clear();
        self.seqs.clear();
        self.logits.clear();
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when the batch holds no token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens.
    pub fn tokens(&self) -> &[TokenId] {
        &self.tokens
    }

    /// The position of each token.
    pub fn positions(&self) -> &[i32] {
        &self.positions
    }

    /// The sequence of each token.
    pub fn seqs(&self) -> &[usize] {
        &self.seqs
    }

    /// Whether each token's logits are wanted.
    pub fn wants_logits(&self) -> &[bool] {
        &self.logits
    }
}

/// The logits a forward pass produced, one row per token that asked for them.
#[derive(Debug, Clone, Default)]
pub struct Logits {
    n_vocab: usize,
    values: Vec<f32>,
    rows: Vec<usize>,
}

impl Logits {
    /// Empty logits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Vocabulary size (the length of each row).
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// The logits of the token at `index` in the batch, if it asked for them.
    pub fn row(&self, index: usize) -> Option<&[f32]> {
        let k = self.rows.iter().position(|&r| r == index)?;
        self.values.get(k * self.n_vocab..(k + 1) * self.n_vocab)
    }

    /// The logits of the last token that asked for them.
    pub fn last(&self) -> Option<&[f32]> {
        let k = self.rows.len().checked_sub(1)?;
        self.values.get(k * self.n_vocab..(k + 1) * self.n_vocab)
    }

    /// Resizes for `rows` (batch indices) and returns the space to fill, row after row.
    pub(crate) fn prepare(
        &mut self,
        n_vocab: usize,
        rows: impl Iterator<Item = usize>,
    ) -> &mut [f32] {
        self.n_vocab = n_vocab;
        self.rows.clear();
        self.rows.extend(rows);
        self.values.resize(self.rows.len() * n_vocab, 0.0);
        &mut self.values
    }
}

/// How to run a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Threads for the matrix products (the calling thread included).
    pub threads: usize,
    /// The cache the model will run with: its batch size, context and attention path
    /// size the model's buffers.
    pub kv: KvConfig,
}

impl LoadOptions {
    /// What sizes the model's buffers.
    pub fn compute(&self) -> activations::ComputeConfig {
        activations::ComputeConfig {
            num_ctx: self.kv.num_ctx,
            num_batch: self.kv.num_batch,
            flash_attention: self.kv.flash_attention,
            threads: self.threads,
        }
    }
}

/// A loaded model of some architecture.
pub trait Model: Send {
    /// The `general.architecture` it implements.
    fn architecture(&self) -> &'static str;

    /// Vocabulary size: the length of a row of logits.
    fn n_vocab(&self) -> usize;

    /// The context length the model was trained for.
    fn train_ctx(&self) -> usize;

    /// What the K/V cache must hold per token and layer.
    fn kv_layout(&self) -> KvLayout;

    /// Bytes of the model's own buffers (activations, attention and matmul scratch).
    fn scratch_bytes(&self) -> usize;

    /// Runs `batch`, storing its keys and values in `cache` and writing the logits of the
    /// tokens that asked for them into `out`. Keys whose positions were shifted are
    /// re-rotated first. On error the batch's tokens are not in the cache.
    fn forward(
        &mut self,
        batch: &Batch,
        cache: &mut KvCache,
        out: &mut Logits,
    ) -> Result<(), ModelError>;
}

/// A cache for `model` with `config`, allocated now.
pub fn new_cache(model: &dyn Model, config: KvConfig) -> Result<KvCache, ModelError> {
    Ok(KvCache::new(model.kv_layout(), config)?)
}

/// What a model's metadata says about its memory: the widths of its buffers and the
/// layout of its K/V cache. Loading uses it to allocate, [`crate::estimate`] to predict.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchPlan {
    /// Per-token buffer widths.
    pub dims: activations::ActivationDims,
    /// The K/V cache layout.
    pub kv: KvLayout,
}

type Loader = fn(Arc<GgufFile>, &LoadOptions) -> Result<Box<dyn Model>, ModelError>;
type Planner = fn(&GgufFile) -> Result<ArchPlan, ModelError>;

/// The architectures we run, by `general.architecture`.
const ARCHITECTURES: &[(&str, Loader, Planner)] = &[
    ("llama", llama::Llama::load_boxed, llama::Llama::plan),
    ("gemma3", gemma3::Gemma3::load_boxed, gemma3::Gemma3::plan),
];

fn architecture(file: &GgufFile) -> Result<&'static (&'static str, Loader, Planner), ModelError> {
    let arch = file.metadata().architecture()?;
    ARCHITECTURES
        .iter()
        .find(|(name, _, _)| *name == arch)
        .ok_or_else(|| ModelError::UnknownArchitecture(arch.to_owned()))
}

/// Loads the model in `file` with the implementation its `general.architecture` names.
pub fn load(file: Arc<GgufFile>, options: &LoadOptions) -> Result<Box<dyn Model>, ModelError> {
    let (_, loader, _) = architecture(&file)?;
    loader(file, options)
}

/// The memory plan of the model in `file`, from its metadata alone.
pub fn plan(file: &GgufFile) -> Result<ArchPlan, ModelError> {
    let (_, _, planner) = architecture(file)?;
    planner(file)
}
