//! Why a cache cannot be made or used as asked.

use kernels::quant::QuantError;
use thiserror::Error;

use super::KvConfigError;

/// Why a cache cannot be made or used as asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KvError {
    /// The configuration is refused (a size out of range, heads that are not whole
    /// blocks of the storage type, a cache too large to address).
    #[error(transparent)]
    Config(#[from] KvConfigError),
    /// The cache was made for another model.
    #[error("the K/V cache was made for another model (its layout differs)")]
    LayoutMismatch,
    /// A batch names a sequence the cache does not have.
    #[error("sequence {seq} does not exist (the cache has {n_seq})")]
    UnknownSequence {
        /// The sequence.
        seq: usize,
        /// Sequences in the cache.
        n_seq: usize,
    },
    /// A token's position is past the context.
    #[error("sequence {seq} is full: position {pos} is past its {num_ctx} positions")]
    ContextFull {
        /// The sequence.
        seq: usize,
        /// The position asked for.
        pos: i64,
        /// Positions per sequence.
        num_ctx: usize,
    },
    /// A token's position would leave a gap in its sequence, or is negative.
    #[error("position {pos} of sequence {seq} is not in 0..={next} (the next free position)")]
    BadPosition {
        /// The sequence.
        seq: usize,
        /// The position asked for.
        pos: i64,
        /// The sequence's next position.
        next: i64,
    },
    /// A sequence's tokens in one batch are not consecutive positions.
    #[error(
        "sequence {seq}'s tokens in a batch must have consecutive positions: {pos} follows {prev}"
    )]
    NotConsecutive {
        /// The sequence.
        seq: usize,
        /// The position found.
        pos: i64,
        /// The position before it.
        prev: i64,
    },
    /// More tokens than `num_batch` in one pass.
    #[error("a batch of {len} tokens is larger than num_batch ({num_batch}); split it")]
    BatchTooLarge {
        /// Tokens in the batch.
        len: usize,
        /// The limit.
        num_batch: usize,
    },
    /// No empty cells are left.
    #[error("the K/V cache has {free} free cells of {cells}, a batch needs {needed}")]
    Full {
        /// Cells needed.
        needed: usize,
        /// Cells free.
        free: usize,
        /// Cells in the table.
        cells: usize,
    },
    /// A sliding-window table no longer holds positions a batch needs.
    #[error(
        "sequence {seq} cannot continue at position {pos}: the sliding-window cache no longer holds the positions before it; evaluate the sequence again from position 0"
    )]
    WindowLost {
        /// The sequence.
        seq: usize,
        /// Where the batch starts.
        pos: i64,
    },
    /// A row could not be converted to or from its storage type.
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// The GPU holding the cache failed (out of memory, device lost); the message is the
    /// device's error.
    #[error("the K/V cache on the GPU: {0}")]
    Device(String),
    /// The GPU kernels do not store this cache type.
    #[error(
        "the GPU K/V cache stores f32, f16, q8_0 and q4_0, not {ty}; set OLLAMA_KV_CACHE_TYPE (or the K and V types) to one of those, or run this model on the CPU with OLLAMA_DEVICE=cpu"
    )]
    DeviceType {
        /// The refused type's name.
        ty: &'static str,
    },
}

impl From<gpu::GpuError> for KvError {
    fn from(e: gpu::GpuError) -> Self {
        Self::Device(e.to_string())
    }
}
