//! Quantized weight matrices on the device and the two kernels that read them: the
//! matrix product `y[t][r] = Σ_i W[r][i]·x[t][i]` and `get_rows`, the embedding lookup.
//!
//! The weights keep their GGUF blocks; each kernel is `common.wgsl` (byte access), one
//! weight-type file (the block layout and its `dequant32`) and the kernel body, so a new
//! type is one small WGSL file and one [`WeightType`] arm.

use ggml_type::GgmlType;

use crate::buffer::GpuBuffer;
use crate::device::Gpu;
use crate::error::{GpuError, Result};
use crate::int_dot::Q8Activations;
use crate::kernel::{Dispatch, Params, to_u32};

const COMMON: &str = include_str!("shaders/common.wgsl");
const MATMUL: &str = include_str!("shaders/matmul.wgsl");
const MATMUL_Q8: &str = include_str!("shaders/matmul_q8.wgsl");
const GET_ROWS: &str = include_str!("shaders/get_rows.wgsl");
/// Tokens per workgroup in `matmul.wgsl` (its `TOKENS`).
const MATMUL_TOKENS: u32 = 8;
/// Rows per workgroup in `matmul.wgsl` (its `ROWS`).
const MATMUL_ROWS: u32 = 8;

/// The GGML weight types the GPU kernels read, each with its WGSL block decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightType {
    /// Plain f32.
    F32,
    /// IEEE half.
    F16,
    /// `block_q4_0`.
    Q4_0,
    /// `block_q4_1`.
    Q4_1,
    /// `block_q5_0`.
    Q5_0,
    /// `block_q8_0`.
    Q8_0,
    /// `block_q4_K`.
    Q4K,
    /// `block_q5_K`.
    Q5K,
    /// `block_q6_K`.
    Q6K,
}

impl WeightType {
    /// Every type with a kernel, for tests and capability reports.
    pub const ALL: [Self; 9] = [
        Self::F32,
        Self::F16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q8_0,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
    ];

    /// The GPU type for a GGML type, or an error naming a type without a kernel.
    pub fn from_ggml(ty: GgmlType) -> Result<Self> {
        Ok(match ty {
            GgmlType::F32 => Self::F32,
            GgmlType::F16 => Self::F16,
            GgmlType::Q4_0 => Self::Q4_0,
            GgmlType::Q4_1 => Self::Q4_1,
            GgmlType::Q5_0 => Self::Q5_0,
            GgmlType::Q8_0 => Self::Q8_0,
            GgmlType::Q4_K => Self::Q4K,
            GgmlType::Q5_K => Self::Q5K,
            GgmlType::Q6_K => Self::Q6K,
            other => return Err(GpuError::UnsupportedType { ty: other.name() }),
        })
    }

    /// The GGML type it decodes.
    pub fn ggml(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::Q4_0 => GgmlType::Q4_0,
            Self::Q4_1 => GgmlType::Q4_1,
            Self::Q5_0 => GgmlType::Q5_0,
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q4K => GgmlType::Q4_K,
            Self::Q5K => GgmlType::Q5_K,
            Self::Q6K => GgmlType::Q6_K,
        }
    }

    fn decoder(self) -> &'static str {
        match self {
            Self::F32 => include_str!("shaders/f32.wgsl"),
            Self::F16 => include_str!("shaders/f16.wgsl"),
            Self::Q4_0 => include_str!("shaders/q4_0.wgsl"),
            Self::Q4_1 => include_str!("shaders/q4_1.wgsl"),
            Self::Q5_0 => include_str!("shaders/q5_0.wgsl"),
            Self::Q8_0 => include_str!("shaders/q8_0.wgsl"),
            Self::Q4K => include_str!("shaders/q4_k.wgsl"),
            Self::Q5K => include_str!("shaders/q5_k.wgsl"),
            Self::Q6K => include_str!("shaders/q6_k.wgsl"),
        }
    }

    /// Whether the integer-dot matmul ([`Gpu::matmul_q8`]) reads this type: the types
    /// whose runs of 32 weights are small integers under one scale and one offset.
    pub fn int_dot(self) -> bool {
        matches!(
            self,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q8_0 | Self::Q4K
        )
    }

    /// Values a row length must be a multiple of: the block size, and at least 32
    /// because the kernels decode runs of 32 values (so F32 and F16 rows too).
    pub fn row_multiple(self) -> usize {
        self.ggml().block_size().max(32)
    }
}

