//! `create` from a Hugging Face model directory (`FROM /path/to/dir`, or `from` in the
//! request): the directory is converted into a GGUF by `ollama-runner convert`, run as a
//! child process (the supervisor links no model code), and the result is stored as a
//! blob that the create goes on with, as if it had been uploaded.
//!
//! `quantize` picks the converter's type: `f16` when absent (as Ollama imports
//! safetensors), or one of [`TYPES`]; other types are refused by name. The same
//! converter quantizes an uploaded GGUF of F32, F16 or BF16 weights when a create with
//! another source asks for `quantize` ([`gguf_type`]); it refuses a GGUF that is already
//! quantized, and its reason is the answer's. The child gets
//! the environment a runner gets (the whitelist of `runners::runner_env`), and is
//! killed if the request goes away.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::ApiError;
use crate::store::{Digest, Store};

/// The types `ollama-runner convert --type` writes.
const TYPES: [&str; 12] = [
    "f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m",
    "q6_k",
];

/// The directory `from` names, when it names a directory on this machine (a path
/// starting with `/`, `.` or `~`).
pub(crate) fn model_dir(from: &str) -> Option<PathBuf> {
    if !from.starts_with(['.', '/', '~']) {
        return None;
    }
    let path = match (from.strip_prefix("~/"), std::env::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(from),
    };
    path.is_dir().then_some(path)
}

/// The converter's `--type` for a create's `quantize`, or a refusal naming it.
pub(crate) fn out_type(quantize: Option<&str>) -> Result<&'static str, ApiError> {
    let Some(q) = quantize.filter(|q| !q.is_empty()) else {
        return Ok("f16");
    };
    TYPES
        .iter()
        .find(|t| t.eq_ignore_ascii_case(q))
        .copied()
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "quantize {q:?}: importing a directory writes f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_s, q4_k_m, q5_k_s, q5_k_m or q6_k"
            ))
        })
}

/// The converter's `--type` for a `quantize` of an uploaded GGUF: as [`out_type`], but
/// `f16` and `f32` are refused, since a GGUF is only ever quantized.
pub(crate) fn gguf_type(quantize: Option<&str>) -> Result<&'static str, ApiError> {
    match out_type(quantize)? {
        "f16" | "f32" => Err(ApiError::bad_request(format!(
            "quantize {:?}: a GGUF is quantized into q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_s, \
             q4_k_m, q5_k_s, q5_k_m or q6_k",
            quantize.unwrap_or_default()
        ))),
        ty => Ok(ty),
    }
}

/// Converts `dir` (a model directory, or a GGUF file to quantize) with `runner` into a
/// blob of `store` and returns its digest; the converter's own error (naming the
/// architecture, tokenizer or dtype it refused, or the tensor already quantized) is the
/// answer's when it fails, after `what` (such as `FROM <dir>`).
pub(crate) async fn convert(
    runner: &Path,
    store: &Store,
    dir: &Path,
    ty: &str,
    what: &str,
    progress: Option<&Progress>,
) -> Result<Digest, ApiError> {
    let blobs = store.blobs_dir();
    tokio::fs::create_dir_all(blobs)
        .await
        .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", blobs.display())))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let out = blobs.join(format!(".import-{}-{nanos}.gguf", std::process::id()));
    let result = run(runner, dir, &out, ty, what, progress).await;
    let stored = match result {
        Ok(()) => match tokio::fs::File::open(&out).await {
            Ok(file) => store
                .write_upload(None, None, file)
                .await
                .map(|(d, _)| d)
                .map_err(ApiError::from),
            Err(e) => Err(ApiError::internal(format!(
                "cannot read {}: {e}",
                out.display()
            ))),
        },
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&out).await;
    stored
}

/// Where a conversion's progress goes: tensors done and the total, as the converter
/// reports them on stderr (`convert: N/M tensors`, every tenth of the tensors).
pub(crate) type Progress = tokio::sync::mpsc::UnboundedSender<(u64, u64)>;

/// `convert: N/M tensors` as (N, M).
fn progress_line(line: &str) -> Option<(u64, u64)> {
    let counts = line.strip_prefix("convert: ")?.split(' ').next()?;
    let (done, total) = counts.split_once('/')?;
    Some((done.parse().ok()?, total.parse().ok()?))
}

async fn run(
    runner: &Path,
    dir: &Path,
    out: &Path,
    ty: &str,
    what: &str,
    progress: Option<&Progress>,
) -> Result<(), ApiError> {
    let mut child = tokio::process::Command::new(runner)
        .arg("convert")
        .arg(dir)
        .arg(out)
        .arg("--type")
        .arg(ty)
        .env_clear()
        .envs(crate::runners::runner_env(std::env::vars_os()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            ApiError::internal(format!(
                "cannot start {} to import {}: {e}; set OLLAMA_RUNNER",
                runner.display(),
                dir.display()
            ))
        })?;
    let mut said = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let (Some(p), Some(counts)) = (progress, progress_line(&line)) {
                let _ = p.send(counts);
            }
            said.push(line);
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| ApiError::internal(format!("waiting for the converter failed: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let why = said
        .iter()
        .rev()
        .find(|l| l.starts_with("error: "))
        .map(|l| {
            // The converter names its source, which `what` already does.
            let l = l.trim_start_matches("error: ");
            let context = format!("converting {}: ", dir.display());
            l.strip_prefix(&context).unwrap_or(l).to_owned()
        })
        .unwrap_or_else(|| format!("the converter failed ({status})"));
    Err(ApiError::bad_request(format!("{what}: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_names_the_converter_s_type_or_is_refused() {
        assert_eq!(out_type(None).unwrap(), "f16");
        assert_eq!(out_type(Some("")).unwrap(), "f16");
        assert_eq!(out_type(Some("Q8_0")).unwrap(), "q8_0");
        assert_eq!(out_type(Some("Q4_K_M")).unwrap(), "q4_k_m");
        let err = out_type(Some("iq2_xs")).unwrap_err();
        assert!(format!("{err:?}").contains("iq2_xs"), "{err:?}");
    }

    #[test]
    fn progress_lines_are_read_and_others_ignored() {
        assert_eq!(progress_line("convert: 28/272 tensors"), Some((28, 272)));
        assert_eq!(
            progress_line("convert: 3/10 tensors (blk.0.attn_q.weight)"),
            Some((3, 10))
        );
        assert_eq!(progress_line("error: converting x: bad"), None);
    }

    #[test]
    fn only_existing_directories_named_as_paths_are_model_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().display().to_string();
        assert_eq!(model_dir(&path), Some(dir.path().to_path_buf()));
        assert_eq!(model_dir("llama3"), None);
        assert_eq!(model_dir(&format!("{path}/missing")), None);
    }
}
