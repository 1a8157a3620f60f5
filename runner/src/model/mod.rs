//! Model architectures: turning a batch of tokens into logits (or, when the batch asks,
//! into embeddings: the final hidden states, pooled per sequence by [`pooling`]).
//!
//! Each architecture is one file that reads top to bottom like its paper and implements
//! [`Model`]; [`load`] picks it by `general.architecture`. Weights stay in the
//! memory-mapped GGUF file: a model holds the file and byte ranges into it
//! ([`weights`]). The pieces several architectures share (attention over the
//! [`KvCache`], the gated MLP) live in [`attention`] and [`layers`]; a model's buffers
//! are sized at load ([`activations`]).

pub mod activations;
pub mod attention;
pub mod bert;
pub mod decoder;
pub mod device;
pub mod gemma;
mod gpu_pass;
mod head;
mod hparams;
pub mod layers;
pub mod llama;
pub mod moe;
pub mod phi3;
pub mod pooling;
pub mod qwen2;
pub mod qwen3;
pub mod qwen3moe;
pub mod repack;
pub mod weights;

use std::sync::Arc;

use gguf::{GgmlType, GgufError, GgufFile, MetadataError};
pub use kernels::cpu::Numerics;
use kernels::matmul::MatmulError;
use kernels::ops::{FlashAttnError, RopeError};
use kernels::quant::QuantError;
use plan::PlanError;
use thiserror::Error;

use crate::kvcache::{KvCache, KvConfig, KvError, KvLayout};
use crate::tokenizer::TokenId;

/// The memory plan of a model from its metadata alone (the `plan` crate's, which the
/// supervisor's estimate shares).
pub use plan::arch::{ArchPlan, plan};

/// Why a model cannot be loaded or run.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The file could not be read.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A hyper-parameter is missing or malformed (the error names the key).
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The hyper-parameters or the configuration cannot be planned (a bad or missing
    /// hyper-parameter, an unknown architecture, a refused cache configuration); boxed,
    /// as it holds GGUF errors of its own.
    #[error(transparent)]
    Plan(Box<PlanError>),
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
    /// An environment variable holds a value it does not take.
    #[error("{name}={value:?} is not valid: it takes {accepts}")]
    Setting {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it takes.
        accepts: &'static str,
    },
    /// `OLLAMA_NUMERICS` names no numerics.
    #[error(transparent)]
    Numerics(#[from] kernels::cpu::UnknownNumerics),
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
    /// Every request the batch served was cancelled, and the pass stopped between
    /// layers; its tokens are not in the cache.
    #[error("the forward pass was interrupted: every request in the batch was cancelled")]
    Interrupted,
    /// Flash attention could not read the cache.
    #[error(transparent)]
    Attention(#[from] FlashAttnError),
    /// A weight matrix could not be repacked for the fast kernels.
    #[error("tensor '{name}' could not be repacked for the fast kernels: {source}")]
    Repack {
        /// The tensor.
        name: String,
        /// Why.
        source: kernels::repack::RepackError,
    },
    /// A tensor read row by row (an embedding table, a vector) was repacked as a matrix:
    /// a bug in the repacking rule, reported rather than read in the wrong layout.
    #[error(
        "tensor '{0}' was repacked for the matrix kernels but is read row by row; run with OLLAMA_NUMERICS=exact and report this"
    )]
    Repacked(String),
    /// The GPU failed: it could not be opened, ran out of memory or was lost. The error
    /// says which, and that `OLLAMA_DEVICE=cpu` runs the model on the CPU instead.
    #[error(transparent)]
    Gpu(#[from] gpu::GpuError),
    /// The model has a part the GPU forward pass does not run yet.
    #[error("{0} do not run on the GPU yet; run this model on the CPU with OLLAMA_DEVICE=cpu")]
    NotOnGpu(&'static str),
}

impl From<PlanError> for ModelError {
    fn from(e: PlanError) -> Self {
        ModelError::Plan(Box::new(e))
    }
}

/// What a forward pass writes for each token of a batch that asks for output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// A row of `n_vocab` logits: the final hidden state through the output head.
    #[default]
    Logits,
    /// A row of `n_embd` values: the final hidden state after the model's final norm
    /// (`output_norm`), before the output head. This is what llama.cpp calls the
    /// embeddings of a decoder model (`result_norm`, its `t_embd`), and what
    /// [`pooling`] pools into one vector per sequence.
    Embeddings,
}

/// Asks a forward pass to stop before its next matrix product (or layer), so that a prompt
/// whose caller left stops within one product's time instead of one batch's (seconds on a
/// long prompt). One layer was not fine enough: 72 ms for SmolLM2 at 512 tokens in exact
/// numerics on two cores.
#[derive(Clone)]
pub struct Interrupt(Arc<dyn Fn() -> bool + Send + Sync>);

impl Interrupt {
    /// An interrupt that is set whenever `is_set` says so.
    pub fn new(is_set: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(is_set))
    }

    /// Whether the pass should stop now.
    pub fn is_set(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interrupt")
    }
}