/// A weight matrix of `rows` rows of `cols` values on the device, in its GGUF blocks.
///
/// A matrix larger than the device binds at once (lavapipe: 128 MiB; Gemma 3 270M's Q8_0
/// embedding table is 178 MB) is held in parts of whole rows, each its own buffer; the
/// kernels run once per part.
#[derive(Debug)]
pub struct GpuMatrix {
    parts: Vec<MatrixPart>,
    ty: WeightType,
    rows: usize,
    cols: usize,
    /// Rows of one expert when the matrix stacks a mixture's experts (all rows
    /// otherwise): no part splits an expert.
    expert_rows: usize,
}

/// Rows `first_row..first_row + rows` of a matrix, in one buffer.
#[derive(Debug)]
struct MatrixPart {
    buffer: GpuBuffer,
    first_row: usize,
    rows: usize,
}

/// What a matrix product multiplies: f32 activations, or activations quantized to 8
/// bits for the integer dot product ([`crate::int_dot`]).
#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    F32(&'a GpuBuffer),
    Q8(&'a Q8Activations),
}

impl GpuMatrix {
    /// Its weight type.
    pub fn weight_type(&self) -> WeightType {
        self.ty
    }

    /// Rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows of one expert of a stack ([`Gpu::upload_experts`]); all of them for a plain
    /// matrix.
    pub fn expert_rows(&self) -> usize {
        self.expert_rows
    }

    /// Experts stacked in it ([`Gpu::upload_experts`]); 1 for a plain matrix.
    pub fn experts(&self) -> usize {
        self.rows / self.expert_rows
    }

    /// Buffers it is held in (one unless it is larger than one binding).
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Bytes of device memory its buffers take.
    pub fn allocated_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buffer.allocated_bytes()).sum()
    }
}

fn shape_error(kernel: &'static str, detail: String) -> GpuError {
    GpuError::Shape { kernel, detail }
}

/// Checks that `x` holds `n_tokens` inputs of a `rows × cols` product and `y` its outputs.
fn check_product(
    kernel: &'static str,
    (rows, cols): (usize, usize),
    x: &GpuBuffer,
    n_tokens: usize,
    y: &GpuBuffer,
) -> Result<()> {
    if x.len_words() < n_tokens * cols || y.len_words() < n_tokens * rows {
        return Err(shape_error(
            kernel,
            format!(
                "{n_tokens} tokens of a {rows}x{cols} matrix need {} inputs and {} outputs, \
                 the buffers hold {} and {}",
                n_tokens * cols,
                n_tokens * rows,
                x.len_words(),
                y.len_words()
            ),
        ));
    }
    Ok(())
}

