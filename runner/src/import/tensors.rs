//! Converting checkpoint tensors into GGUF tensors of the requested type, as llama.cpp's
//! converter chooses types: vectors (biases, norms) and the position and token-type
//! embeddings stay F32; other matrices take the requested type, the output head (or the
//! tied token embeddings) a wider one, falling back as `llama-quantize` does when a row is
//! not a whole number of the type's blocks ([`OutType::matrix_type`]).

use std::collections::BTreeSet;

use gguf::{GgmlType, GgufWriter, keys};
use kernels::quant::quantize_row;

use super::{Checkpoint, ImportError};

/// The type of the matrices of an imported model (`--type`, `create`'s `quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    /// Everything F32 (`general.file_type` 0).
    F32,
    /// Matrices F16 (file type 1).
    F16,
    /// Matrices Q8_0 (file type 7).
    Q8_0,
    /// Matrices Q4_0 (file type 2).
    Q4_0,
    /// Matrices Q4_1 (file type 3).
    Q4_1,
    /// Matrices Q5_0 (file type 8).
    Q5_0,
    /// Matrices Q5_1 (file type 9).
    Q5_1,
    /// Q4_K, with Q5_K for the first value projections and the first eighth of the
    /// down projections (file type 14).
    Q4KS,
    /// Q4_K, with Q6_K for half the value and down projections (llama.cpp's
    /// `use_more_bits` layers) and Q5_K for fused QKV (file type 15): Ollama's default.
    Q4KM,
    /// Q5_K (file type 16).
    Q5KS,
    /// Q5_K, with Q6_K for half the value and down projections and for fused QKV (file
    /// type 17).
    Q5KM,
    /// Q6_K (file type 18).
    Q6K,
}

/// Every type, by the name `--type` and `quantize` take.
pub const OUT_TYPES: [(&str, OutType); 12] = [
    ("f32", OutType::F32),
    ("f16", OutType::F16),
    ("q8_0", OutType::Q8_0),
    ("q4_0", OutType::Q4_0),
    ("q4_1", OutType::Q4_1),
    ("q5_0", OutType::Q5_0),
    ("q5_1", OutType::Q5_1),
    ("q4_k_s", OutType::Q4KS),
    ("q4_k_m", OutType::Q4KM),
    ("q5_k_s", OutType::Q5KS),
    ("q5_k_m", OutType::Q5KM),
    ("q6_k", OutType::Q6K),
];

impl std::fmt::Display for OutType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = OUT_TYPES.iter().find(|(_, t)| t == self).map(|(n, _)| *n);
        f.write_str(name.unwrap_or("?"))
    }
}

