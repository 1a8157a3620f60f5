//! What a caller asks of the engine, checked before it reaches the compute thread.

use std::time::Duration;

use super::EngineError;
use crate::sample::SamplerOptions;
use crate::tokenizer::TokenId;

/// The most alternatives a caller may ask for per token (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// One generation request, tokenized.
#[derive(Debug, Clone)]
pub struct GenerateJob {
    /// The prompt's tokens.
    pub prompt: Vec<TokenId>,
    /// Sampling options, the seed included.
    pub sampling: SamplerOptions,
    /// Tokens to generate at most; `None`: until the end of generation or a full context
    /// with the shift off.
    pub num_predict: Option<usize>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Report each token's log-probability.
    pub logprobs: bool,
    /// Alternatives to report per token.
    pub top_logprobs: usize,
    /// Shift the context when it fills instead of ending with `Length`.
    pub shift: bool,
    /// Tokens the shift keeps; `None`: the engine's default.
    pub num_keep: Option<usize>,
    /// A JSON schema (JSON text) the output must validate against (Ollama's `format`);
    /// `None`: free text.
    pub json_schema: Option<String>,
    /// Report the whole sequence (prompt and generated tokens) when it ends, so a caller
    /// can continue from it (Ollama's `context`).
    pub return_context: bool,
}

impl GenerateJob {
    /// A greedy request for `prompt` with Ollama's other defaults.
    pub fn greedy(prompt: Vec<TokenId>, num_predict: Option<usize>) -> Self {
        Self {
            prompt,
            sampling: SamplerOptions {
                temperature: 0.0,
                repeat_penalty: 1.0,
                ..SamplerOptions::default()
            },
            num_predict,
            stop: Vec::new(),
            logprobs: false,
            top_logprobs: 0,
            shift: true,
            num_keep: None,
            json_schema: None,
            return_context: false,
        }
    }

    /// Refuses what cannot run: an empty prompt, one longer than the context, options
    /// out of range.
    pub(super) fn validate(&self, num_ctx: usize) -> Result<(), EngineError> {
        check_prompt(&self.prompt, num_ctx)?;
        self.sampling.validate()?;
        if self.top_logprobs > MAX_TOP_LOGPROBS {
            return Err(EngineError::BadOption {
                name: "top_logprobs",
                value: self.top_logprobs.to_string(),
                expected: "0 to 20",
            });
        }
        Ok(())
    }
}

/// Refuses an empty prompt or one longer than the context.
pub(super) fn check_prompt(prompt: &[TokenId], num_ctx: usize) -> Result<(), EngineError> {
    if prompt.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    if prompt.len() > num_ctx {
        return Err(EngineError::PromptTooLong {
            prompt: prompt.len(),
            num_ctx,
        });
    }
    Ok(())
}

/// The answer to an embedding request.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One vector per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens evaluated over all inputs.
    pub prompt_tokens: usize,
    /// Time the evaluation took.
    pub duration: Duration,
}
