//! Names of the metadata keys this project reads, as llama.cpp's converters write them.
//! Keys under an architecture are suffixes: `{arch}.` goes in front
//! (see [`crate::Metadata::arch_key`]).

/// The architecture name (`llama`, `gemma3`, ...), the prefix of the model's own keys.
pub const GENERAL_ARCHITECTURE: &str = "general.architecture";
/// The model's display name.
pub const GENERAL_NAME: &str = "general.name";
/// Tensor data alignment in bytes.
pub const GENERAL_ALIGNMENT: &str = "general.alignment";
/// The dominant quantization (llama.cpp's `llama_ftype`).
pub const GENERAL_FILE_TYPE: &str = "general.file_type";
/// Version of the quantization formats.
pub const GENERAL_QUANTIZATION_VERSION: &str = "general.quantization_version";

/// Suffix: training context length.
pub const CONTEXT_LENGTH: &str = "context_length";
/// Suffix: hidden size.
pub const EMBEDDING_LENGTH: &str = "embedding_length";
/// Suffix: number of layers.
pub const BLOCK_COUNT: &str = "block_count";
/// Suffix: hidden size of the feed-forward network.
pub const FEED_FORWARD_LENGTH: &str = "feed_forward_length";
/// Suffix: query heads.
pub const HEAD_COUNT: &str = "attention.head_count";
/// Suffix: key/value heads (grouped-query attention); equals the query heads when absent.
pub const HEAD_COUNT_KV: &str = "attention.head_count_kv";
/// Suffix: size of a key head; `embedding_length / head_count` when absent.
pub const KEY_LENGTH: &str = "attention.key_length";
/// Suffix: size of a value head; `embedding_length / head_count` when absent.
pub const VALUE_LENGTH: &str = "attention.value_length";
/// Suffix: RMS norm epsilon.
pub const LAYER_NORM_RMS_EPSILON: &str = "attention.layer_norm_rms_epsilon";
/// Suffix: sliding-window size of the local attention layers.
pub const SLIDING_WINDOW: &str = "attention.sliding_window";
/// Suffix: RoPE base frequency.
pub const ROPE_FREQ_BASE: &str = "rope.freq_base";
/// Suffix: number of dimensions RoPE rotates.
pub const ROPE_DIMENSION_COUNT: &str = "rope.dimension_count";
/// Suffix: RoPE scaling type (`linear`, `yarn`, ...).
pub const ROPE_SCALING_TYPE: &str = "rope.scaling.type";
/// Suffix: RoPE scaling factor.
pub const ROPE_SCALING_FACTOR: &str = "rope.scaling.factor";
/// Suffix: vocabulary size, when the file states it.
pub const VOCAB_SIZE: &str = "vocab_size";

/// Tokenizer kind: `gpt2` (byte-level BPE), `llama` (SentencePiece), ...
pub const TOKENIZER_MODEL: &str = "tokenizer.ggml.model";
/// Pre-tokenizer name for BPE (`smollm`, `llama-bpe`, `default`, ...).
pub const TOKENIZER_PRE: &str = "tokenizer.ggml.pre";
/// The vocabulary, by token id.
pub const TOKENIZER_TOKENS: &str = "tokenizer.ggml.tokens";
/// Per-token scores (SentencePiece).
pub const TOKENIZER_SCORES: &str = "tokenizer.ggml.scores";
/// Per-token types (normal, control, byte, ...).
pub const TOKENIZER_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
/// BPE merges, `"a b"` each.
pub const TOKENIZER_MERGES: &str = "tokenizer.ggml.merges";
/// Beginning-of-sequence token id.
pub const TOKENIZER_BOS_ID: &str = "tokenizer.ggml.bos_token_id";
/// End-of-sequence token id.
pub const TOKENIZER_EOS_ID: &str = "tokenizer.ggml.eos_token_id";
/// Unknown-token id.
pub const TOKENIZER_UNKNOWN_ID: &str = "tokenizer.ggml.unknown_token_id";
/// Padding token id.
pub const TOKENIZER_PADDING_ID: &str = "tokenizer.ggml.padding_token_id";
/// Whether to put BOS in front of a prompt.
pub const TOKENIZER_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
/// Whether to put EOS after a prompt.
pub const TOKENIZER_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
/// Whether SentencePiece adds a leading space.
pub const TOKENIZER_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
/// The Jinja chat template.
pub const TOKENIZER_CHAT_TEMPLATE: &str = "tokenizer.chat_template";