impl OutType {
    /// `general.file_type` (llama.cpp's `llama_ftype`).
    pub(super) fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 7,
            Self::Q5_0 => 8,
            Self::Q5_1 => 9,
            Self::Q4KS => 14,
            Self::Q4KM => 15,
            Self::Q5KS => 16,
            Self::Q5KM => 17,
            Self::Q6K => 18,
        }
    }

    /// The type most matrices take.
    fn base(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q4_0 => GgmlType::Q4_0,
            Self::Q4_1 => GgmlType::Q4_1,
            Self::Q5_0 => GgmlType::Q5_0,
            Self::Q5_1 => GgmlType::Q5_1,
            Self::Q4KS | Self::Q4KM => GgmlType::Q4_K,
            Self::Q5KS | Self::Q5KM => GgmlType::Q5_K,
            Self::Q6K => GgmlType::Q6_K,
        }
    }

    /// The type llama-quantize's mixes give a matrix of `role` before fitting it to the
    /// rows (`llama_tensor_get_type` for a dense model without an importance matrix).
    fn mixed(self, role: MatrixRole) -> GgmlType {
        use GgmlType::{Q5_K, Q6_K};
        let base = self.base();
        match (self, role) {
            (_, MatrixRole::Output) => base,
            (Self::Q4KM | Self::Q5KM, MatrixRole::AttnV { layer, n_layer })
            | (Self::Q4KM | Self::Q5KM, MatrixRole::FfnDown { layer, n_layer })
                if use_more_bits(layer, n_layer) =>
            {
                Q6_K
            }
            (Self::Q4KS, MatrixRole::AttnV { layer, .. }) if layer < 4 => Q5_K,
            (Self::Q4KS, MatrixRole::FfnDown { layer, n_layer }) if layer < n_layer / 8 => Q5_K,
            (Self::Q4KM, MatrixRole::AttnQkv) => Q5_K,
            (Self::Q5KM, MatrixRole::AttnQkv) => Q6_K,
            _ => base,
        }
    }

    /// The type of a matrix whose rows hold `cols` values, as llama.cpp's
    /// `llama-quantize` chooses it: the output head (or the token embeddings, when no
    /// output head is written) takes Q6_K for a quantized file, Q8_0 for a Q8_0 file or
    /// when the rows do not split into the file type's blocks; a type whose blocks do not
    /// fit the rows falls back (Q6_K to Q8_0), and to F16 when that does not fit either.
    pub(super) fn matrix_type(self, cols: usize, role: MatrixRole) -> GgmlType {
        let base = self.base();
        if !base.is_quantized() {
            return base;
        }
        let wanted = match base {
            _ if role != MatrixRole::Output => self.mixed(role),
            GgmlType::Q8_0 => GgmlType::Q8_0,
            _ if !cols.is_multiple_of(base.block_size()) => GgmlType::Q8_0,
            _ => GgmlType::Q6_K,
        };
        let fitted = if cols.is_multiple_of(wanted.block_size()) {
            wanted
        } else {
            match wanted {
                GgmlType::Q4_K => GgmlType::Q5_0,
                GgmlType::Q5_K => GgmlType::Q5_1,
                GgmlType::Q6_K => GgmlType::Q8_0,
                other => other,
            }
        };
        if cols.is_multiple_of(fitted.block_size()) {
            fitted
        } else {
            GgmlType::F16
        }
    }
}

/// What llama-quantize's mixes tell apart among the matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixRole {
    /// The output head, or the token embeddings of a model without one.
    Output,
    /// Layer `layer`'s value projection.
    AttnV {
        /// Its layer.
        layer: usize,
        /// Layers in the model.
        n_layer: usize,
    },
    /// Layer `layer`'s feed-forward down projection.
    FfnDown {
        /// Its layer.
        layer: usize,
        /// Layers in the model.
        n_layer: usize,
    },
    /// A fused query-key-value projection.
    AttnQkv,
    /// Any other matrix.
    Other,
}

