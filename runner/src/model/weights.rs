//! Tensors of the mapped GGUF file as a model uses them: matrices left in the file and
//! multiplied in place, small vectors (norms, biases) copied out as `f32`, and the
//! embedding table read one token row at a time.

use std::ops::Range;

use gguf::{GgmlType, GgufFile, TensorInfo};
use kernels::cpu::{Isa, Numerics};
use kernels::matmul::{self, Layout, MatmulScratch, Weights};
use kernels::ops::gelu_erf_isa;
use kernels::pool::ThreadPool;
use kernels::repack::ROWS;

use super::{Interrupt, ModelError};

/// The CPU a model computes on: its threads, its instruction set, its numerics and the
/// matmul scratch.
///
/// This is the one place the numerics are chosen: the model code multiplies through
/// [`Cpu::matmul`] (and applies BERT's GELU through [`Cpu::gelu_erf`]) and never knows
/// whether the product adds in llama.cpp's order (exact) or in the fast kernels' (see
/// [`Numerics`]).
pub struct Cpu {
    pool: ThreadPool,
    isa: Isa,
    numerics: Numerics,
    scratch: MatmulScratch,
    /// Set while a pass that may be stopped runs: every product checks it first, so a
    /// cancelled prompt stops within one product rather than one layer.
    interrupt: Option<Interrupt>,
}

impl Cpu {
    /// `threads` threads (the caller included) on the best instruction set available,
    /// with `scratch_bytes` of space for quantized activations (see
    /// [`plan::compute::matmul_scratch_bytes`]).
    pub fn new(
        threads: usize,
        scratch_bytes: usize,
        numerics: Numerics,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            pool: ThreadPool::new(threads)?,
            isa: Isa::detect()?,
            numerics,
            scratch: MatmulScratch::with_bytes(scratch_bytes),
            interrupt: None,
        })
    }

    /// Runs `pass` with `interrupt` checked before every matrix product, which then
    /// fails with [`ModelError::Interrupted`]. The interrupt is dropped when `pass`
    /// returns: it holds the callers' channels, which must close when their work ends.
    pub fn interruptible<R>(
        &mut self,
        interrupt: Option<&Interrupt>,
        pass: impl FnOnce(&mut Self) -> R,
    ) -> R {
        self.interrupt = interrupt.cloned();
        let result = pass(self);
        self.interrupt = None;
        result
    }

    fn check_interrupt(&self) -> Result<(), ModelError> {
        match &self.interrupt {
            Some(i) if i.is_set() => Err(ModelError::Interrupted),
            _ => Ok(()),
        }
    }

    /// The instruction set the kernels run on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Bytes of the matmul scratch.
    pub fn scratch_bytes(&self) -> usize {
        self.scratch.bytes()
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// The worker threads, for work other than matrix products.
    pub fn pool(&self) -> &ThreadPool {
        &self.pool
    }

    /// `out[t] = W x[t]` for `n` rows of activations.
    pub fn matmul(
        &mut self,
        w: Weights<'_>,
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        self.check_interrupt()?;
        let product = match self.numerics {
            Numerics::Exact => matmul::matmul,
            Numerics::Fast => matmul::matmul_fast,
        };
        product(&self.pool, self.isa, w, x, n, out, &mut self.scratch)?;
        Ok(())
    }

    /// `out[t] = [W_0 x[t] | W_1 x[t] | ...]`: matrices that share their input in one
    /// product ([`matmul::matmul_stacked`]), each value the bits of its own product.
    pub fn matmul_stacked(
        &mut self,
        parts: &[Weights<'_>],
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        self.check_interrupt()?;
        let (pool, isa, numerics) = (&self.pool, self.isa, self.numerics);
        matmul::matmul_stacked(pool, isa, numerics, parts, x, n, out, &mut self.scratch)?;
        Ok(())
    }

    /// `out[i] = x[i]·Φ(x[i])`, GELU with erf (BERT's feed-forward activation), shared
    /// over the pool in chunks of `chunk` values: `erf` in `f64` in exact numerics, the
    /// `f32` SIMD kernel in fast numerics ([`gelu_erf_isa`]).
    ///
    /// # Panics
    /// If `out.len() != x.len()`.
    pub fn gelu_erf(&self, x: &[f32], out: &mut [f32], chunk: usize) {
        assert_eq!(
            x.len(),
            out.len(),
            "gelu_erf: output length differs from input"
        );
        let (isa, numerics) = (self.isa, self.numerics);
        self.pool.for_chunks_mut(out, chunk, |start, out| {
            gelu_erf_isa(isa, numerics, &x[start..start + out.len()], out);
        });
    }

    /// [`Cpu::matmul`] for the tokens routed to one expert ([`matmul::matmul_gathered`]).
    pub fn matmul_gathered(
        &mut self,
        w: Weights<'_>,
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        self.check_interrupt()?;
        matmul::matmul_gathered(&self.pool, self.isa, w, x, n, out, &mut self.scratch)?;
        Ok(())
    }
}

fn tensor<'a>(file: &'a GgufFile, name: &str) -> Result<&'a TensorInfo, ModelError> {
    file.tensor(name)
        .ok_or_else(|| ModelError::MissingTensor(name.to_owned()))
}

