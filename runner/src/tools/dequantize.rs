//! `ollama-runner dequantize`: a copy of a GGUF model with every tensor in F32.
//!
//! A measurement aid. A quantized model's products round their activations to 8 bits
//! (Q8_0, Q8_1 or Q8_K, as llama.cpp does), and that rounding makes a perplexity figure
//! chaotic: a change in the last bit of one sum flips roundings that grow through the
//! layers, and the figure moves by a few tenths of a percent (see `docs/PERFORMANCE.md`).
//! The same weights in F32 are multiplied in f32, with no rounding to amplify such
//! changes, so two attention paths or two cache types can be compared to a few
//! thousandths of a percent. llama.cpp reads the copy as well (`llama-quantize
//! --allow-requantize MODEL OUT F32` writes the same values).
//!
//! `--nudge K` multiplies every value of every matrix by `1 + K·ε` (ε the f32 machine
//! epsilon): a change in the last bit of the weights that leaves the model the same in
//! every way that matters. Copies with different nudges draw different samples of the
//! noise that any remaining rounding (a 4-bit K/V cache) adds to a figure, so that noise
//! can be measured and averaged out.

use std::borrow::Cow;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use gguf::{GgufFile, GgufWriter, keys};
use kernels::GgmlType;
use kernels::quant::dequantize_row;

/// `general.file_type` of a file whose tensors are all F32 (`LLAMA_FTYPE_ALL_F32`).
const FILE_TYPE_ALL_F32: u32 = 0;

/// Arguments of `dequantize`.
#[derive(Debug, Args)]
pub struct DequantizeArgs {
    /// The GGUF model file to copy.
    #[arg(long)]
    pub model: PathBuf,
    /// Where to write the copy (replaced atomically if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// Multiply every matrix value by `1 + K·ε`: a last-bit change, for sampling
    /// rounding noise (0 copies the values exactly).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub nudge: i32,
}

/// What [`run`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Dequantized {
    /// Tensors written.
    pub tensors: usize,
    /// Tensors that were not F32 in the source.
    pub converted: usize,
    /// Bytes of tensor data written.
    pub bytes: u64,
}

/// Writes the copy and prints a line saying what it holds.
pub fn run(args: &DequantizeArgs) -> anyhow::Result<()> {
    let done = dequantize(args)?;
    println!(
        "wrote {}: {} tensors in F32 ({} converted), {:.1} MiB of tensor data",
        args.out.display(),
        done.tensors,
        done.converted,
        done.bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

/// Writes `args.out`: `args.model`'s metadata (its file type set to all-F32) and every
/// tensor dequantized to F32, matrices nudged as `args.nudge` says.
pub fn dequantize(args: &DequantizeArgs) -> anyhow::Result<Dequantized> {
    let same = |a: &PathBuf, b: &PathBuf| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(&args.out, &args.model) {
        bail!("--out must name a new file, not the model being read");
    }
    let file = GgufFile::open(&args.model)?;
    let factor = 1.0 + args.nudge as f32 * f32::EPSILON;
    let mut writer = GgufWriter::new();
    *writer.metadata_mut() = file.metadata().clone();
    writer.set(keys::GENERAL_FILE_TYPE, FILE_TYPE_ALL_F32);
    let mut done = Dequantized {
        tensors: 0,
        converted: 0,
        bytes: 0,
    };
    for tensor in file.tensors() {
        let name = tensor.name();
        let ty = tensor.ggml_type();
        let n = usize::try_from(tensor.n_elements())
            .with_context(|| format!("tensor {name} is too large for this machine"))?;
        let data = file.tensor_data(tensor)?;
        let mut values = vec![0f32; n];
        dequantize_row(ty, data, &mut values)
            .with_context(|| format!("cannot dequantize tensor {name} of type {ty}"))?;
        if tensor.dims().len() >= 2 && args.nudge != 0 {
            values.iter_mut().for_each(|v| *v *= factor);
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        done.tensors += 1;
        done.converted += usize::from(ty != GgmlType::F32);
        done.bytes += bytes.len() as u64;
        writer.add_tensor(name, tensor.dims(), GgmlType::F32, Cow::Owned(bytes))?;
    }
    writer
        .write_file(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(done)
}