impl MatrixRole {
    /// The role of GGUF tensor `name` in a model of `n_layer` layers.
    pub(super) fn of(name: &str, n_layer: usize, has_output: bool) -> Self {
        if name == "output.weight" || (name == "token_embd.weight" && !has_output) {
            return Self::Output;
        }
        let layer = name
            .strip_prefix("blk.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|i| i.parse().ok());
        match layer {
            Some(layer) if name.ends_with(".attn_v.weight") => Self::AttnV { layer, n_layer },
            Some(layer) if name.ends_with(".ffn_down.weight") => Self::FfnDown { layer, n_layer },
            Some(_) if name.ends_with(".attn_qkv.weight") => Self::AttnQkv,
            _ => Self::Other,
        }
    }
}

/// `values`, rows of `cols`, quantized row by row into `ty`.
pub(super) fn quantize_matrix(
    ty: GgmlType,
    values: &[f32],
    cols: usize,
) -> Result<Vec<u8>, kernels::quant::QuantError> {
    let bytes_per_row = cols / ty.block_size() * ty.type_size();
    let mut data = vec![0u8; values.len() / cols.max(1) * bytes_per_row];
    if cols > 0 {
        for (src, dst) in values
            .chunks_exact(cols)
            .zip(data.chunks_exact_mut(bytes_per_row))
        {
            quantize_row(ty, src, dst)?;
        }
    }
    Ok(data)
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third
/// between.
fn use_more_bits(layer: usize, n_layer: usize) -> bool {
    let (i, n) = (layer as i64, n_layer as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8).rem_euclid(3) == 2
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
    /// Whether the file has an output head of its own (`output.weight`); without one the
    /// token embeddings are the output head and take its type, as `llama-quantize`
    /// assumes.
    has_output: bool,
    n_layer: usize,
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
            has_output: false,
            n_layer: 0,
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

    /// The model's layer count, which the mixes' per-layer choices need: set before the
    /// layers' tensors are written.
    pub fn set_layers(&mut self, n_layer: usize) {
        self.n_layer = n_layer;
    }

    /// Marks checkpoint tensor `hf` as known and not written (llama.cpp drops it too).
    pub fn skip(&mut self, hf: &str) {
        self.used.insert(hf.to_owned());
    }

    /// Whether the model has an output head of its own (`output.weight`): without one
    /// the token embeddings take the output head's type. Set before `token_embd`.
    pub fn set_has_output(&mut self, has_output: bool) {
        self.has_output = has_output;
    }

    /// Converts checkpoint tensor `hf` of row-major `shape` into GGUF tensor `name`.
    pub fn tensor(
        &mut self,
        hf: &str,
        name: &str,
        shape: &[usize],
        role: Role,
    ) -> Result<(), ImportError> {
        let values = self.read(hf, shape)?;
        self.write(name, shape, role, &values, hf)?;
        self.done(hf, name);
        Ok(())
    }

    /// Converts a query or key projection `hf` into `name` with its rows reordered from
    /// Hugging Face's rotary layout into llama.cpp's, `n_head` heads at a time.
    pub fn tensor_permuted(
        &mut self,
        hf: &str,
        name: &str,
        shape: &[usize],
        n_head: usize,
    ) -> Result<(), ImportError> {
        let values = self.read(hf, shape)?;
        let cols = shape.last().copied().unwrap_or(1);
        let permuted = super::llama::permute_rows(&values, cols, n_head);
        self.write(name, shape, Role::Matrix, &permuted, hf)?;
        self.done(hf, name);
        Ok(())
    }

    /// Converts checkpoint tensor `hf` of row-major `shape` into GGUF tensor `name` of
    /// `out_shape`, after `edit` has changed its values as llama.cpp's converter does
    /// (Gemma's norm shift, embedding rows past the vocabulary dropped).
    pub fn tensor_edited(
        &mut self,
        hf: &str,
        name: &str,
        (shape, out_shape): (&[usize], &[usize]),
        role: Role,
        edit: impl FnOnce(Vec<f32>) -> Vec<f32>,
    ) -> Result<(), ImportError> {
        let values = edit(self.read(hf, shape)?);
        if values.len() != out_shape.iter().product::<usize>() {
            return Err(ImportError::Shape {
                name: hf.to_owned(),
                actual: vec![values.len()],
                expected: out_shape.to_vec(),
            });
        }
        self.write(name, out_shape, role, &values, hf)?;
        self.done(hf, name);
        Ok(())
    }

    /// Writes a tensor the converter computes (such as `rope_freqs`), in F32.
    pub fn generated(
        &mut self,
        name: &str,
        shape: &[usize],
        values: Vec<f32>,
    ) -> Result<(), ImportError> {
        self.write(name, shape, Role::KeepF32, &values, name)
    }

    /// Tensor `hf` as F32 values, checked to be of row-major `shape`.
    fn read(&self, hf: &str, shape: &[usize]) -> Result<Vec<f32>, ImportError> {
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
        Ok(values)
    }

    /// Quantizes `values` (row-major `shape`) into the type `role` asks for and adds them
    /// as tensor `name`; `source` names the tensor in errors.
    fn write(
        &mut self,
        name: &str,
        shape: &[usize],
        role: Role,
        values: &[f32],
        source: &str,
    ) -> Result<(), ImportError> {
        let cols = shape.last().copied().unwrap_or(1);
        let ty = match role {
            Role::Matrix if shape.len() >= 2 => {
                let role = MatrixRole::of(name, self.n_layer, self.has_output);
                self.out_type.matrix_type(cols, role)
            }
            _ => GgmlType::F32,
        };
        let data = quantize_matrix(ty, values, cols).map_err(|e| ImportError::Quant {
            name: source.to_owned(),
            source: e,
        })?;
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        self.bytes += data.len() as u64;
        self.writer.add_tensor(name, &dims, ty, data)?;
        Ok(())
    }

    /// Marks `hf` converted and reports progress.
    fn done(&mut self, hf: &str, name: &str) {
        self.used.insert(hf.to_owned());
        let total = self.checkpoint.names().count();
        (self.progress)(name, self.used.len(), total);
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
