//! Fill-in-the-middle: `/api/generate`'s `suffix` asks for the text between `prompt` and
//! `suffix`. Code models learn it with three special tokens (prefix, suffix, middle); the
//! prompt is written prefix-suffix-middle, as llama.cpp's infill writes it, and the model
//! generates the middle.
//!
//! The tokens come from the GGUF keys llama.cpp's converter writes
//! (`tokenizer.ggml.fim_{pre,suf,mid}_token_id`), else from the vocabulary when it holds
//! one of the well-known triples (what llama.cpp's vocabulary loader also looks for).

use gguf::{Metadata, MetadataError};

/// The triples of token texts code-model families use, in prefix, suffix, middle order.
const KNOWN: &[[&str; 3]] = &[
    // StarCoder, SmolLM, Granite.
    ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"],
    // Qwen 2.5 Coder, CodeGemma.
    ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"],
    // DeepSeek Coder.
    ["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"],
    ["<|fim▁begin|>", "<|fim▁hole|>", "<|fim▁end|>"],
    // Code Llama.
    ["<PRE>", "<SUF>", "<MID>"],
    ["▁<PRE>", "▁<SUF>", "▁<MID>"],
];

/// The keys llama.cpp writes for the three token ids.
const KEYS: [&str; 3] = [
    "tokenizer.ggml.fim_pre_token_id",
    "tokenizer.ggml.fim_suf_token_id",
    "tokenizer.ggml.fim_mid_token_id",
];

/// A model's fill-in-the-middle tokens, as text the runner parses back into them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fim {
    prefix: String,
    suffix: String,
    middle: String,
}

impl Fim {
    /// The model's FIM tokens, or `None` when it was not trained for FIM.
    pub fn from_metadata(md: &Metadata) -> Result<Option<Self>, MetadataError> {
        let Ok(tokens) = md.tokens() else {
            return Ok(None);
        };
        let mut ids = [None; 3];
        for (id, key) in ids.iter_mut().zip(KEYS) {
            *id = md.get_opt::<u32>(key)?;
        }
        if let [Some(p), Some(s), Some(m)] = ids {
            let text = |id: u32| tokens.get(id as usize).cloned();
            if let (Some(prefix), Some(suffix), Some(middle)) = (text(p), text(s), text(m)) {
                return Ok(Some(Self {
                    prefix,
                    suffix,
                    middle,
                }));
            }
        }
        let has = |t: &str| tokens.iter().any(|v| v == t);
        Ok(KNOWN
            .iter()
            .find(|triple| triple.iter().all(|t| has(t)))
            .map(|[prefix, suffix, middle]| Self {
                prefix: (*prefix).to_owned(),
                suffix: (*suffix).to_owned(),
                middle: (*middle).to_owned(),
            }))
    }

    /// The prompt that asks for the text between `before` and `after`.
    pub fn prompt(&self, before: &str, after: &str) -> String {
        format!(
            "{}{before}{}{after}{}",
            self.prefix, self.suffix, self.middle
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gguf::GgufWriter;

    fn metadata(tokens: Vec<&str>, ids: Option<[u32; 3]>) -> Metadata {
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.tokens", tokens);
        if let Some(ids) = ids {
            for (key, id) in KEYS.iter().zip(ids) {
                w.set(*key, id);
            }
        }
        w.metadata().clone()
    }

    #[test]
    fn the_keys_name_the_tokens() {
        let md = metadata(vec!["a", "<pre>", "<suf>", "<mid>"], Some([1, 2, 3]));
        let fim = Fim::from_metadata(&md).unwrap().unwrap();
        assert_eq!(fim.prompt("def f(", "):"), "<pre>def f(<suf>):<mid>");
    }

    #[test]
    fn a_known_triple_in_the_vocabulary_is_found() {
        let md = metadata(
            vec!["x", "<|fim_middle|>", "<|fim_prefix|>", "<|fim_suffix|>"],
            None,
        );
        let fim = Fim::from_metadata(&md).unwrap().unwrap();
        assert_eq!(
            fim.prompt("a", "b"),
            "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>"
        );
    }

    #[test]
    fn a_model_without_them_has_none() {
        // Two of three is not enough, and ids outside the vocabulary are not trusted.
        let md = metadata(vec!["<fim_prefix>", "<fim_suffix>"], Some([0, 1, 9]));
        assert_eq!(Fim::from_metadata(&md).unwrap(), None);
        let md = metadata(vec!["a"], None);
        assert_eq!(Fim::from_metadata(&md).unwrap(), None);
    }
}
