//! `ollama-runner inspect`: what a GGUF model file holds, as a table for people or one
//! JSON object for scripts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use gguf::{GgufError, GgufFile, MetadataError, file_type_name, keys};
use serde::Serialize;

/// Arguments of `ollama-runner inspect`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// The GGUF file to read.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Why inspection failed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The file is missing, unreadable or not a valid GGUF file.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// Writing the report failed.
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
    /// Encoding the JSON failed.
    #[error("cannot encode the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// What a GGUF file holds. Fields whose key is absent are `None`; a key with an
/// unexpected type is also `None`, and its error is listed in `warnings`.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The file inspected.
    pub path: PathBuf,
    /// Its size in bytes.
    pub file_size: u64,
    /// GGUF format version.
    pub gguf_version: u32,
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// Sum of the element counts of all tensors.
    pub parameter_count: u64,
    /// `general.file_type` as llama.cpp names it (`Q4_K_M`), or `id N` when unnamed.
    pub file_type: Option<String>,
    /// `{arch}.context_length`.
    pub context_length: Option<u32>,
    /// `{arch}.block_count`: layers.
    pub block_count: Option<u32>,
    /// `{arch}.embedding_length`.
    pub embedding_length: Option<u32>,
    /// `{arch}.feed_forward_length`.
    pub feed_forward_length: Option<u32>,
    /// `{arch}.attention.head_count`.
    pub head_count: Option<u32>,
    /// `{arch}.attention.head_count_kv` (the head count when absent).
    pub head_count_kv: Option<u32>,
    /// Size of a key head (`{arch}.attention.key_length`, or embedding / heads).
    pub head_size: Option<u32>,
    /// `{arch}.rope.freq_base` (llama.cpp's default when absent).
    pub rope_freq_base: Option<f32>,
    /// `{arch}.attention.sliding_window`.
    pub sliding_window: Option<u32>,
    /// `tokenizer.ggml.model`: `gpt2` (BPE) or `llama` (SentencePiece), ...
    pub tokenizer_model: Option<String>,
    /// `tokenizer.ggml.pre`.
    pub tokenizer_pre: Option<String>,
    /// Number of tokens in `tokenizer.ggml.tokens` (else `{arch}.vocab_size`).
    pub vocab_size: Option<u64>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_token_id: Option<u32>,
    /// Whether `tokenizer.chat_template` is present.
    pub has_chat_template: bool,
    /// Number of metadata pairs.
    pub metadata_count: usize,
    /// Number of tensors.
    pub tensor_count: usize,
    /// Bytes of tensor data.
    pub tensor_data_bytes: u64,
    /// Tensor count by GGML type name (`q4_K`, `f32`, ...).
    pub tensor_types: BTreeMap<String, usize>,
    /// Keys that are present but could not be read as expected.
    pub warnings: Vec<String>,
}

/// Opens `path` and describes it.
pub fn inspect(path: &Path) -> Result<Inspection, GgufError> {
    let file = GgufFile::open(path)?;
    Ok(describe(&file, path))
}

/// Runs the subcommand: inspects `args.model` and writes the report to `out`.
pub fn run(args: &InspectArgs, out: &mut impl Write) -> Result<(), InspectError> {
    let inspection = inspect(&args.model)?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &inspection)?;
        writeln!(out)?;
    } else {
        out.write_all(inspection.to_table().as_bytes())?;
    }
    Ok(())
}

/// Collects values, turning "missing" into `None` and other errors into warnings.
struct Reader {
    warnings: Vec<String>,
}

impl Reader {
    fn get<T>(&mut self, result: Result<T, MetadataError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(MetadataError::Missing(_)) => None,
            Err(other) => {
                self.warnings.push(other.to_string());
                None
            }
        }
    }
}

fn describe(file: &GgufFile, path: &Path) -> Inspection {
    let m = file.metadata();
    let mut r = Reader {
        warnings: Vec::new(),
    };
    let mut tensor_types = BTreeMap::new();
    for tensor in file.tensors() {
        *tensor_types
            .entry(tensor.ggml_type().name().to_owned())
            .or_insert(0) += 1;
    }
    let file_type = r
        .get(m.file_type())
        .flatten()
        .map(|id| match file_type_name(id) {
            Some(name) => name.to_owned(),
            None => format!("id {id}"),
        });
    let vocab_size = match r.get(m.tokens()) {
        Some(tokens) => Some(tokens.len() as u64),
        None => r.get(m.arch_get::<u64>(keys::VOCAB_SIZE)),
    };
    // Without an architecture the `{arch}.*` helpers report the architecture key as
    // missing, which reads as `None`.
    let architecture = r.get(m.architecture()).map(str::to_owned);
    Inspection {
        path: path.to_path_buf(),
        file_size: file.len(),
        gguf_version: file.version(),
        name: r.get(m.get_str(keys::GENERAL_NAME)).map(str::to_owned),
        parameter_count: file.parameter_count(),
        file_type,
        context_length: r.get(m.context_length()),
        block_count: r.get(m.block_count()),
        embedding_length: r.get(m.embedding_length()),
        feed_forward_length: r.get(m.feed_forward_length()),
        head_count: r.get(m.head_count()),
        head_count_kv: r.get(m.head_count_kv()),
        head_size: r.get(m.key_length()),
        rope_freq_base: r.get(m.rope_freq_base()),
        sliding_window: r.get(m.sliding_window()).flatten(),
        architecture,
        tokenizer_model: r.get(m.tokenizer_model()).map(str::to_owned),
        tokenizer_pre: r.get(m.tokenizer_pre()).flatten().map(str::to_owned),
        vocab_size,
        bos_token_id: r.get(m.bos_token_id()).flatten(),
        eos_token_id: r.get(m.eos_token_id()).flatten(),
        has_chat_template: m.contains(keys::TOKENIZER_CHAT_TEMPLATE),
        metadata_count: m.len(),
        tensor_count: file.tensors().len(),
        tensor_data_bytes: file.tensors().iter().map(|t| t.byte_len()).sum(),
        tensor_types,
        warnings: r.warnings,
    }
}