fn check_shape(info: &TensorInfo, expected: &[u64]) -> Result<(), ModelError> {
    if info.dims() != expected {
        return Err(ModelError::TensorShape {
            name: info.name().to_owned(),
            actual: info.dims().to_vec(),
            expected: expected.to_vec(),
        });
    }
    Ok(())
}

/// Where a tensor's bytes lie in the file, checked against the file once.
fn byte_range(file: &GgufFile, info: &TensorInfo) -> Result<Range<usize>, ModelError> {
    let data = file.tensor_data(info)?;
    // tensor_data succeeded, so the offset fits in the file and in a usize.
    let start = usize::try_from(info.absolute_offset()).unwrap_or(usize::MAX);
    Ok(start..start.saturating_add(data.len()))
}

/// A vector tensor of `len` values (a norm weight, a bias), dequantized to `f32`.
pub fn vector(file: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
    let info = tensor(file, name)?;
    if file.is_rewritten(name) {
        return Err(ModelError::Repacked(name.to_owned()));
    }
    check_shape(info, &[len as u64])?;
    let mut out = vec![0.0; len];
    kernels::quant::dequantize_row(info.ggml_type(), file.tensor_data(info)?, &mut out)?;
    Ok(out)
}

/// [`vector`], or `None` when the file has no tensor of that name.
pub fn vector_opt(file: &GgufFile, name: &str, len: usize) -> Result<Option<Vec<f32>>, ModelError> {
    match file.tensor(name) {
        Some(_) => vector(file, name, len).map(Some),
        None => Ok(None),
    }
}

/// A weight matrix of `rows` rows of `cols` values, left in the file, with an optional
/// bias added after the product.
#[derive(Debug, Clone)]
pub struct Linear {
    range: Range<usize>,
    /// How the rows lie: as the file stores them, or repacked at load
    /// ([`super::repack`]).
    layout: Layout,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    bias: Option<Vec<f32>>,
}

impl Linear {
    /// `{prefix}.weight` (ggml dims `[cols, rows]`) and `{prefix}.bias` if present.
    pub fn load(
        file: &GgufFile,
        prefix: &str,
        cols: usize,
        rows: usize,
    ) -> Result<Self, ModelError> {
        let info = tensor(file, &format!("{prefix}.weight"))?;
        Self::from_info(
            file,
            info,
            cols,
            rows,
            vector_opt(file, &format!("{prefix}.bias"), rows)?,
        )
    }

    /// The matrix `name` (no bias).
    pub fn load_weight(
        file: &GgufFile,
        name: &str,
        cols: usize,
        rows: usize,
    ) -> Result<Self, ModelError> {
        Self::from_info(file, tensor(file, name)?, cols, rows, None)
    }

    fn from_info(
        file: &GgufFile,
        info: &TensorInfo,
        cols: usize,
        rows: usize,
        bias: Option<Vec<f32>>,
    ) -> Result<Self, ModelError> {
        check_shape(info, &[cols as u64, rows as u64])?;
        let ty = info.ggml_type();
        if !matmul::supported(ty) || !cols.is_multiple_of(ty.block_size()) {
            return Err(ModelError::UnsupportedType {
                name: info.name().to_owned(),
                ty,
            });
        }
        let layout = if file.is_rewritten(info.name()) {
            Layout::Rows8
        } else {
            Layout::Rows
        };
        Ok(Self {
            range: byte_range(file, info)?,
            layout,
            ty,
            rows,
            cols,
            bias,
        })
    }

    /// The experts of a mixture: `name` holds `n_expert` matrices of `rows` × `cols`
    /// back to back (ggml dims `[cols, rows, n_expert]`), one [`Linear`] each, all left
    /// in the file.
    pub fn load_experts(
        file: &GgufFile,
        name: &str,
        cols: usize,
        rows: usize,
        n_expert: usize,
    ) -> Result<Vec<Self>, ModelError> {
        let info = tensor(file, name)?;
        check_shape(info, &[cols as u64, rows as u64, n_expert as u64])?;
        let ty = info.ggml_type();
        if !matmul::supported(ty) || !cols.is_multiple_of(ty.block_size()) {
            return Err(ModelError::UnsupportedType {
                name: info.name().to_owned(),
                ty,
            });
        }
        let range = byte_range(file, info)?;
        let bytes = rows * (cols / ty.block_size() * ty.type_size());
        Ok((0..n_expert)
            .map(|e| {
                let start = range.start + e * bytes;
                Self {
                    range: start..start + bytes,
                    layout: Layout::Rows,
                    ty,
                    rows,
                    cols,
                    bias: None,
                }
            })
            .collect())
    }

