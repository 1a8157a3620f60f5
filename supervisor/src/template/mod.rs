//! Chat templates: a model's Jinja template (GGUF `tokenizer.chat_template`) turns
//! messages into the prompt text, as Hugging Face transformers' `apply_chat_template` and
//! llama.cpp's `--jinja` do.
//!
//! The template is compiled once, when the model is loaded, so a broken template is an
//! error then and not on every request. Rendering offers what HF templates expect (see
//! `environment.rs`): `messages`, `tools`, `add_generation_prompt`, `bos_token`, `eos_token`,
//! `raise_exception`, `strftime_now`, Python string methods and a `json.dumps`-like
//! `tojson`.
//!
//! Models from a models directory that Ollama wrote carry templates in Go's
//! `text/template` syntax instead (see `go/`). [`ChatTemplate`] tells the two apart by
//! their text ([`go::looks_like_go`]) and renders either, so the handlers need not know.
//! When a Go template cannot be parsed or rendered and the GGUF has its own Jinja
//! template, that one is used and a warning logged ([`ChatTemplate::with_fallback`]).
//!
//! The rendered text goes to the runner, which tokenizes it with special-token parsing
//! and adds BOS itself when the model's tokenizer asks for it. A template that also
//! writes `{{ bos_token }}` (Gemma's does) would then give two BOS tokens, so
//! [`ChatTemplate::render`] drops one leading BOS text when the model adds BOS, as
//! llama.cpp does.

mod environment;
pub mod go;
mod tojson;

#[cfg(test)]
mod tests;

use gguf::{GgufFile, Metadata, MetadataError, keys};
use minijinja::Environment;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The name the compiled template is kept under (it shows in error locations).
const TEMPLATE_NAME: &str = "chat_template";

/// Why a chat template could not be loaded or rendered.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    /// The template is not valid Jinja.
    #[error("the chat template is not valid Jinja: {0}")]
    Syntax(String),
    /// The template called `raise_exception`: it refuses these messages.
    #[error("the chat template rejected the messages: {0}")]
    Raised(String),
    /// Rendering failed for another reason (an unknown filter, a type error, ...).
    #[error("the chat template failed to render: {0}")]
    Render(String),
    /// The model's tokenizer metadata needed for the template is missing or unusable.
    #[error("cannot read the chat template's special tokens: {0}")]
    Metadata(String),
    /// A template in Go's syntax could not be parsed or run (the error names the line).
    #[error("the Go template failed: {0}")]
    Go(#[from] go::GoTemplateError),
}

impl From<MetadataError> for TemplateError {
    fn from(e: MetadataError) -> Self {
        TemplateError::Metadata(e.to_string())
    }
}

/// JSON as the client sent it, with its objects' keys in their order (as Python's `json`
/// gives them to transformers), so `tojson` in a template prints tool calls and tool
/// schemas as the model was trained on them. `serde_json::Value` would sort the keys.
pub type OrderedJson = minijinja::Value;

/// One chat message, in the shape of Ollama's API (`{"role": ..., "content": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`; templates decide what they accept.
    pub role: String,
    /// The text of the message.
    #[serde(default)]
    pub content: String,
    /// The calls an assistant message made (`[{"function": {"name", "arguments"}}]`),
    /// passed to the template as the client sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<OrderedJson>,
    /// The tool a `tool` message answers for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            tool_calls: None,
            tool_name: None,
        }
    }
}

/// What a template needs to know about the model's tokenizer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// The text of the BOS token (`bos_token` in templates), if the model has one.
    pub bos: Option<String>,
    /// The text of the EOS token (`eos_token` in templates), if the model has one.
    pub eos: Option<String>,
    /// Whether the runner's tokenizer puts BOS before the prompt by itself.
    pub adds_bos: bool,
}

