//! Structured output: sampling constrained by a JSON schema, so that the generated text
//! always parses and validates (Ollama's `format`).
//!
//! The grammar engine is `llguidance` (what llama.cpp, vLLM and SGLang use): it compiles a
//! JSON schema into an Earley grammar over bytes and, at each step, computes the set of
//! tokens whose bytes keep the output a prefix of some valid document, walking a byte trie
//! of the vocabulary (`toktrie`). The pieces here:
//!
//! - [`Grammars`]: one per loaded model. It builds the trie from our tokenizer's vocabulary
//!   the first time a request asks for a format (never for free text, so a model that
//!   never sees `format` pays nothing) and compiles schemas into constraints.
//! - [`Constraint`]: one per request. Before each sample it masks the logits of tokens the
//!   grammar forbids; after it, it advances on the chosen token. End-of-generation tokens
//!   are allowed only where the grammar accepts, and once the document is complete (no
//!   token may follow) the generation stops.
//!
//! Whitespace between JSON tokens is bounded (at most [`MAX_WHITESPACE`] characters per
//! gap): a small model otherwise loops on newlines forever inside a valid document.

mod vocab;

#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use llguidance::api::{ParserLimits, TopLevelGrammar};
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;
use thiserror::Error;

use crate::tokenizer::{TokenId, Tokenizer};

/// The most whitespace characters the grammar allows between two JSON tokens: enough
/// for pretty-printed documents nested a few levels deep, never an endless run.
pub const MAX_WHITESPACE: usize = 24;

/// The schema Ollama's `format: "json"` stands for: any JSON object.
pub const ANY_JSON_OBJECT: &str = r#"{"type":"object"}"#;

/// Why a format could not be used.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum GrammarError {
    /// The format is not valid JSON.
    #[error("format is not valid JSON: {0}")]
    NotJson(String),
    /// The schema cannot be compiled into a grammar (unsupported or contradictory).
    #[error("format: the JSON schema cannot be used: {0}")]
    Schema(String),
    /// The vocabulary could not be turned into the grammar engine's trie.
    #[error("structured output is not available for this model: {0}")]
    Vocabulary(String),
    /// The grammar engine failed during generation (a bug, not the caller's fault).
    #[error("the output constraint failed: {0}")]
    Step(String),
}

/// The grammar engine for one model: the vocabulary's trie, built on first use.
pub struct Grammars {
    tokenizer: Arc<Tokenizer>,
    factory: OnceLock<Result<Arc<ParserFactory>, GrammarError>>,
}

impl std::fmt::Debug for Grammars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammars")
            .field("built", &self.factory.get().is_some())
            .finish()
    }
}

impl Grammars {
    /// The engine for `tokenizer`'s model; builds nothing until a schema is compiled.
    pub fn new(tokenizer: Arc<Tokenizer>) -> Self {
        Self {
            tokenizer,
            factory: OnceLock::new(),
        }
    }

    fn factory(&self) -> Result<&Arc<ParserFactory>, GrammarError> {
        self.factory
            .get_or_init(|| {
                let started = std::time::Instant::now();
                let env = vocab::token_env(&self.tokenizer)?;
                let mut factory = ParserFactory::new_simple(&env)
                    .map_err(|e| GrammarError::Vocabulary(e.to_string()))?;
                factory.quiet();
                *factory.limits_mut() = ParserLimits {
                    verbose_errors: false,
                    ..ParserLimits::default()
                };
                tracing::info!(
                    vocab = self.tokenizer.vocab().len(),
                    ms = started.elapsed().as_millis() as u64,
                    "grammar vocabulary built"
                );
                Ok(Arc::new(factory))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Compiles `schema` (JSON schema text) into a constraint for one generation, or
    /// names what is wrong with it.
    pub fn compile(&self, schema: &str) -> Result<Constraint, GrammarError> {
        let mut schema: Value =
            serde_json::from_str(schema).map_err(|e| GrammarError::NotJson(e.to_string()))?;
        if let Some(object) = schema.as_object_mut() {
            // Our whitespace rule, never the caller's: the bound keeps generations finite.
            object.insert("x-guidance".into(), compile_options());
        }
        let factory = self.factory()?;
        let grammar = TopLevelGrammar::from_json_schema(schema);
        // The engine catches its own panics; this also covers the step before it.
        let parser = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            factory.create_parser(grammar)
        }))
        .map_err(|_| GrammarError::Schema("the grammar compiler failed on it".into()))?
        .map_err(|e| GrammarError::Schema(first_line(&e.to_string())))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(GrammarError::Schema(first_line(&e)));
        }
        Ok(Constraint {
            matcher,
            masked: Vec::new(),
        })
    }
}

/// llguidance's JSON options: flexible but bounded whitespace, JSON's own separators.
fn compile_options() -> Value {
    serde_json::json!({
        "whitespace_pattern": format!("[\\x20\\x0A\\x0D\\x09]{{1,{MAX_WHITESPACE}}}"),
    })
}

/// The first line of an engine message (later lines repeat the grammar).
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

/// The grammar state of one generation.
#[derive(Clone)]
pub struct Constraint {
    matcher: Matcher,
    /// The logits with forbidden tokens at minus infinity, reused between steps.
    masked: Vec<f32>,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("complete", &self.matcher.is_stopped())
            .finish()
    }
}

impl Constraint {
    /// `logits` with every token the grammar forbids next set to minus infinity (tokens
    /// past the vocabulary too). End-of-generation tokens pass only where the document
    /// may end.
    pub fn mask<'a>(&'a mut self, logits: &[f32]) -> Result<&'a [f32], GrammarError> {
        let allowed = self
            .matcher
            .compute_mask()
            .map_err(|e| GrammarError::Step(first_line(&e.to_string())))?;
        if allowed.is_zero() {
            return Err(GrammarError::Step(
                "no token can continue the document".into(),
            ));
        }
        self.masked.clear();
        self.masked.resize(logits.len(), f32::NEG_INFINITY);
        allowed.iter_set_entries(|i| {
            if let (Some(out), Some(&l)) = (self.masked.get_mut(i), logits.get(i)) {
                *out = l;
            }
        });
        Ok(&self.masked)
    }

    /// Advances the grammar over the sampled `token`.
    pub fn commit(&mut self, token: TokenId) -> Result<(), GrammarError> {
        self.matcher
            .consume_token(token)
            .map_err(|e| GrammarError::Step(first_line(&e.to_string())))
    }

    /// Whether the document is complete: no token may follow, so the generation ends.
    pub fn is_complete(&self) -> bool {
        self.matcher.is_stopped()
    }
}