    /// `out[t] = W x[t]` for `n` tokens routed to this expert ([`Cpu::matmul_gathered`]).
    pub fn forward_gathered(
        &self,
        cpu: &mut Cpu,
        file: &GgufFile,
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        cpu.matmul_gathered(self.weights(file), x, n, out)
    }

    /// `out[t] = [W_0 x[t] (+ b_0) | W_1 x[t] (+ b_1) | ...]` for matrices that multiply
    /// the same activations (queries, keys and values; gate and up), in one product
    /// when they can share one ([`matmul::stackable`], one row length). Returns false,
    /// with `out` untouched, when they cannot: the caller multiplies them one by one.
    pub fn forward_stacked(
        linears: &[&Linear],
        cpu: &mut Cpu,
        file: &GgufFile,
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) -> Result<bool, ModelError> {
        let Some(first) = linears.first() else {
            return Ok(false);
        };
        let shared = linears.len() <= matmul::MAX_STACK
            && matmul::stackable(first.ty)
            && linears
                .iter()
                .all(|l| l.ty == first.ty && l.cols == first.cols);
        if !shared {
            return Ok(false);
        }
        let mut parts = [first.weights(file); matmul::MAX_STACK];
        for (slot, l) in parts.iter_mut().zip(linears) {
            *slot = l.weights(file);
        }
        cpu.matmul_stacked(&parts[..linears.len()], x, n, out)?;
        let total: usize = linears.iter().map(|l| l.rows).sum();
        let mut first_row = 0;
        for l in linears {
            if let Some(b) = &l.bias {
                for row in out.chunks_exact_mut(total) {
                    kernels::ops::add_assign(&mut row[first_row..first_row + l.rows], b);
                }
            }
            first_row += l.rows;
        }
        Ok(true)
    }

    /// The matrix's bytes in `file`, as the kernels take them.
    fn weights<'f>(&self, file: &'f GgufFile) -> Weights<'f> {
        Weights {
            bytes: &file.bytes()[self.range.clone()],
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
            layout: self.layout,
        }
    }

    /// The matrix cut by rows into `N` matrices of `parts[i]` rows (summing to
    /// [`Linear::rows`]), each with its share of the bias: how a fused projection (Q, K
    /// and V, or gate and up, stacked) is used. Each output row is the same dot product
    /// as in the whole matrix, so the cut changes no bit.
    pub fn split_rows<const N: usize>(&self, parts: [usize; N]) -> [Linear; N] {
        debug_assert_eq!(parts.iter().sum::<usize>(), self.rows);
        let row_bytes = self.cols / self.ty.block_size() * self.ty.type_size();
        let mut first = 0;
        parts.map(|rows| {
            let start = self.range.start + first * row_bytes;
            // A repacked matrix's groups of eight rows are split whole when the parts are
            // whole groups; the product refuses any other cut with a clear error.
            let part = Linear {
                range: start..start + rows * row_bytes,
                layout: self.layout,
                ty: self.ty,
                rows,
                cols: self.cols,
                bias: self.bias.as_ref().map(|b| b[first..first + rows].to_vec()),
            };
            first += rows;
            part
        })
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The matrix as the file stores it, for uploading to another device: its bytes
    /// (refused when repacked for the CPU kernels) and type.
    pub fn file_bytes<'f>(&self, file: &'f GgufFile) -> Result<(&'f [u8], GgmlType), ModelError> {
        if self.layout != Layout::Rows {
            return Err(ModelError::Repacked(format!(
                "a {}x{} matrix",
                self.rows, self.cols
            )));
        }
        Ok((&file.bytes()[self.range.clone()], self.ty))
    }

    /// The bytes of `parts` together, which must lie back to back in the file with one
    /// type (the experts of one `*_exps` tensor, as [`Linear::load_experts`] cuts it),
    /// for uploading a stack of experts at once.
    pub fn stacked_file_bytes<'a, 'f>(
        file: &'f GgufFile,
        parts: impl IntoIterator<Item = &'a Linear>,
    ) -> Result<(&'f [u8], GgmlType), ModelError> {
        let mut stacked: Option<(Range<usize>, GgmlType)> = None;
        for part in parts {
            part.file_bytes(file)?;
            stacked = match stacked {
                None => Some((part.range.clone(), part.ty)),
                Some((range, ty)) if range.end == part.range.start && ty == part.ty => {
                    Some((range.start..part.range.end, ty))
                }
                Some(_) => return Err(ModelError::NotOnGpu("experts stored apart")),
            };
        }
        let (range, ty) = stacked.ok_or(ModelError::NotOnGpu("mixtures without experts"))?;
        Ok((&file.bytes()[range], ty))
    }

    /// The bias added after the product, if any.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }

    /// Whether this matrix is `other` (an output head tied to the embeddings).
    pub fn same_bytes(&self, other: &Embedding) -> bool {
        self.range == other.range
    }

    /// `out[t] = W x[t] (+ b)` for `n` tokens.
    pub fn forward(
        &self,
        cpu: &mut Cpu,
        file: &GgufFile,
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        cpu.matmul(self.weights(file), x, n, out)?;
        if let Some(b) = &self.bias {
            for row in out.chunks_exact_mut(self.rows) {
                kernels::ops::add_assign(row, b);
            }
        }
        Ok(())
    }
}