impl SpecialTokens {
    /// Reads the BOS/EOS texts (`tokenizer.ggml.tokens` at `tokenizer.ggml.bos_token_id`
    /// and `eos_token_id`) and whether the tokenizer adds BOS.
    pub fn from_metadata(md: &Metadata) -> Result<Self, TemplateError> {
        let token = |which: &str, id: Option<u32>| -> Result<Option<String>, TemplateError> {
            let Some(id) = id else { return Ok(None) };
            let tokens = md.tokens()?;
            tokens.get(id as usize).cloned().map(Some).ok_or_else(|| {
                TemplateError::Metadata(format!(
                    "{which} token id {id} is outside the vocabulary of {} tokens",
                    tokens.len()
                ))
            })
        };
        Ok(Self {
            bos: token("bos", md.bos_token_id()?)?,
            eos: token("eos", md.eos_token_id()?)?,
            adds_bos: adds_bos(md)?,
        })
    }
}

/// Whether the runner's tokenizer adds BOS: `tokenizer.ggml.add_bos_token` when present,
/// else true for SentencePiece (`llama`) and false for byte-level BPE (`gpt2`). This
/// mirrors `runner::tokenizer::Tokenizer::new`, which keeps the rule private.
fn adds_bos(md: &Metadata) -> Result<bool, MetadataError> {
    if let Some(flag) = md.get_opt::<bool>(keys::TOKENIZER_ADD_BOS)? {
        return Ok(flag);
    }
    Ok(md.get_opt::<&str>(keys::TOKENIZER_MODEL)? == Some("llama"))
}

/// A compiled chat template with the model's special tokens.
pub struct ChatTemplate {
    engine: Engine,
    tokens: SpecialTokens,
    /// The GGUF's own Jinja template, tried when a Go template fails to render.
    fallback: Option<Box<ChatTemplate>>,
    /// The text compiled, kept for what is read from it rather than rendered.
    source: String,
}

/// The two template languages.
enum Engine {
    /// Hugging Face's: Jinja, compiled by minijinja.
    Jinja(Environment<'static>),
    /// Ollama's: Go's `text/template`.
    Go(go::GoTemplate),
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("go", &self.is_go())
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source` (a template a user gave: Modelfile `TEMPLATE`, API `template`)
    /// for a model whose BOS/EOS texts are `bos`/`eos` and whose tokenizer adds BOS when
    /// `adds_bos`.
    pub fn new(
        source: &str,
        bos: Option<&str>,
        eos: Option<&str>,
        adds_bos: bool,
    ) -> Result<Self, TemplateError> {
        Self::with_tokens(
            source,
            SpecialTokens {
                bos: bos.map(str::to_owned),
                eos: eos.map(str::to_owned),
                adds_bos,
            },
        )
    }

    /// Compiles `source` for a model described by `tokens`: as a Go template when it is
    /// written in Go's syntax, else as Jinja.
    pub fn with_tokens(source: &str, tokens: SpecialTokens) -> Result<Self, TemplateError> {
        let engine = if go::looks_like_go(source) {
            Engine::Go(go::GoTemplate::parse(source)?)
        } else {
            let mut env = environment::new();
            env.add_template_owned(TEMPLATE_NAME, source.to_owned())
                .map_err(|e| TemplateError::Syntax(describe(&e)))?;
            Engine::Jinja(env)
        };
        Ok(Self {
            engine,
            tokens,
            fallback: None,
            source: source.to_owned(),
        })
    }

    /// A model's stored template (`source`, from its template layer) with the GGUF's
    /// own template (`from_file`) behind it. A Go template that does not parse gives way
    /// to the GGUF's, with a warning; the second value then says why, for `/api/show`.
    /// One that parses keeps the GGUF's as its fallback at render time.
    pub fn with_fallback(
        model: &str,
        source: &str,
        from_file: Option<ChatTemplate>,
    ) -> Result<(Self, Option<String>), TemplateError> {
        let tokens = from_file
            .as_ref()
            .map(|t| t.tokens.clone())
            .unwrap_or_default();
        match (Self::with_tokens(source, tokens), from_file) {
            (Ok(mut template), from_file) => {
                if template.is_go() {
                    template.fallback = from_file.filter(|f| !f.is_go()).map(Box::new);
                }
                Ok((template, None))
            }
            (Err(TemplateError::Go(e)), Some(from_file)) if !from_file.is_go() => {
                let note = fallback_note(&e);
                tracing::warn!(model, "{note}");
                Ok((from_file, Some(note)))
            }
            (Err(e), _) => Err(e),
        }
    }

    /// The prompt for filling in between `prompt` and `suffix` (`/api/generate` with a
    /// `suffix`) when this is a Go template that takes one (`.Suffix`), as Ollama renders
    /// it; `None` for any other template.
    pub fn render_insert(
        &self,
        prompt: &str,
        suffix: &str,
    ) -> Option<Result<String, TemplateError>> {
        match &self.engine {
            Engine::Go(template) => template.render_insert(prompt, suffix).map(|r| {
                r.map(|text| self.strip_bos(text))
                    .map_err(TemplateError::from)
            }),
            Engine::Jinja(_) => None,
        }
    }

    /// Whether this is a template in Go's syntax (Ollama's), not Jinja.
    pub fn is_go(&self) -> bool {
        matches!(self.engine, Engine::Go(_))
    }

    /// The model's own template (`tokenizer.chat_template`), `None` when it has none.
    pub fn from_gguf(file: &GgufFile) -> Result<Option<Self>, TemplateError> {
        Self::from_metadata(file.metadata())
    }

    /// As [`ChatTemplate::from_gguf`], from the metadata alone.
    pub fn from_metadata(md: &Metadata) -> Result<Option<Self>, TemplateError> {
        let Some(source) = md.chat_template()? else {
            return Ok(None);
        };
        Self::with_tokens(source, SpecialTokens::from_metadata(md)?).map(Some)
    }

    /// The model's special tokens as the template sees them.
    pub fn tokens(&self) -> &SpecialTokens {
        &self.tokens
    }

    /// The template's text, as given: what it teaches the model is read from it too (the
    /// syntax of its tool calls, `toolcall::Format::from_template`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages` into prompt text. With `add_generation_prompt` the template
    /// opens the assistant's turn (the usual case before generating).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// Renders `messages` with `tools` (JSON schema function definitions, as the client
    /// sent them) in the context; without tools the template sees `tools` as `none`, as
    /// transformers passes it.
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&OrderedJson>,
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let text = match &self.engine {
            Engine::Jinja(env) => self.render_jinja(env, messages, tools, add_generation_prompt)?,
            Engine::Go(template) => match (template.render(messages, tools), &self.fallback) {
                (Ok(text), _) => text,
                (Err(e), Some(fallback)) => {
                    tracing::warn!(
                        error = %e,
                        "the Go template failed; using the GGUF's own Jinja chat template"
                    );
                    return fallback.render_with_tools(messages, tools, add_generation_prompt);
                }
                (Err(e), None) => return Err(e.into()),
            },
        };
        Ok(self.strip_bos(text))
    }