impl Gpu {
    /// Uploads a GGUF tensor of `rows × cols` values of type `ty`, its bytes unchanged,
    /// in as few buffers as the device's binding limit allows.
    pub fn upload_matrix(
        &self,
        what: &str,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<GpuMatrix> {
        self.upload_matrix_in_parts(what, (ty, rows, cols), bytes, self.max_binding_bytes())
    }

    /// [`Gpu::upload_matrix`] with parts of at most `part_bytes` (tests split small
    /// matrices this way).
    #[doc(hidden)]
    pub fn upload_matrix_in_parts(
        &self,
        what: &str,
        (ty, rows, cols): (GgmlType, usize, usize),
        bytes: &[u8],
        part_bytes: u64,
    ) -> Result<GpuMatrix> {
        let mut matrix = self.upload_grouped(what, (ty, rows, cols), bytes, part_bytes, 1)?;
        matrix.expert_rows = rows;
        Ok(matrix)
    }

    /// The `n_expert` experts of a mixture, each `rows × cols` of type `ty`, stacked in
    /// `bytes` as a GGUF `*_exps` tensor stores them: one matrix of `n_expert · rows` rows
    /// whose parts (when it is larger than one binding) hold whole experts, multiplied
    /// one expert at a time by [`Gpu::matmul_expert`].
    pub fn upload_experts(
        &self,
        what: &str,
        ty: GgmlType,
        (n_expert, rows, cols): (usize, usize, usize),
        bytes: &[u8],
    ) -> Result<GpuMatrix> {
        self.upload_experts_in_parts(
            what,
            ty,
            (n_expert, rows, cols),
            bytes,
            self.max_binding_bytes(),
        )
    }

    /// [`Gpu::upload_experts`] with parts of at most `part_bytes` (tests split small
    /// stacks this way).
    #[doc(hidden)]
    pub fn upload_experts_in_parts(
        &self,
        what: &str,
        ty: GgmlType,
        (n_expert, rows, cols): (usize, usize, usize),
        bytes: &[u8],
        part_bytes: u64,
    ) -> Result<GpuMatrix> {
        if rows == 0 || n_expert == 0 {
            return Err(shape_error(
                "upload_experts",
                format!("{what}: {n_expert} experts of {rows} rows hold nothing"),
            ));
        }
        let total = n_expert.checked_mul(rows).ok_or_else(|| {
            shape_error(
                "upload_experts",
                format!("{what}: {n_expert} × {rows} rows overflow"),
            )
        })?;
        self.upload_grouped(what, (ty, total, cols), bytes, part_bytes, rows)
    }

    /// Uploads in parts of at most `part_bytes`, each a whole number of groups of
    /// `group_rows` rows.
    fn upload_grouped(
        &self,
        what: &str,
        (ty, rows, cols): (GgmlType, usize, usize),
        bytes: &[u8],
        part_bytes: u64,
        group_rows: usize,
    ) -> Result<GpuMatrix> {
        let wt = WeightType::from_ggml(ty)?;
        if cols == 0 || !cols.is_multiple_of(wt.row_multiple()) {
            return Err(shape_error(
                "upload_matrix",
                format!(
                    "{what}: rows of {cols} values are not a whole number of {} (type {})",
                    wt.row_multiple(),
                    ty.name()
                ),
            ));
        }
        let row_bytes = cols / ty.block_size() * ty.type_size();
        if rows.checked_mul(row_bytes) != Some(bytes.len()) {
            return Err(shape_error(
                "upload_matrix",
                format!(
                    "{what}: {} bytes given for {rows} rows of {row_bytes} bytes",
                    bytes.len()
                ),
            ));
        }
        let fit = usize::try_from(part_bytes / row_bytes as u64).unwrap_or(usize::MAX);
        let rows_per_part = (fit - fit % group_rows).min(rows);
        if rows_per_part == 0 {
            let what = match group_rows {
                1 => format!("one row of {what}"),
                _ => format!("one expert of {what}"),
            };
            return Err(GpuError::TooLarge {
                what,
                bytes: (row_bytes * group_rows) as u64,
                limit: part_bytes,
            });
        }
        let parts = bytes
            .chunks(rows_per_part * row_bytes)
            .zip((0..rows).step_by(rows_per_part))
            .map(|(chunk, first_row)| {
                Ok(MatrixPart {
                    buffer: self.upload_bytes(what, chunk)?,
                    first_row,
                    rows: chunk.len() / row_bytes,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if parts.len() > 1 {
            tracing::debug!(
                what,
                parts = parts.len(),
                "matrix split by rows over buffers"
            );
        }
        Ok(GpuMatrix {
            parts,
            ty: wt,
            rows,
            expert_rows: group_rows,
            cols,
        })
    }

    /// `y[t][r] = Σ_i W[r][i]·x[t][i]` for `n_tokens` tokens: `x` holds `n_tokens × cols`
    /// f32 values, `y` receives `n_tokens × rows`. The weights are dequantized inside the
    /// kernel and the sums are f32.
    pub fn matmul(
        &self,
        w: &GpuMatrix,
        x: &GpuBuffer,
        n_tokens: usize,
        y: &GpuBuffer,
    ) -> Result<()> {
        check_product("matmul", (w.rows, w.cols), x, n_tokens, y)?;
        self.matmul_parts(w, Input::F32(x), n_tokens, y)
    }

    /// Every part of `w` times `x` into `y` (`n_tokens × rows` outputs, checked here;
    /// the caller checks `x`).
    pub(crate) fn matmul_parts(
        &self,
        w: &GpuMatrix,
        x: Input<'_>,
        n_tokens: usize,
        y: &GpuBuffer,
    ) -> Result<()> {
        if y.len_words() < n_tokens * w.rows {
            return Err(shape_error(
                "matmul",
                format!(
                    "{n_tokens} tokens of {} outputs do not fit {} values",
                    w.rows,
                    y.len_words()
                ),
            ));
        }
        for part in &w.parts {
            self.matmul_rows(
                w,
                part,
                (0, part.rows),
                x,
                n_tokens,
                (part.first_row, w.rows),
                y,
            )?;
        }
        Ok(())
    }

    /// [`Gpu::matmul`] by expert `expert` of a stack of experts ([`Gpu::upload_experts`]):
    /// `y` receives `n_tokens` rows of one expert's output width.
    pub fn matmul_expert(
        &self,
        w: &GpuMatrix,
        expert: usize,
        x: &GpuBuffer,
        n_tokens: usize,
        y: &GpuBuffer,
    ) -> Result<()> {
        const KERNEL: &str = "matmul_expert";
        let rows = w.expert_rows;
        if expert >= w.experts() {
            return Err(shape_error(
                KERNEL,
                format!("expert {expert} is past the last of {}", w.experts()),
            ));
        }
        check_product(KERNEL, (rows, w.cols), x, n_tokens, y)?;
        let first = expert * rows;
        let part = (w.parts.iter())
            .find(|p| (p.first_row..p.first_row + p.rows).contains(&first))
            .ok_or_else(|| shape_error(KERNEL, format!("no part holds row {first}")))?;
        self.matmul_rows(
            w,
            part,
            (first - part.first_row, rows),
            Input::F32(x),
            n_tokens,
            (0, rows),
            y,
        )
    }

    /// Rows `w_row0..w_row0 + rows` of `part` times `x`, written at column `y_row0` of
    /// output rows `y_stride` wide.
    #[allow(clippy::too_many_arguments)]
    fn matmul_rows(
        &self,
        w: &GpuMatrix,
        part: &MatrixPart,
        (w_row0, rows): (usize, usize),
        x: Input<'_>,
        n_tokens: usize,
        (y_row0, y_stride): (usize, usize),
        y: &GpuBuffer,
    ) -> Result<()> {
        const KERNEL: &str = "matmul";
        if n_tokens == 0 {
            return Ok(());
        }
        let n = to_u32(KERNEL, "tokens", n_tokens)?;
        let (pipeline, inputs) = match x {
            Input::F32(x) => {
                let name = format!("matmul_{:?}", w.ty);
                let source = || [COMMON, w.ty.decoder(), MATMUL].join("\n");
                (self.pipeline(&name, source)?, vec![x])
            }
            Input::Q8(x) => {
                let name = format!("matmul_q8_{:?}", w.ty);
                let source = || [COMMON, w.ty.decoder(), MATMUL_Q8].join("\n");
                (self.pipeline(&name, source)?, vec![&x.q, &x.s])
            }
        };
        let mut buffers = vec![&part.buffer];
        buffers.extend(inputs);
        buffers.push(y);
        let rows = to_u32(KERNEL, "rows", rows)?;
        let [gx, gy] = self.grid(rows.div_ceil(MATMUL_ROWS));
        self.dispatch(
            &pipeline,
            Dispatch {
                kernel: KERNEL,
                buffers: &buffers,
                params: Params::default()
                    .u32(rows)
                    .u32(to_u32(KERNEL, "cols", w.cols)?)
                    .u32(n)
                    .u32(to_u32(KERNEL, "first row", y_row0)?)
                    .u32(to_u32(KERNEL, "rows", y_stride)?)
                    .u32(to_u32(KERNEL, "weight row", w_row0)?),
                workgroups: [gx, gy, n.div_ceil(MATMUL_TOKENS)],
            },
        )
    }

    /// `out[t] = W[ids[t]]` dequantized to f32: the embedding lookup. `out` receives
    /// `ids.len() × cols` values; an id past the last row is refused.
    pub fn get_rows(&self, w: &GpuMatrix, ids: &[u32], out: &GpuBuffer) -> Result<()> {
        const KERNEL: &str = "get_rows";
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= w.rows) {
            return Err(shape_error(
                KERNEL,
                format!("token id {bad} is past the last of {} rows", w.rows),
            ));
        }
        if out.len_words() < ids.len() * w.cols {
            return Err(shape_error(
                KERNEL,
                format!(
                    "{} rows of {} values do not fit an output of {}",
                    ids.len(),
                    w.cols,
                    out.len_words()
                ),
            ));
        }
        if ids.is_empty() {
            return Ok(());
        }
        let n = to_u32(KERNEL, "ids", ids.len())?;
        let ids = self.upload_u32("token ids", ids)?;
        let name = format!("get_rows_{:?}", w.ty);
        let pipeline = self.pipeline(&name, || [COMMON, w.ty.decoder(), GET_ROWS].join("\n"))?;
        let [gx, gy] = self.grid(n);
        for part in &w.parts {
            self.dispatch(
                &pipeline,
                Dispatch {
                    kernel: KERNEL,
                    buffers: &[&part.buffer, &ids, out],
                    params: Params::default()
                        .u32(to_u32(KERNEL, "rows", part.rows)?)
                        .u32(to_u32(KERNEL, "cols", w.cols)?)
                        .u32(n)
                        .u32(to_u32(KERNEL, "first row", part.first_row)?),
                    workgroups: [gx, gy, 1],
                },
            )?;
        }
        Ok(())
    }
}