/// The token embedding table: `n_vocab` rows of `n_embd` values, dequantized a row at a
/// time for the tokens of a batch.
#[derive(Debug, Clone)]
pub struct Embedding {
    /// The tensor's name, for errors.
    name: String,
    range: Range<usize>,
    /// As the file stores it, or repacked at load when the table is also the output head
    /// ([`super::repack`]): a row is then read out of its group of eight.
    layout: Layout,
    ty: GgmlType,
    n_embd: usize,
    n_vocab: usize,
    row_bytes: usize,
}

impl Embedding {
    /// The table `name`, ggml dims `[n_embd, n_vocab]`.
    pub fn load(file: &GgufFile, name: &str, n_embd: usize) -> Result<Self, ModelError> {
        let info = tensor(file, name)?;
        let layout = if file.is_rewritten(name) {
            Layout::Rows8
        } else {
            Layout::Rows
        };
        let n_vocab = info.dims().get(1).copied().unwrap_or(0);
        check_shape(info, &[n_embd as u64, n_vocab])?;
        let ty = info.ggml_type();
        if !kernels::quant::can_dequantize(ty) || !n_embd.is_multiple_of(ty.block_size()) {
            return Err(ModelError::UnsupportedType {
                name: name.to_owned(),
                ty,
            });
        }
        Ok(Self {
            name: name.to_owned(),
            range: byte_range(file, info)?,
            layout,
            ty,
            n_embd,
            n_vocab: usize::try_from(n_vocab).unwrap_or(usize::MAX),
            row_bytes: n_embd / ty.block_size() * ty.type_size(),
        })
    }

    /// Vocabulary size.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// The table's bytes in `file` (refused when repacked for the CPU kernels) and their
    /// type, for uploading to another device.
    pub fn file_bytes<'f>(&self, file: &'f GgufFile) -> Result<(&'f [u8], GgmlType), ModelError> {
        if self.layout != Layout::Rows {
            return Err(ModelError::Repacked(self.name.clone()));
        }
        Ok((&file.bytes()[self.range.clone()], self.ty))
    }

    /// Writes the embedding of `token` into `out` (`n_embd` values).
    pub fn lookup(&self, file: &GgufFile, token: u32, out: &mut [f32]) -> Result<(), ModelError> {
        let t = token as usize;
        if t >= self.n_vocab {
            return Err(ModelError::TokenOutOfRange {
                token,
                n_vocab: self.n_vocab,
            });
        }
        let out = &mut out[..self.n_embd];
        if self.layout == Layout::Rows8 {
            let group_bytes = ROWS * self.row_bytes;
            let start = self.range.start + t / ROWS * group_bytes;
            let group = &file.bytes()[start..start + group_bytes];
            return kernels::repack::dequantize_packed_row(
                self.ty,
                self.n_embd,
                group,
                t % ROWS,
                out,
            )
            .map_err(|e| ModelError::Repack {
                name: self.name.clone(),
                source: e,
            });
        }
        let start = self.range.start + t * self.row_bytes;
        let bytes = &file.bytes()[start..start + self.row_bytes];
        kernels::quant::dequantize_row(self.ty, bytes, out)?;
        Ok(())
    }

    /// The same table as a matrix, for an output head tied to the embeddings.
    pub fn as_linear(&self) -> Result<Linear, ModelError> {
        if !matmul::supported(self.ty) {
            return Err(ModelError::UnsupportedType {
                name: "token_embd.weight (as output head)".to_owned(),
                ty: self.ty,
            });
        }
        Ok(Linear {
            range: self.range.clone(),
            layout: self.layout,
            ty: self.ty,
            rows: self.n_vocab,
            cols: self.n_embd,
            bias: None,
        })
    }
}

#[cfg(test)]
mod tests {
    /// The estimate counts the kernels' widened F16 rows with its own copy of their bound.
    #[test]
    fn the_estimate_knows_the_kernels_widening_bound() {
        assert_eq!(
            plan::compute::WIDE_ROWS_BYTES,
            kernels::matmul::WIDE_MAX * size_of::<f32>()
        );
    }
}