    fn render_jinja(
        &self,
        env: &Environment<'static>,
        messages: &[Message],
        tools: Option<&OrderedJson>,
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let template = env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::Render(describe(&e)))?;
        let bos = self.tokens.bos.as_deref().unwrap_or("");
        let eos = self.tokens.eos.as_deref().unwrap_or("");
        let ctx = minijinja::context! {
            messages => environment::messages_value(messages),
            tools => tools.cloned(),
            add_generation_prompt => add_generation_prompt,
            bos_token => bos,
            eos_token => eos,
        };
        template
            .render(ctx)
            .map_err(|e| match environment::raised(&e) {
                Some(message) => TemplateError::Raised(message.to_owned()),
                None => TemplateError::Render(describe(&e)),
            })
    }

    /// Drops one leading BOS text when the runner will add BOS itself.
    fn strip_bos(&self, text: String) -> String {
        match self.tokens.bos.as_deref() {
            Some(bos) if self.tokens.adds_bos && !bos.is_empty() => match text.strip_prefix(bos) {
                Some(rest) => rest.to_owned(),
                None => text,
            },
            _ => text,
        }
    }
}

/// What is said (logged, and shown by `/api/show`) when a model's Go template gives way
/// to its GGUF's Jinja template.
pub fn fallback_note(error: &go::GoTemplateError) -> String {
    format!(
        "the Go template cannot be rendered ({error}); the GGUF's own Jinja chat template is \
         used instead"
    )
}

/// A minijinja error as one line: the message with its location, then its causes.
fn describe(e: &minijinja::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
