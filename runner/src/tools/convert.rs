//! `ollama-runner convert DIR OUT [--type TYPE]`: imports a Hugging Face model
//! directory (`config.json`, safetensors, tokenizer) into a GGUF file that we and
//! llama.cpp read, or quantizes a GGUF file of F32, F16 or BF16 weights given in place of
//! the directory (see [`crate::import`]). Progress goes to stderr: a running line on a
//! terminal, else a line at every tenth of the tensors.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::import::{OutType, convert};

/// Arguments of `convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The Hugging Face model directory, or a GGUF file of F32, F16 or BF16 weights.
    pub dir: PathBuf,
    /// The GGUF file to write (replaced atomically if it exists).
    pub out: PathBuf,
    /// The type of the weight matrices: f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_s,
    /// q4_k_m, q5_k_s, q5_k_m or q6_k (mixed by tensor role as llama-quantize mixes them).
    #[arg(long = "type", default_value = "f16", value_parser = str::parse::<OutType>)]
    pub out_type: OutType,
}

/// Converts and prints a line saying what was written.
pub fn run(args: &ConvertArgs) -> anyhow::Result<()> {
    let tty = std::io::stderr().is_terminal();
    let mut last_tenth = 0;
    let mut progress = |name: &str, done: usize, total: usize| {
        let tenth = done * 10 / total.max(1);
        if tty {
            eprint!("\rconvert: {done}/{total} tensors ({name})\x1b[K");
        } else if tenth > last_tenth {
            eprintln!("convert: {done}/{total} tensors");
        }
        last_tenth = tenth;
    };
    let done = convert(&args.dir, &args.out, args.out_type, &mut progress)
        .with_context(|| format!("converting {}", args.dir.display()))?;
    if tty {
        eprintln!();
    }
    println!(
        "wrote {}: {} ({}), {} tensors, {:.1} MiB of tensor data",
        args.out.display(),
        done.architecture,
        args.out_type,
        done.tensors,
        done.bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
