//! `ollama-runner tokenize`: the token ids of a text, as JSON, from the model's own
//! tokenizer (the same one generation uses).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use gguf::GgufFile;

use crate::tokenizer::Tokenizer;

/// Arguments of `tokenize`.
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// The GGUF model file.
    #[arg(long)]
    pub model: PathBuf,
    /// The text to tokenize.
    #[arg(long)]
    pub text: String,
    /// Do not add BOS/EOS even where the model asks for them.
    #[arg(long)]
    pub no_special: bool,
    /// Match control tokens written in the text (`<|im_start|>`), as chat templates need.
    #[arg(long)]
    pub parse_special: bool,
}

/// Prints the token ids as a JSON array.
pub fn run(args: &TokenizeArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let file = GgufFile::open(&args.model)?;
    let tokenizer = Tokenizer::from_metadata(file.header().metadata())?;
    let ids = tokenizer.encode(&args.text, !args.no_special, args.parse_special);
    serde_json::to_writer(&mut *out, &ids)?;
    writeln!(out)?;
    Ok(())
}
