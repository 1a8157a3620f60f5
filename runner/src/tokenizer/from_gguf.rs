//! Builds a [`Tokenizer`] from a GGUF file's `tokenizer.ggml.*` metadata.

use gguf::Metadata;

use super::{TokenKind, Tokenizer, TokenizerError, VocabData};

impl Tokenizer {
    /// The tokenizer a GGUF file describes. A missing or mistyped key is an error that
    /// names the key.
    pub fn from_metadata(md: &Metadata) -> Result<Self, TokenizerError> {
        let bad = |e: gguf::MetadataError| TokenizerError::Invalid(e.to_string());
        let opt_bool = |key: &str| md.get_opt::<bool>(key).map_err(bad);
        let opt_id = |key: &str| md.get_opt::<u32>(key).map_err(bad);
        let data = VocabData {
            tokens: md.tokens().map_err(bad)?.to_vec(),
            scores: md
                .token_scores()
                .map_err(bad)?
                .map(<[f32]>::to_vec)
                .unwrap_or_default(),
            kinds: md
                .token_types()
                .map_err(bad)?
                .map(|t| t.iter().map(|&v| TokenKind::from_gguf(v)).collect())
                .unwrap_or_default(),
            merges: md
                .merges()
                .map_err(bad)?
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
            bos: md.bos_token_id().map_err(bad)?,
            eos: md.eos_token_id().map_err(bad)?,
            eot: opt_id("tokenizer.ggml.eot_token_id")?,
            unknown: opt_id("tokenizer.ggml.unknown_token_id")?,
            add_bos: opt_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: opt_bool("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: opt_bool("tokenizer.ggml.add_space_prefix")?,
        };
        let model = md.tokenizer_model().map_err(bad)?;
        let pre = md.tokenizer_pre().map_err(bad)?;
        Tokenizer::new(model, pre, data)
    }
}