/// Tokens to run through the model together, each with its position, its sequence and
/// whether its output (logits, or embeddings when the batch asks for them) is wanted.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    tokens: Vec<TokenId>,
    positions: Vec<i32>,
    seqs: Vec<usize>,
    logits: Vec<bool>,
    output: Output,
    interrupt: Option<Interrupt>,
}

impl Batch {
    /// An empty batch that asks for logits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token at `pos` of sequence `seq`; `logits` asks for its output (its
    /// logits, or its embedding when the batch asks for [`Output::Embeddings`]).
    pub fn push(&mut self, token: TokenId, pos: i32, seq: usize, logits: bool) {
        self.tokens.push(token);
        self.positions.push(pos);
        self.seqs.push(seq);
        self.logits.push(logits);
    }

    /// Empties the batch, keeping its memory, and sets it back to asking for
    /// [`Output::Logits`]: a cleared batch is a new one, so a pass that wants embeddings
    /// says so again with [`Batch::set_output`].
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.positions.clear();
        self.seqs.clear();
        self.logits.clear();
        self.output = Output::Logits;
        self.interrupt = None;
    }

    /// Lets `interrupt` stop the pass over this batch between layers and before each
    /// matrix product (with
    /// [`ModelError::Interrupted`]).
    pub fn set_interrupt(&mut self, interrupt: Interrupt) {
        self.interrupt = Some(interrupt);
    }

    /// Whether the pass over this batch should stop: models check it between layers.
    pub fn interrupted(&self) -> bool {
        self.interrupt.as_ref().is_some_and(Interrupt::is_set)
    }

    /// The interrupt set on this batch, for [`Cpu::interruptible`](weights::Cpu::interruptible).
    pub fn interrupt(&self) -> Option<&Interrupt> {
        self.interrupt.as_ref()
    }

    /// Asks for `output` (logits or embeddings) for every token whose flag is set.
    pub fn set_output(&mut self, output: Output) {
        self.output = output;
    }

    /// What the batch asks for: logits (the default) or embeddings.
    pub fn output(&self) -> Output {
        self.output
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

    /// Whether each token's output (logits or embeddings, as [`Batch::output`] says) is
    /// wanted.
    pub fn wants_logits(&self) -> &[bool] {
        &self.logits
    }
}

/// What a forward pass produced, one row per token that asked for output: logits
/// (`n_vocab` values a row) or, when the batch asked for [`Output::Embeddings`],
/// embeddings (`n_embd` values a row). [`Logits::width`] is the row length either way;
/// [`Logits::n_vocab`] is the same number under its older name.
#[derive(Debug, Clone, Default)]
pub struct Logits {
    n_vocab: usize,
    values: Vec<f32>,
    rows: Vec<usize>,
    output: Output,
}

impl Logits {
    /// Empty logits.
    pub fn new() -> Self {
        Self::default()
    }

    /// The length of each row: the vocabulary size for logits, `n_embd` for embeddings.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// The length of each row (`n_vocab` for logits, `n_embd` for embeddings).
    pub fn width(&self) -> usize {
        self.n_vocab
    }

    /// What the rows hold: logits or embeddings.
    pub fn output(&self) -> Output {
        self.output
    }

    /// The row of the token at `index` in the batch, if it asked for output.
    pub fn row(&self, index: usize) -> Option<&[f32]> {
        let k = self.rows.iter().position(|&r| r == index)?;
        self.values.get(k * self.n_vocab..(k + 1) * self.n_vocab)
    }

    /// The row of the last token that asked for output.
    pub fn last(&self) -> Option<&[f32]> {
        let k = self.rows.len().checked_sub(1)?;
        self.values.get(k * self.n_vocab..(k + 1) * self.n_vocab)
    }

    /// Every row with the batch index of its token, in batch order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = (usize, &[f32])> {
        let w = self.n_vocab;
        // `prepare_output` sizes `values` to exactly `rows.len() * w`.
        (self.rows.iter().enumerate()).map(move |(k, &t)| (t, &self.values[k * w..(k + 1) * w]))
    }

    /// Resizes for logits rows of `n_vocab` for `rows` (batch indices) and returns the
    /// space to fill, row after row.
    pub(crate) fn prepare(
        &mut self,
        n_vocab: usize,
        rows: impl Iterator<Item = usize>,
    ) -> &mut [f32] {
        self.prepare_output(Output::Logits, n_vocab, rows)
    }

    /// Resizes for rows of `output` of `width` values for `rows` (batch indices) and
    /// returns the space to fill, row after row.
    pub(crate) fn prepare_output(
        &mut self,
        output: Output,
        width: usize,
        rows: impl Iterator<Item = usize>,
    ) -> &mut [f32] {
        self.output = output;
        self.n_vocab = width;
        self.rows.clear();
        self.rows.extend(rows);
        self.values.resize(self.rows.len() * width, 0.0);
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
    /// How the products add: llama.cpp's reference order (exact) or the fast kernels'.
    pub numerics: Numerics,
    /// The GPU to run on ([`device::open`]), or `None` for the CPU.
    pub device: Option<Arc<gpu::Gpu>>,
}

