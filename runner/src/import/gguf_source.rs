//! Quantizing a GGUF file of F32, F16 or BF16 weights into another type, as
//! `llama-quantize` (and `ollama create --quantize` from an F16 GGUF) does: `convert
//! FILE.gguf OUT.gguf --type T`, and `create`'s `quantize` of an uploaded GGUF.
//!
//! Metadata and tensor order are kept; `general.file_type` becomes the new type's. The
//! tensors llama.cpp's `tensor_allows_quantization` lets through (two or more
//! dimensions, a name ending in `weight`, not a norm, a MoE router, positional or
//! token-type embeddings, or one of the small convolution and AltUp tables) take the
//! type [`OutType`]'s mix gives their role; the others are copied as they are. A file
//! with any tensor already in a quantized type is refused: quantizing it again would
//! compound the rounding, so its F16 or F32 original must be quantized instead (the
//! refusal names the tensor and its type).

use std::path::Path;

use gguf::{GgufFile, GgufWriter, keys};
use kernels::quant::dequantize_row;

use super::tensors::{MatrixRole, OutType, quantize_matrix};
use super::{ImportError, Imported};

/// Whether llama-quantize would quantize tensor `name` of `n_dims` dimensions.
fn allows_quantization(name: &str, n_dims: usize) -> bool {
    const KEPT: [&str; 8] = [
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "indexer.",
    ];
    n_dims >= 2
        && name.ends_with("weight")
        && name != "position_embd.weight"
        && name != "token_types.weight"
        && !KEPT.iter().any(|k| name.contains(k))
}

/// Quantizes the GGUF at `src` into `out` with matrices in `out_type`; `progress` is
/// called after each tensor with its name, the count done and the total.
pub fn quantize_gguf(
    src: &Path,
    out: &Path,
    out_type: OutType,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Imported, ImportError> {
    let file = GgufFile::open(src)?;
    if let Some(t) = file.tensors().iter().find(|t| t.ggml_type().is_quantized()) {
        return Err(ImportError::AlreadyQuantized(format!(
            "tensor '{}' is {}",
            t.name(),
            t.ggml_type().to_string().to_uppercase()
        )));
    }
    let meta = file.metadata();
    let architecture = meta
        .get_str(keys::GENERAL_ARCHITECTURE)
        .map_err(|e| ImportError::NotAModel {
            path: src.to_path_buf(),
            why: e.to_string(),
        })?
        .to_owned();
    let n_layer = meta
        .get_u32(&format!("{architecture}.block_count"))
        .unwrap_or(0) as usize;
    let has_output = file.tensor("output.weight").is_some();
    let mut writer = GgufWriter::new();
    *writer.metadata_mut() = meta.clone();
    let total = file.tensors().len();
    let mut bytes = 0u64;
    for (i, t) in file.tensors().iter().enumerate() {
        let name = t.name();
        let data = file.tensor_data(t)?;
        let cols = t.dims().first().copied().unwrap_or(1) as usize;
        let ty = if allows_quantization(name, t.dims().len()) {
            out_type.matrix_type(cols, MatrixRole::of(name, n_layer, has_output))
        } else {
            t.ggml_type()
        };
        if ty == t.ggml_type() {
            bytes += data.len() as u64;
            writer.add_tensor(name, t.dims(), ty, data)?;
        } else {
            let quant = |e| ImportError::Quant {
                name: name.to_owned(),
                source: e,
            };
            let mut values = vec![0f32; t.n_elements() as usize];
            dequantize_row(t.ggml_type(), data, &mut values).map_err(quant)?;
            let converted = quantize_matrix(ty, &values, cols).map_err(quant)?;
            bytes += converted.len() as u64;
            writer.add_tensor(name, t.dims(), ty, converted)?;
        }
        progress(name, i + 1, total);
    }
    writer
        .set(keys::GENERAL_FILE_TYPE, out_type.file_type())
        .set(keys::GENERAL_QUANTIZATION_VERSION, 2u32);
    writer.write_file(out)?;
    Ok(Imported {
        architecture,
        tensors: total,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_positions_and_vectors_are_not_quantized() {
        assert!(allows_quantization("blk.0.attn_q.weight", 2));
        assert!(allows_quantization("token_embd.weight", 2));
        assert!(!allows_quantization("blk.0.attn_norm.weight", 1));
        assert!(!allows_quantization("blk.0.attn_q_norm.weight", 2));
        assert!(!allows_quantization("position_embd.weight", 2));
        assert!(!allows_quantization("blk.0.ffn_gate_inp.weight", 2));
        assert!(!allows_quantization("blk.0.attn_q.bias", 2));
        assert!(!gguf::GgmlType::F16.is_quantized());
    }
}
