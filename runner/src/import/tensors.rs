//! Converting checkpoint tensors into GGUF tensors of the requested type, as llama.cpp's
//! converter chooses types: vectors (biases, norms) and the position and token-type
//! embeddings stay F32; other matrices take the requested type, Q8_0 falling back to F16
//! for a row that is not a whole number of 32-value blocks.

use std::collections::BTreeSet;

use gguf::{GgmlType, GgufWriter, keys};
use kernels::quant::quantize_row;

use super::{Checkpoint, ImportError};

/// The type of the matrices of an imported model (`--type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    /// Everything F32 (`general.file_type` 0).
    F32,
    /// Matrices F16 (file type 1).
    F16,
    /// Matrices Q8_0 (file type 7).
    Q8_0,
}

impl OutType {
    /// `general.file_type` (llama.cpp's `llama_ftype`).
    fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => 7,
        }
    }

    /// The type of a matrix whose rows hold `cols` values.
    fn matrix_type(self, cols: usize) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::Q8_0 if cols.is_multiple_of(GgmlType::Q8_0.block_size()) => GgmlType::Q8_0,
            Self::Q8_0 => GgmlType::F16,
        }
    }
}

/// How a tensor is stored whatever the requested type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A weight matrix: the requested type.
    Matrix,
    /// A vector, or a table llama.cpp keeps exact (positions, token types): F32.
    KeepF32,
}

/// Collects the converted tensors and the metadata of one output file.
pub struct Builder<'c> {
    checkpoint: &'c Checkpoint,
    writer: GgufWriter<'static>,
    out_type: OutType,
    progress: &'c mut dyn FnMut(&str, usize, usize),
    used: BTreeSet<String>,
    bytes: u64,
}

impl<'c> Builder<'c> {
    /// A builder writing into `writer`.
    pub fn new(
        checkpoint: &'c Checkpoint,
        writer: GgufWriter<'static>,
        out_type: OutType,
        progress: &'c mut dyn FnMut(&str, usize, usize),
    ) -> Self {
        Self {
            checkpoint,
            writer,
            out_type,
            progress,
            used: BTreeSet::new(),
            bytes: 0,
        }
    }

    /// The checkpoint read from.
    pub fn checkpoint(&self) -> &Checkpoint {
        self.checkpoint
    }

    /// The file's metadata, for the architecture's keys.
    pub fn writer(&mut self) -> &mut GgufWriter<'static> {
        &mut self.writer
    }

    /// Marks checkpoint tensor `hf` as known and not written (llama.cpp drops it too).
    pub fn skip(&mut self, hf: &str) {
        self.used.insert(hf.to_owned());
    }

    /// Converts checkpoint tensor `hf` of row-major `shape` into GGUF tensor `name`.
    pub fn tensor(
        &mut self,
        hf: &str,
        name: &str,
        shape: &[usize],
        role: Role,
    ) -> Result<(), ImportError> {
        // Read first, so that a dtype we do not handle is named before any shape.
        let values = self.checkpoint.read_f32(hf)?;
        let actual = self.checkpoint.shape(hf)?;
        if actual != shape {
            return Err(ImportError::Shape {
                name: hf.to_owned(),
                actual: actual.to_vec(),
                expected: shape.to_vec(),
            });
        }
        let cols = shape.last().copied().unwrap_or(1);
        let ty = match role {
            Role::Matrix if shape.len() >= 2 => self.out_type.matrix_type(cols),
            _ => GgmlType::F32,
        };
        let bytes_per_row = cols / ty.block_size() * ty.type_size();
        let mut data = vec![0u8; values.len() / cols.max(1) * bytes_per_row];
        if cols > 0 {
            for (src, dst) in values
                .chunks_exact(cols)
                .zip(data.chunks_exact_mut(bytes_per_row))
            {
                quantize_row(ty, src, dst).map_err(|source| ImportError::Quant {
                    name: hf.to_owned(),
                    source,
                })?;
            }
        }
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        self.bytes += data.len() as u64;
        self.writer.add_tensor(name, &dims, ty, data)?;
        self.used.insert(hf.to_owned());
        let total = self.checkpoint.names().count();
        (self.progress)(name, self.used.len(), total);
        Ok(())
    }

    /// Checks that every checkpoint tensor was written or skipped, sets the file type and
    /// returns the writer, the tensor count and the bytes of tensor data.
    pub fn finish(mut self) -> Result<(GgufWriter<'static>, usize, u64), ImportError> {
        if let Some(extra) = self.checkpoint.names().find(|n| !self.used.contains(*n)) {
            return Err(ImportError::UnexpectedTensor(extra.to_owned()));
        }
        self.writer
            .set(keys::GENERAL_FILE_TYPE, self.out_type.file_type())
            .set(keys::GENERAL_QUANTIZATION_VERSION, 2u32);
        let count = self.writer.tensors().len();
        Ok((self.writer, count, self.bytes))
    }
}
