//! The weight matrices repacked once, at load, into the layout the fast kernels read
//! fastest ([`kernels::repack`]): eight rows interleaved block by block, for the types
//! that have such a layout (Q4_0, Q4_1, Q5_0, Q8_0).
//!
//! The matrices are rewritten in place in the file's private copy-on-write map, so the
//! model takes the same memory as before: a repacked page is the process's own instead
//! of the file's. [`GgufFile::mark_rewritten`] records each one, and [`super::weights`]
//! gives it to the kernels as [`kernels::matmul::Layout::Rows8`]. A token table that is
//! also the output head is repacked too, and its lookup reads a row out of its group;
//! the other readers that want the file's layout (vectors, the GPU's upload) refuse a
//! rewritten tensor.
//!
//! Only fast numerics read the layout, and only the SIMD kernels gain from it, so exact
//! numerics and the scalar kernels leave the file as it is.

use gguf::GgufFile;
use kernels::cpu::{Isa, Numerics};
use kernels::repack::{ROWS, packable, repack_rows8};

use super::ModelError;

/// What [`repack_weights`] rewrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repacked {
    /// Matrices rewritten.
    pub tensors: usize,
    /// Their bytes.
    pub bytes: usize,
}

/// Tensors that are never a matrix product's weights: the tables read one row at a time.
const ROW_TABLES: [&str; 3] = [
    "token_embd.weight",
    "position_embd.weight",
    "token_types.weight",
];

/// The token table, which a decoder without `output.weight` also multiplies as its output
/// head (the largest matrix of a small model: a third of SmolLM2's bytes a token, nearly
/// three quarters of Gemma 3's). It is repacked then, and its rows are read out of their
/// groups ([`super::weights::Embedding::lookup`]).
const TOKEN_TABLE: &str = "token_embd.weight";

/// Whether the model code multiplies the tensor `name` of `dims` (ggml order) and type
/// `ty` as a whole matrix that the eight-row layout takes: a 2-D `.weight` that is not a
/// table of rows (or is the token table of a model whose head it is, `tied_head`), with
/// whole groups of eight rows.
fn takes_layout(name: &str, dims: &[u64], ty: gguf::GgmlType, tied_head: bool) -> bool {
    let [cols, rows] = dims else {
        return false;
    };
    name.ends_with(".weight")
        && (!ROW_TABLES.contains(&name) || (tied_head && name == TOKEN_TABLE))
        && packable(ty)
        && rows % ROWS as u64 == 0
        && cols % ty.block_size() as u64 == 0
}

/// Repacks the file's weight matrices for `numerics` on `isa`: every matrix the eight-row
/// layout takes when the fast SIMD kernels will multiply it, none otherwise.
pub fn repack_weights(
    file: &mut GgufFile,
    numerics: Numerics,
    isa: Isa,
) -> Result<Repacked, ModelError> {
    let mut done = Repacked::default();
    if numerics != Numerics::Fast || isa == Isa::Scalar {
        return Ok(done);
    }
    let tied_head = file.tensor("output.weight").is_none()
        && !super::bert::embeds_only(file.metadata().architecture()?);
    let matrices: Vec<(String, gguf::GgmlType, usize, usize)> = file
        .tensors()
        .iter()
        .filter(|t| takes_layout(t.name(), t.dims(), t.ggml_type(), tied_head))
        .map(|t| {
            let (cols, rows) = (t.dims()[0] as usize, t.dims()[1] as usize);
            (t.name().to_owned(), t.ggml_type(), rows, cols)
        })
        .collect();
    for (name, ty, rows, cols) in matrices {
        let Some(bytes) = file.tensor_data_mut(&name) else {
            return Err(ModelError::MissingTensor(name));
        };
        repack_rows8(ty, rows, cols, bytes).map_err(|e| ModelError::Repack {
            name: name.clone(),
            source: e,
        })?;
        done.tensors += 1;
        done.bytes += bytes.len();
        file.mark_rewritten(&name);
    }
    tracing::debug!(
        tensors = done.tensors,
        mib = done.bytes >> 20,
        "weights repacked in groups of eight rows"
    );
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gguf::GgmlType;

    #[test]
    fn only_whole_matrices_of_a_packable_type_take_the_layout() {
        let q8 = GgmlType::Q8_0;
        let takes = |name, dims: &[u64], ty| takes_layout(name, dims, ty, false);
        assert!(takes("blk.0.attn_q.weight", &[576, 576], q8));
        assert!(takes("output.weight", &[576, 49152], GgmlType::Q4_1));
        assert!(!takes("token_embd.weight", &[576, 49152], q8));
        assert!(!takes("blk.0.attn_q.weight", &[576, 12], q8));
        assert!(!takes("blk.0.attn_norm.weight", &[576], q8));
        assert!(!takes("blk.0.ffn_up_exps.weight", &[64, 64, 8], q8));
        assert!(!takes("blk.0.attn_q.weight", &[576, 576], GgmlType::Q4_K));
        assert!(!takes("blk.0.attn_q.bias", &[576, 576], q8));
    }

    #[test]
    fn the_token_table_takes_the_layout_only_as_the_output_head() {
        let q8 = GgmlType::Q8_0;
        assert!(takes_layout("token_embd.weight", &[576, 49152], q8, true));
        assert!(!takes_layout("token_embd.weight", &[576, 49152], q8, false));
        assert!(!takes_layout("token_embd.weight", &[576, 49155], q8, true));
        assert!(!takes_layout("position_embd.weight", &[576, 512], q8, true));
        assert!(!takes_layout("token_types.weight", &[576, 8], q8, true));
    }
}