impl LoadOptions {
    /// What sizes the model's buffers.
    pub fn compute(&self) -> activations::ComputeConfig {
        activations::ComputeConfig::new(&self.kv, self.threads)
    }
}

/// A loaded model of some architecture.
pub trait Model: Send {
    /// The `general.architecture` it implements.
    fn architecture(&self) -> &'static str;

    /// Vocabulary size: the length of a row of logits.
    fn n_vocab(&self) -> usize;

    /// The hidden size: the length of a row of embeddings (a batch asking for
    /// [`Output::Embeddings`] gets rows of this many values).
    fn n_embd(&self) -> usize;

    /// The context length the model was trained for.
    fn train_ctx(&self) -> usize;

    /// What the K/V cache must hold per token and layer.
    fn kv_layout(&self) -> KvLayout;

    /// Bytes of the model's own buffers (activations, attention and matmul scratch).
    fn scratch_bytes(&self) -> usize;

    /// The GPU the model computes on, or `None` on the CPU: its cache is made there too
    /// ([`new_cache`]).
    fn device(&self) -> Option<Arc<gpu::Gpu>> {
        None
    }

    /// Runs `batch`, storing its keys and values in `cache` and writing the logits (or the
    /// embeddings, when the batch asks for [`Output::Embeddings`]) of the tokens that
    /// asked for them into `out`. Keys whose positions were
    /// shifted are re-rotated first. On error the batch's tokens are not in the cache.
    fn forward(
        &mut self,
        batch: &Batch,
        cache: &mut KvCache,
        out: &mut Logits,
    ) -> Result<(), ModelError>;
}

/// A cache for `model` with `config`, allocated now, where the model computes: in
/// memory here, or on its GPU.
pub fn new_cache(model: &dyn Model, config: KvConfig) -> Result<KvCache, ModelError> {
    Ok(match model.device() {
        Some(gpu) => KvCache::new_on_device(model.kv_layout(), config, gpu)?,
        None => KvCache::new(model.kv_layout(), config)?,
    })
}

type Loader = fn(Arc<GgufFile>, &LoadOptions) -> Result<Box<dyn Model>, ModelError>;

/// The architectures we run, by `general.architecture` (their hyper-parameters and
/// memory plans are read by `plan::arch`, which knows the same names).
const ARCHITECTURES: &[(&str, Loader)] = &[
    ("llama", llama::load),
    ("gemma2", gemma::load),
    ("gemma3", gemma::load),
    ("qwen2", qwen2::load),
    ("qwen3", qwen3::load),
    ("phi3", phi3::load),
    ("qwen3moe", qwen3moe::load),
    ("bert", bert::Bert::load_boxed),
    ("nomic-bert", bert::Bert::load_boxed),
];

/// The file made ready to load for `options`, then shared: its weight matrices repacked
/// for the fast kernels ([`repack`]) when those will multiply them. A file loaded without
/// it computes the same, its matrices read as the file stores them.
pub fn prepare(mut file: GgufFile, options: &LoadOptions) -> Result<Arc<GgufFile>, ModelError> {
    // A GPU uploads the blocks as the file stores them.
    if options.device.is_none() || !plan::device::runs_on_gpu(file.metadata().architecture()?) {
        repack::repack_weights(&mut file, options.numerics, kernels::cpu::Isa::detect()?)?;
    }
    Ok(Arc::new(file))
}

/// Loads the model in `file` with the implementation its `general.architecture` names,
/// on the CPU when that architecture has no GPU pass ([`plan::device::runs_on_gpu`]),
/// whatever device `options` names: [`Model::device`] says where it runs.
pub fn load(file: Arc<GgufFile>, options: &LoadOptions) -> Result<Box<dyn Model>, ModelError> {
    let arch = file.metadata().architecture()?;
    let (_, loader) = ARCHITECTURES
        .iter()
        .find(|(name, _)| *name == arch)
        .ok_or_else(|| PlanError::UnknownArchitecture(arch.to_owned()))?;
    if options.device.is_some() && !plan::device::runs_on_gpu(arch) {
        tracing::warn!(
            architecture = arch,
            "this architecture has no GPU pass yet: the model runs on the CPU"
        );
        let on_cpu = LoadOptions {
            device: None,
            ..options.clone()
        };
        return loader(file, &on_cpu);
    }
    loader(file, options)
}
