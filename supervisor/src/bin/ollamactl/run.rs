//! `run MODEL [PROMPT]`: one answer streamed to stdout, or, with no prompt on a
//! terminal, a chat as `ollama run` holds it: history, `"""` multi-line messages, slash
//! commands, and Ctrl-C to stop a reply without leaving.

use std::io::{IsTerminal as _, Read as _};

use anyhow::{Context as _, bail};
use ollama_proto::ollama::{ChatRequest, KeepAlive, LoadRequest, Message, Options};
use rustyline::error::ReadlineError;

use crate::client::Session;
use crate::format::emit;
use crate::options::{parse_keep_alive, set_parameter};

/// `ollamactl run`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The model.
    model: String,
    /// The prompt; without one, a chat on a terminal, or the prompt read from stdin.
    prompt: Vec<String>,
    /// Set a parameter for every request, as `/set parameter` does (repeatable).
    #[arg(short, long = "parameter", value_name = "NAME=VALUE")]
    parameter: Vec<String>,
    /// How long the model stays loaded afterwards: 5m, 1h, 0, -1 (forever).
    #[arg(long, value_name = "DUR", value_parser = parse_keep_alive, allow_hyphen_values = true)]
    keep_alive: Option<KeepAlive>,
}

/// One conversation: the settings it is held with and what was said.
struct Conversation {
    model: String,
    options: Options,
    keep_alive: Option<KeepAlive>,
    system: Option<String>,
    history: Vec<Message>,
}

impl Conversation {
    fn request(&self, prompt: &str) -> ChatRequest {
        let system = self.system.iter().map(|s| message("system", s));
        let messages = system
            .chain(self.history.iter().cloned())
            .chain([message("user", prompt)])
            .collect();
        ChatRequest {
            model: self.model.clone(),
            messages,
            options: Some(self.options.clone()),
            keep_alive: self.keep_alive,
            ..ChatRequest::default()
        }
    }
}

fn message(role: &str, content: &str) -> Message {
    Message {
        role: role.into(),
        content: content.into(),
        ..Message::default()
    }
}

/// One-shot, chat, or prompt from stdin, as the arguments and stdin call for.
pub async fn run(session: &Session, args: RunArgs) -> anyhow::Result<()> {
    let mut options = Options::default();
    for assignment in &args.parameter {
        let (name, value) = assignment
            .split_once('=')
            .with_context(|| format!("--parameter {assignment:?}: write it NAME=VALUE"))?;
        set_parameter(&mut options, name, value)?;
    }
    let mut conversation = Conversation {
        model: args.model,
        options,
        keep_alive: args.keep_alive,
        system: None,
        history: Vec::new(),
    };
    let prompt = args.prompt.join(" ");
    if !prompt.is_empty() {
        return one_shot(session, &conversation, &prompt).await;
    }
    if std::io::stdin().is_terminal() {
        return chat(session, &mut conversation).await;
    }
    let mut prompt = String::new();
    std::io::stdin()
        .read_to_string(&mut prompt)
        .context("cannot read the prompt from stdin")?;
    if prompt.trim().is_empty() {
        bail!("no prompt: give one after the model, or on stdin");
    }
    one_shot(session, &conversation, &prompt).await
}

async fn one_shot(
    session: &Session,
    conversation: &Conversation,
    prompt: &str,
) -> anyhow::Result<()> {
    let request = conversation.request(prompt);
    reply(session, request).await?;
    Ok(())
}

/// Streams the answer to stdout as it comes, ending it with a newline; returns its text.
async fn reply(session: &Session, request: ChatRequest) -> anyhow::Result<String> {
    let model = request.model.clone();
    let stream = session.client.clone().chat(request).await;
    let mut stream = stream
        .map_err(|s| session.model_error(s, &model))?
        .into_inner();
    let mut text = String::new();
    while let Some(piece) = stream
        .message()
        .await
        .map_err(|s| session.model_error(s, &model))?
    {
        if let Some(message) = piece.message {
            emit(&message.content)?;
            text.push_str(&message.content);
        }
        if piece.done {
            break;
        }
    }
    if !text.ends_with('\n') {
        emit("\n")?;
    }
    Ok(text)
}

const HELP: &str = "Available Commands:
  /set parameter NAME VALUE  Set a parameter (temperature, num_ctx, top_k, stop, ...)
  /set system TEXT           Set the system message
  /show [info|modelfile|parameters|template|system|license]
                             Show model information
  /clear                     Clear the session context
  /bye                       Exit
  /?, /help                  Help for a command

Use \"\"\" to begin a multi-line message.
Ctrl-C stops a reply; Ctrl-D or /bye leaves.
";

