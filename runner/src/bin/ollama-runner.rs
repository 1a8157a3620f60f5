//! `ollama-runner`: the runner binary. Each subcommand lives in a module of the `runner`
//! library; this file only parses the command line and reports errors.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The system allocator, counted: the runner reports the heap it holds (`Status`'s
/// `allocated_bytes`) next to its memory estimate.
#[global_allocator]
static ALLOCATOR: kernels::alloc::CountingAllocator = kernels::alloc::CountingAllocator;

/// One model runner process, and tools to look at model files.
#[derive(Debug, Parser)]
#[command(name = "ollama-runner", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one model to the supervisor over gRPC on a Unix socket.
    Serve(runner::tools::serve::ServeArgs),
    /// Print what a GGUF model file holds: architecture, sizes, tokenizer, tensor types.
    Inspect(runner::inspect::InspectArgs),
    /// Print the token ids of a text as JSON, from the model's own tokenizer.
    Tokenize(runner::tools::tokenize::TokenizeArgs),
    /// Print the first values of a tensor, dequantized, as a JSON array.
    DumpTensor(runner::tools::dump_tensor::DumpTensorArgs),
    /// Continue a prompt with the model (greedy by default) and print the text.
    Generate(runner::tools::generate::GenerateArgs),
    /// Evaluate a text file in windows and print its perplexity as llama.cpp does.
    Perplexity(runner::tools::perplexity::PerplexityArgs),
    /// Measure prompt and generation speed (and memory) at a depth of context.
    Bench(runner::tools::bench::BenchArgs),
    /// Print the memory a model will take with a configuration, without loading it.
    Estimate(runner::tools::estimate::EstimateArgs),
    /// Write a copy of a model with every tensor in F32, for perplexity comparisons that
    /// 8-bit activation rounding would blur.
    Dequantize(runner::tools::dequantize::DequantizeArgs),
    /// List the GPUs a model can run on, with the index `OLLAMA_DEVICE` takes.
    Devices(runner::tools::devices::DevicesArgs),
    /// Import a Hugging Face model directory (config.json, safetensors, tokenizer) into a
    /// GGUF file.
    Convert(runner::tools::convert::ConvertArgs),
}

fn main() -> ExitCode {
    init_logging();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `OLLAMA_DEBUG=1` turns on debug, `RUST_LOG` overrides both.
fn init_logging() {
    let debug = std::env::var("OLLAMA_DEBUG").ok();
    plan::logging::init(plan::logging::level_from_ollama_debug(debug.as_deref()));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => runner::tools::serve::run(&args)?,
        Command::Inspect(args) => runner::inspect::run(&args, &mut std::io::stdout().lock())?,
        Command::Tokenize(args) => {
            runner::tools::tokenize::run(&args, &mut std::io::stdout().lock())?
        }
        Command::DumpTensor(args) => {
            runner::tools::dump_tensor::run(&args, &mut std::io::stdout().lock())?
        }
        Command::Generate(args) => {
            runner::tools::generate::run(&args, &mut std::io::stdout().lock())?
        }
        Command::Perplexity(args) => {
            runner::tools::perplexity::run(&args, &mut std::io::stdout().lock())?
        }
        Command::Bench(args) => runner::tools::bench::run(&args, &mut std::io::stdout().lock())?,
        Command::Estimate(args) => {
            runner::tools::estimate::run(&args, &mut std::io::stdout().lock())?
        }
        Command::Dequantize(args) => runner::tools::dequantize::run(&args)?,
        Command::Convert(args) => runner::tools::convert::run(&args)?,
        Command::Devices(args) => {
            runner::tools::devices::run(&args, &mut std::io::stdout().lock())?
        }
    }
    Ok(())
}
