//! Typed helpers for the metadata keys models read, with llama.cpp's defaults where a key
//! is optional.

use crate::error::MetadataError;
use crate::keys;
use crate::metadata::{FromMetadata, Metadata};

/// llama.cpp's RoPE base when `{arch}.rope.freq_base` is absent.
pub const DEFAULT_ROPE_FREQ_BASE: f32 = 10_000.0;

impl Metadata {
    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, MetadataError> {
        self.get_str(keys::GENERAL_ARCHITECTURE)
    }

    /// `{arch}.{suffix}`, e.g. `llama.block_count` for `block_count`.
    pub fn arch_key(&self, suffix: &str) -> Result<String, MetadataError> {
        Ok(format!("{}.{suffix}", self.architecture()?))
    }

    /// The value of `{arch}.{suffix}`.
    pub fn arch_get<'a, T: FromMetadata<'a>>(&'a self, suffix: &str) -> Result<T, MetadataError> {
        self.get_as(&self.arch_key(suffix)?)
    }

    /// The value of `{arch}.{suffix}`, `None` when absent.
    pub fn arch_get_opt<'a, T: FromMetadata<'a>>(
        &'a self,
        suffix: &str,
    ) -> Result<Option<T>, MetadataError> {
        self.get_opt(&self.arch_key(suffix)?)
    }

    /// `{arch}.{suffix}` as a `u32`.
    pub fn arch_u32(&self, suffix: &str) -> Result<u32, MetadataError> {
        self.arch_get(suffix)
    }

    /// `{arch}.{suffix}` as an `f32`.
    pub fn arch_f32(&self, suffix: &str) -> Result<f32, MetadataError> {
        self.arch_get(suffix)
    }

    /// `{arch}.context_length`: the context the model was trained for.
    pub fn context_length(&self) -> Result<u32, MetadataError> {
        self.arch_u32(keys::CONTEXT_LENGTH)
    }

    /// `{arch}.embedding_length`: the hidden size.
    pub fn embedding_length(&self) -> Result<u32, MetadataError> {
        self.arch_u32(keys::EMBEDDING_LENGTH)
    }

    /// `{arch}.block_count`: the number of layers.
    pub fn block_count(&self) -> Result<u32, MetadataError> {
        self.arch_u32(keys::BLOCK_COUNT)
    }

    /// `{arch}.feed_forward_length`.
    pub fn feed_forward_length(&self) -> Result<u32, MetadataError> {
        self.arch_u32(keys::FEED_FORWARD_LENGTH)
    }

    /// `{arch}.attention.head_count`: query heads.
    pub fn head_count(&self) -> Result<u32, MetadataError> {
        self.arch_u32(keys::HEAD_COUNT)
    }

    /// `{arch}.attention.head_count_kv`, or the query head count when absent.
    pub fn head_count_kv(&self) -> Result<u32, MetadataError> {
        match self.arch_get_opt(keys::HEAD_COUNT_KV)? {
            Some(n) => Ok(n),
            None => self.head_count(),
        }
    }

    /// `{arch}.attention.key_length`, or `embedding_length / head_count` when absent.
    pub fn key_length(&self) -> Result<u32, MetadataError> {
        self.head_size(keys::KEY_LENGTH)
    }

    /// `{arch}.attention.value_length`, or `embedding_length / head_count` when absent.
    pub fn value_length(&self) -> Result<u32, MetadataError> {
        self.head_size(keys::VALUE_LENGTH)
    }

    fn head_size(&self, suffix: &str) -> Result<u32, MetadataError> {
        if let Some(n) = self.arch_get_opt(suffix)? {
            return Ok(n);
        }
        let heads = self.head_count()?;
        if heads == 0 {
            return Err(MetadataError::OutOfRange {
                key: self.arch_key(keys::HEAD_COUNT)?,
                value: 0,
                expected: "a positive head count",
            });
        }
        Ok(self.embedding_length()? / heads)
    }

    /// `{arch}.attention.layer_norm_rms_epsilon`.
    pub fn rms_norm_epsilon(&self) -> Result<f32, MetadataError> {
        self.arch_f32(keys::LAYER_NORM_RMS_EPSILON)
    }

    /// `{arch}.attention.sliding_window`, `None` when the model has no sliding window.
    pub fn sliding_window(&self) -> Result<Option<u32>, MetadataError> {
        self.arch_get_opt(keys::SLIDING_WINDOW)
    }

    /// `{arch}.rope.freq_base`, or [`DEFAULT_ROPE_FREQ_BASE`] when absent.
    pub fn rope_freq_base(&self) -> Result<f32, MetadataError> {
        Ok(self
            .arch_get_opt(keys::ROPE_FREQ_BASE)?
            .unwrap_or(DEFAULT_ROPE_FREQ_BASE))
    }

    /// `{arch}.rope.dimension_count`, `None` when absent (RoPE then covers the whole head).
    pub fn rope_dimension_count(&self) -> Result<Option<u32>, MetadataError> {
        self.arch_get_opt(keys::ROPE_DIMENSION_COUNT)
    }

    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE), `llama` (SentencePiece), ...
    pub fn tokenizer_model(&self) -> Result<&str, MetadataError> {
        self.get_str(keys::TOKENIZER_MODEL)
    }

    /// `tokenizer.ggml.pre`, `None` when absent.
    pub fn tokenizer_pre(&self) -> Result<Option<&str>, MetadataError> {
        self.get_opt(keys::TOKENIZER_PRE)
    }

    /// `tokenizer.ggml.tokens`: the vocabulary by id.
    pub fn tokens(&self) -> Result<&[String], MetadataError> {
        self.get_str_array(keys::TOKENIZER_TOKENS)
    }

    /// `tokenizer.ggml.scores`, `None` when absent.
    pub fn token_scores(&self) -> Result<Option<&[f32]>, MetadataError> {
        self.get_opt(keys::TOKENIZER_SCORES)
    }

    /// `tokenizer.ggml.token_type`, `None` when absent.
    pub fn token_types(&self) -> Result<Option<&[i32]>, MetadataError> {
        self.get_opt(keys::TOKENIZER_TOKEN_TYPE)
    }

    /// `tokenizer.ggml.merges`, `None` when absent.
    pub fn merges(&self) -> Result<Option<&[String]>, MetadataError> {
        self.get_opt(keys::TOKENIZER_MERGES)
    }

    /// `tokenizer.ggml.bos_token_id`, `None` when absent.
    pub fn bos_token_id(&self) -> Result<Option<u32>, MetadataError> {
        self.get_opt(keys::TOKENIZER_BOS_ID)
    }

    /// `tokenizer.ggml.eos_token_id`, `None` when absent.
    pub fn eos_token_id(&self) -> Result<Option<u32>, MetadataError> {
        self.get_opt(keys::TOKENIZER_EOS_ID)
    }

    /// `tokenizer.chat_template`, `None` when absent.
    pub fn chat_template(&self) -> Result<Option<&str>, MetadataError> {
        self.get_opt(keys::TOKENIZER_CHAT_TEMPLATE)
    }

    /// `general.file_type`, `None` when absent.
    pub fn file_type(&self) -> Result<Option<u32>, MetadataError> {
        self.get_opt(keys::GENERAL_FILE_TYPE)
    }
}

/// llama.cpp's name for a `general.file_type` value (`llama_ftype`), e.g. `Q4_K_M` for
/// 15; `None` for ids it does not define.
pub fn file_type_name(file_type: u32) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}