impl Inspection {
    /// The report as an aligned two-column table.
    pub fn to_table(&self) -> String {
        fn or_dash<T: ToString>(value: &Option<T>) -> String {
            value.as_ref().map_or_else(|| "-".to_owned(), T::to_string)
        }
        let mut rows: Vec<(String, String)> = vec![
            ("model".into(), self.path.display().to_string()),
            ("file size".into(), human_bytes(self.file_size)),
            ("gguf version".into(), self.gguf_version.to_string()),
            ("architecture".into(), or_dash(&self.architecture)),
            ("name".into(), or_dash(&self.name)),
            (
                "parameters".into(),
                format!(
                    "{} ({})",
                    human_count(self.parameter_count),
                    self.parameter_count
                ),
            ),
            ("file type".into(), or_dash(&self.file_type)),
            ("context length".into(), or_dash(&self.context_length)),
            ("layers".into(), or_dash(&self.block_count)),
            ("embedding length".into(), or_dash(&self.embedding_length)),
            (
                "feed forward length".into(),
                or_dash(&self.feed_forward_length),
            ),
            ("attention heads".into(), or_dash(&self.head_count)),
            ("key/value heads".into(), or_dash(&self.head_count_kv)),
            ("head size".into(), or_dash(&self.head_size)),
            ("rope freq base".into(), or_dash(&self.rope_freq_base)),
            ("sliding window".into(), or_dash(&self.sliding_window)),
            ("tokenizer".into(), or_dash(&self.tokenizer_model)),
            ("pre-tokenizer".into(), or_dash(&self.tokenizer_pre)),
            ("vocabulary size".into(), or_dash(&self.vocab_size)),
            ("bos / eos token".into(), {
                format!(
                    "{} / {}",
                    or_dash(&self.bos_token_id),
                    or_dash(&self.eos_token_id)
                )
            }),
            (
                "chat template".into(),
                if self.has_chat_template { "yes" } else { "no" }.into(),
            ),
            ("metadata keys".into(), self.metadata_count.to_string()),
            (
                "tensors".into(),
                format!(
                    "{} ({} of data)",
                    self.tensor_count,
                    human_bytes(self.tensor_data_bytes)
                ),
            ),
        ];
        let mut types: Vec<_> = self.tensor_types.iter().collect();
        types.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        rows.extend(
            types
                .into_iter()
                .map(|(ty, n)| (format!("  {ty}"), n.to_string())),
        );
        rows.extend(
            self.warnings
                .iter()
                .map(|w| ("warning".to_owned(), w.clone())),
        );
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(key, value)| format!("{key:<width$}  {value}\n"))
            .collect()
    }
}

/// `134.52M`, `1.20B`, `512`.
fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.2}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// `93.8 MiB`, `512 B`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use gguf::{GgmlType, GgufWriter};

    use super::*;

    #[test]
    fn describes_a_synthetic_model_and_warns_about_mistyped_keys() {
        let mut writer = GgufWriter::new();
        writer
            .set("general.architecture", "llama")
            .set("general.file_type", 2u32)
            .set("llama.block_count", 2u32)
            .set("llama.embedding_length", 64u32)
            .set("llama.attention.head_count", 4u32)
            .set("llama.context_length", "long")
            .set("tokenizer.ggml.model", "gpt2")
            .set("tokenizer.ggml.tokens", vec!["a", "b", "c"]);
        writer
            .add_tensor("a", &[64, 2], GgmlType::Q4_0, vec![0; 72])
            .unwrap()
            .add_tensor("b", &[64], GgmlType::F32, vec![0; 256])
            .unwrap()
            .add_tensor("c", &[32], GgmlType::Q4_0, vec![0; 18])
            .unwrap();
        let file = GgufFile::from_bytes(writer.to_bytes().unwrap()).unwrap();
        let report = describe(&file, Path::new("x.gguf"));
        assert_eq!(report.architecture.as_deref(), Some("llama"));
        assert_eq!(report.file_type.as_deref(), Some("Q4_0"));
        assert_eq!(report.parameter_count, 128 + 64 + 32);
        assert_eq!(report.block_count, Some(2));
        assert_eq!(report.head_count_kv, Some(4));
        assert_eq!(report.head_size, Some(16));
        assert_eq!(report.context_length, None);
        assert_eq!(report.feed_forward_length, None);
        assert_eq!(report.vocab_size, Some(3));
        assert!(!report.has_chat_template);
        assert_eq!(report.tensor_count, 3);
        assert_eq!(report.tensor_types["q4_0"], 2);
        assert_eq!(report.tensor_types["f32"], 1);
        assert_eq!(
            report.warnings,
            ["metadata key 'llama.context_length' is string, expected u32"]
        );
        let table = report.to_table();
        assert!(table.contains("layers               2\n"), "{table}");
        assert!(table.contains("  q4_0               2\n"), "{table}");
        assert!(table.contains("context length       -\n"), "{table}");
    }

    #[test]
    fn numbers_are_shown_for_people() {
        assert_eq!(human_count(134_515_008), "134.52M");
        assert_eq!(human_count(999), "999");
        assert_eq!(human_bytes(98_362_432), "93.8 MiB");
        assert_eq!(human_bytes(10), "10 B");
    }
}
