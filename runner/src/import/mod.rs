//! Importing a Hugging Face model directory (`config.json`, `*.safetensors`, a tokenizer)
//! into a GGUF file that we and llama.cpp both read: `ollama-runner convert`.
//!
//! The directory's `config.json` names the model class (`architectures[0]`, e.g.
//! `BertModel`); [`ARCHITECTURES`] maps each class we import to the code that writes its
//! metadata and renames its tensors with llama.cpp's converter's names
//! (`convert_hf_to_gguf.py` and gguf-py's `constants.py`/`tensor_mapping.py`): `bert`
//! (WordPiece vocabulary), `llama` (byte-level BPE, [`bpe`]) and `gemma3` (the text
//! model, SentencePiece's `tokenizer.model`, [`spm`]). A class not in the table, a
//! missing tokenizer, a tensor of a dtype we do not read, or a tensor the architecture
//! does not know are refused by name, before anything is written.
//!
//! Weights are memory-mapped ([`checkpoint`]) and converted one tensor at a time into the
//! requested type ([`OutType`]), with llama.cpp's choices of which tensors stay F32. The
//! file is written to a temporary name and renamed into place.
//!
//! The source can also be a GGUF file of F32, F16 or BF16 weights, which is quantized
//! with the same choices of types ([`gguf_source`]); a source that is already quantized
//! (a checkpoint with a `quantization_config` or 8-bit tensors, a GGUF with quantized
//! tensors) is refused, naming what is quantized.

mod bert;
mod bpe;
mod checkpoint;
mod gemma3;
mod gguf_source;
mod llama;
mod special;
mod spm;
mod tensors;
mod wordpiece;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use gguf::{GgufWriter, WriteError};
use serde::de::DeserializeOwned;
use thiserror::Error;

pub use checkpoint::Checkpoint;
pub use tensors::{OUT_TYPES, OutType};
pub use wordpiece::WordPieceVocab;

use tensors::Builder;

/// Why a directory cannot be imported.
#[derive(Debug, Error)]
pub enum ImportError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file the import needs is not in the directory.
    #[error("{dir} has no {what}")]
    MissingFile {
        /// The directory.
        dir: PathBuf,
        /// What is missing.
        what: &'static str,
    },
    /// A JSON file is malformed or lacks a field.
    #[error("{path}: {why}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// `config.json` names a model class we do not import.
    #[error("architecture '{0}' (config.json) cannot be imported; supported: {1}")]
    UnknownArchitecture(String, String),
    /// A hyper-parameter in `config.json` is missing or has a value we do not handle.
    #[error("config.json: '{key}' {why}")]
    Config {
        /// The key.
        key: String,
        /// What is wrong with it.
        why: String,
    },
    /// A safetensors file is malformed.
    #[error("{path}: {why}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("tensor '{0}' is missing from the safetensors files")]
    MissingTensor(String),
    /// A tensor of the checkpoint that the architecture does not know.
    #[error("tensor '{0}' is not part of the architecture as we know it; refusing to drop it")]
    UnexpectedTensor(String),
    /// A tensor's dtype is one we do not convert.
    #[error("tensor '{name}' has dtype {dtype}; the import reads F32, F16 and BF16")]
    UnsupportedDtype {
        /// The tensor.
        name: String,
        /// Its safetensors dtype.
        dtype: String,
    },
    /// A tensor has another shape than `config.json` implies.
    #[error("tensor '{name}' has shape {actual:?}, expected {expected:?}")]
    Shape {
        /// The tensor.
        name: String,
        /// Its shape (row-major).
        actual: Vec<usize>,
        /// The shape expected.
        expected: Vec<usize>,
    },
    /// The tokenizer files are unusable.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The checkpoint is quantized already (a `quantization_config`, or tensors stored
    /// in 8 bits or fewer): quantizing it again would compound the rounding, so it is
    /// refused; import the full-precision checkpoint instead.
    #[error(
        "the source is already quantized ({0}); quantizing it again would compound the \
         rounding: start from its F32, F16 or BF16 original"
    )]
    AlreadyQuantized(String),
    /// A GGUF given as the source is not a model file.
    #[error("{path}: not a model ({why})")]
    NotAModel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Quantizing a tensor failed.
    #[error("tensor '{name}': {source}")]
    Quant {
        /// The tensor.
        name: String,
        /// The quantizer's error.
        source: kernels::quant::QuantError,
    },
    /// The GGUF could not be written.
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    /// The GGUF could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// What an import wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// `general.architecture` of the file.
    pub architecture: String,
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of tensor data written.
    pub bytes: u64,
}