async fn chat(session: &Session, conversation: &mut Conversation) -> anyhow::Result<()> {
    // Loading first makes an unknown model fail before the first prompt, as Ollama does.
    let load = LoadRequest {
        model: conversation.model.clone(),
        options: Some(conversation.options.clone()),
        keep_alive: conversation.keep_alive,
    };
    let loaded = session.client.clone().load(load).await;
    loaded.map_err(|s| session.model_error(s, &conversation.model))?;
    let mut editor = rustyline::DefaultEditor::new().context("cannot set up the terminal")?;
    loop {
        let input = match read_message(&mut editor)? {
            Input::Message(text) => text,
            Input::Interrupted => {
                emit("Use Ctrl + d or /bye to exit.\n")?;
                continue;
            }
            Input::End => return Ok(()),
        };
        let text = input.trim();
        if text.is_empty() {
            continue;
        }
        if text.starts_with('/') && !input.contains('\n') {
            match command(session, conversation, text).await {
                Ok(true) => continue,
                Ok(false) => return Ok(()),
                Err(error) => {
                    eprintln!("ollamactl: {error:#}");
                    continue;
                }
            }
        }
        let request = conversation.request(&input);
        let answer = tokio::select! {
            answer = reply(session, request) => answer,
            _ = tokio::signal::ctrl_c() => {
                // Dropping the call cancels the generation; the question is forgotten too,
                // so the history stays a sequence of answered turns.
                emit("\n")?;
                continue;
            }
        };
        match answer {
            Ok(answer) => {
                conversation.history.push(message("user", &input));
                conversation.history.push(message("assistant", &answer));
                emit("\n")?;
            }
            Err(error) => eprintln!("ollamactl: {error:#}"),
        }
    }
}

/// Runs a slash command; false when the chat ends.
async fn command(
    session: &Session,
    conversation: &mut Conversation,
    text: &str,
) -> anyhow::Result<bool> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["/bye"] | ["/exit"] => return Ok(false),
        ["/?"] | ["/help"] | ["/?", ..] | ["/help", ..] => emit(HELP)?,
        ["/clear"] => {
            conversation.history.clear();
            emit("Cleared session context\n")?;
        }
        ["/set", "parameter", name, value @ ..] if !value.is_empty() => {
            let value = value.join(" ");
            set_parameter(&mut conversation.options, name, &value)?;
            emit(&format!("Set parameter '{name}' to '{value}'\n"))?;
        }
        ["/set", "system", rest @ ..] if !rest.is_empty() => {
            conversation.system = Some(rest.join(" "));
            emit("Set system message.\n")?;
        }
        ["/show", rest @ ..] => {
            let show = crate::models::fetch(session, &conversation.model).await?;
            let text = match rest {
                [] | ["info"] => crate::models::summary(&show),
                ["modelfile"] => show.modelfile,
                ["parameters"] => show.parameters,
                ["template"] => show.template,
                ["system"] => show.system,
                ["license"] => show.license,
                _ => bail!("unknown /show {}: see /?", rest.join(" ")),
            };
            emit(&text)?;
            if !text.ends_with('\n') {
                emit("\n")?;
            }
        }
        _ => emit(&format!("Unknown command '{text}'. Type /? for help\n"))?,
    }
    Ok(true)
}

/// What the user typed at the prompt.
enum Input {
    /// A message or a command (several lines when written between `"""`).
    Message(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// Ctrl-D.
    End,
}

fn read_message(editor: &mut rustyline::DefaultEditor) -> anyhow::Result<Input> {
    let mut multiline = Multiline::default();
    loop {
        let prompt = if multiline.is_open() { "... " } else { ">>> " };
        // Reading blocks this worker thread; the connection's tasks run on the other.
        let line = tokio::task::block_in_place(|| editor.readline(prompt));
        match line {
            Ok(line) => {
                if let Some(message) = multiline.feed(&line) {
                    let _ = editor.add_history_entry(message.as_str());
                    return Ok(Input::Message(message));
                }
            }
            Err(ReadlineError::Interrupted) => return Ok(Input::Interrupted),
            Err(ReadlineError::Eof) => return Ok(Input::End),
            Err(error) => return Err(error).context("cannot read from the terminal"),
        }
    }
}

/// Ollama's multi-line messages: a line starting with `"""` opens one, a line ending with
/// `"""` closes it; the lines between are joined with newlines.
#[derive(Debug, Default)]
pub struct Multiline {
    lines: Option<Vec<String>>,
}

impl Multiline {
    /// Whether a `"""` message is open.
    pub fn is_open(&self) -> bool {
        self.lines.is_some()
    }

    /// Takes one line; returns the message when it is complete.
    pub fn feed(&mut self, line: &str) -> Option<String> {
        const QUOTES: &str = "\"\"\"";
        match self.lines.as_mut() {
            None => match line.strip_prefix(QUOTES) {
                Some(rest) if rest.len() >= 3 && rest.ends_with(QUOTES) => {
                    Some(rest[..rest.len() - 3].to_string())
                }
                Some(rest) => {
                    self.lines = Some(vec![rest.to_string()]);
                    None
                }
                None => Some(line.to_string()),
            },
            Some(lines) => match line.strip_suffix(QUOTES) {
                Some(last) => {
                    lines.push(last.to_string());
                    let text = lines.join("\n");
                    self.lines = None;
                    Some(text.trim_start_matches('\n').to_string())
                }
                None => {
                    lines.push(line.to_string());
                    None
                }
            },
        }
    }
}