/// One importable model class: its `config.json` names and the code writing it.
struct Architecture {
    /// `architectures[0]` values of `config.json` that this entry imports.
    classes: &'static [&'static str],
    /// The `general.architecture` written.
    name: &'static str,
    /// Writes the metadata and tensors.
    write: fn(&HfModel, &mut Builder<'_>) -> Result<(), ImportError>,
}

/// The model classes we import, by `config.json`'s `architectures`.
const ARCHITECTURES: &[Architecture] = &[
    Architecture {
        classes: &["BertModel", "BertForMaskedLM"],
        name: "bert",
        write: bert::write,
    },
    Architecture {
        classes: &["LlamaForCausalLM", "LlamaModel", "MistralForCausalLM"],
        name: "llama",
        write: llama::write,
    },
    Architecture {
        classes: &["Gemma3ForCausalLM"],
        name: "gemma3",
        write: gemma3::write,
    },
];

/// A Hugging Face model directory: its path and `config.json`.
#[derive(Debug)]
pub struct HfModel {
    /// The directory.
    pub dir: PathBuf,
    /// `config.json`, parsed.
    pub config: serde_json::Value,
}

impl HfModel {
    /// `config.json`'s `key` as an unsigned integer.
    pub fn usize(&self, key: &str) -> Result<usize, ImportError> {
        self.config[key]
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| ImportError::Config {
                key: key.to_owned(),
                why: format!("is {}, expected an unsigned integer", self.config[key]),
            })
    }

    /// `config.json`'s `key` as a number.
    pub fn f64(&self, key: &str) -> Result<f64, ImportError> {
        self.config[key]
            .as_f64()
            .ok_or_else(|| ImportError::Config {
                key: key.to_owned(),
                why: format!("is {}, expected a number", self.config[key]),
            })
    }

    /// `config.json`'s `key` as a string, if present.
    pub fn str_opt(&self, key: &str) -> Option<&str> {
        self.config[key].as_str()
    }
}

/// Reads a text file, naming it in the error.
fn read_text(path: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and parses a JSON file.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ImportError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| ImportError::Json {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// Imports the model in `dir` into a GGUF at `out` with matrices in `out_type`;
/// `progress` is called after each tensor with its name, the count done and the total.
/// When `dir` is a GGUF file of F32, F16 or BF16 weights, it is quantized instead
/// ([`gguf_source`]).
pub fn convert(
    dir: &Path,
    out: &Path,
    out_type: OutType,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Imported, ImportError> {
    if dir.is_file() {
        return gguf_source::quantize_gguf(dir, out, out_type, progress);
    }
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(ImportError::MissingFile {
            dir: dir.to_path_buf(),
            what: "config.json",
        });
    }
    let model = HfModel {
        dir: dir.to_path_buf(),
        config: read_json(&config_path)?,
    };
    let class = model.config["architectures"][0]
        .as_str()
        .ok_or_else(|| ImportError::Config {
            key: "architectures".into(),
            why: "does not name a model class".into(),
        })?;
    let arch = ARCHITECTURES
        .iter()
        .find(|a| a.classes.contains(&class))
        .ok_or_else(|| {
            let known: Vec<&str> = ARCHITECTURES
                .iter()
                .flat_map(|a| a.classes)
                .copied()
                .collect();
            ImportError::UnknownArchitecture(class.to_owned(), known.join(", "))
        })?;
    if let Some(q) = model
        .config
        .get("quantization_config")
        .filter(|q| !q.is_null())
    {
        let method = q["quant_method"].as_str().unwrap_or("unknown method");
        return Err(ImportError::AlreadyQuantized(format!(
            "config.json has a quantization_config, {method}"
        )));
    }
    let checkpoint = Checkpoint::open(dir)?;
    if let Some((name, dtype)) = checkpoint.quantized_tensor() {
        return Err(ImportError::AlreadyQuantized(format!(
            "tensor '{name}' is stored as {dtype}"
        )));
    }
    let mut writer = GgufWriter::new();
    writer.set(gguf::keys::GENERAL_ARCHITECTURE, arch.name);
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    writer.set(gguf::keys::GENERAL_NAME, name.as_deref().unwrap_or("model"));
    let mut builder = Builder::new(&checkpoint, writer, out_type, progress);
    (arch.write)(&model, &mut builder)?;
    let (writer, tensors, bytes) = builder.finish()?;
    writer.write_file(out)?;
    Ok(Imported {
        architecture: arch.name.to_owned(),
        tensors,
        bytes,
    })
}

impl FromStr for OutType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let names: Vec<&str> = tensors::OUT_TYPES.iter().map(|(n, _)| *n).collect();
        tensors::OUT_TYPES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, t)| *t)
            .ok_or_else(|| format!("unknown type '{s}' ({})", names.join(", ")))
    }
}
