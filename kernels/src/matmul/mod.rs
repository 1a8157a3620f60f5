//! Matrix-vector and matrix-matrix products over quantized weights.
//!
//! [`matmul`] computes `out[t][r] = dot(W[r], x[t])` for a weight matrix `W` of `rows` rows
//! of `cols` values (any type [`supported`]) and `n_tokens` f32 activation rows. It
//! quantizes the activations once per call into the caller's [`MatmulScratch`], in the
//! partner type of the weights (Q8_0, Q8_1, Q8_K, or f32 for float weights), then splits
//! the output rows over the pool. Each task takes a run of rows and walks the tokens in
//! tiles of eight, so a weight block is read and decoded once per tile; its rows stay in
//! cache while the tiles pass.
//!
//! Every dot adds in llama.cpp's order (see [`crate::dot::scalar`]), so a product gives
//! llama.cpp's bits whatever the tiling and the thread count.
//!
//! [`matmul_fast`] is the same product in fast numerics (see [`crate::cpu::Numerics`]).
//! The 32-element block types and Q4_K/Q5_K/Q6_K add in the order their scalar twins
//! define ([`crate::dot::scalar_fast`], [`crate::dot::kfast`]): up to [`FAST_TILE`]
//! tokens through one-row kernels, more through the token-lane kernels
//! ([`crate::dot::lanes`]), which give the same bits. F32 and F16 weights take
//! [`crate::dot::float_tile`]'s tiles of several rows by several tokens; the other types
//! take the exact kernels. Weights repacked at load in groups of eight rows
//! ([`Layout::Rows8`], [`crate::repack`]) go through the eight-row kernels for every batch
//! size, up to [`FAST_TILE`] tokens at a time, with the same bits.
//!
//! A call allocates nothing once the scratch has grown to the largest shape it has seen.

use thiserror::Error;

use crate::GgmlType;
use crate::arch::cast::{Pod, as_blocks, as_blocks_mut, as_bytes_mut};
use crate::arch::scoped::{Split, SplitPart};
use crate::cpu::{Isa, Numerics};
use crate::dot::{FastDot, ROWS8, VecDot, kind};
use crate::pool::ThreadPool;

/// The `tile` (1..=4) activation rows from `t` (`$a(t)`), with their two terms (`$d(t)`
/// and `$s(t)`), as arrays, for a kernel call that takes `N` rows.
macro_rules! by_tile {
    ($tile:expr, $t:expr, ($a:ident, $d:ident, $s:ident), |$ys:ident, $ds:ident, $ss:ident| $call:expr) => {{
        let t = $t;
        match $tile {
            4 => {
                let ($ys, $ds, $ss) = (
                    [$a(t), $a(t + 1), $a(t + 2), $a(t + 3)],
                    [$d(t), $d(t + 1), $d(t + 2), $d(t + 3)],
                    [$s(t), $s(t + 1), $s(t + 2), $s(t + 3)],
                );
                $call
            }
            3 => {
                let ($ys, $ds, $ss) = (
                    [$a(t), $a(t + 1), $a(t + 2)],
                    [$d(t), $d(t + 1), $d(t + 2)],
                    [$s(t), $s(t + 1), $s(t + 2)],
                );
                $call
            }
            2 => {
                let ($ys, $ds, $ss) = ([$a(t), $a(t + 1)], [$d(t), $d(t + 1)], [$s(t), $s(t + 1)]);
                $call
            }
            _ => {
                let ($ys, $ds, $ss) = ([$a(t)], [$d(t)], [$s(t)]);
                $call
            }
        }
    }};
}

mod float;
mod kfast;
mod lanes;
mod packed;

pub use float::WIDE_MAX;
pub use packed::Layout;
use packed::check_layout;

/// Activation rows per tile of the batched product.
pub const TOKEN_TILE: usize = 8;

/// Activation rows per tile of [`matmul_fast`]'s one-row kernels; a decode step of up to
/// this many rows also quantizes its activations without the pool. More rows go to the
/// token-lane kernels ([`crate::dot::lanes`]).
pub const FAST_TILE: usize = 4;

/// Tasks per thread of a product of up to [`FAST_TILE`] tokens: two, so that a thread
/// held up (the cores are shared with the server) leaves the other thread work to take.
const STREAM_TASKS: usize = 2;

/// The fewest activation rows [`matmul_fast`] multiplies in token-lane tiles.
const LANES_FROM: usize = ggml_type::scratch::LANES_FROM;
const _: () = assert!(LANES_FROM == FAST_TILE + 1);

/// Why a product cannot run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MatmulError {
    /// No dot product exists for this weight type.
    #[error("matrix products over {0} weights are not supported")]
    UnsupportedType(GgmlType),
    /// A row length is not a whole number of blocks.
    #[error("a row of {cols} values is not a whole number of {ty} blocks")]
    PartialBlock {
        /// Weight type.
        ty: GgmlType,
        /// Row length.
        cols: usize,
    },
    /// A buffer does not have the size the shape implies.
    #[error("{what} has {actual} elements, the shape needs {expected}")]
    Size {
        /// Which buffer.
        what: &'static str,
        /// Its length.
        actual: usize,
        /// The length the shape needs.
        expected: usize,
    },
    /// The weight bytes are not aligned for their block type.
    #[error("{0} weight bytes are not aligned for their block type")]
    Misaligned(GgmlType),
    /// A stacked product's matrices cannot be stacked.
    #[error("cannot stack these matrices into one product: {0}")]
    Stack(&'static str),
    /// The weights were repacked into a layout this product cannot read.
    #[error("{ty} weights repacked into eight-row groups cannot be multiplied here: {why}")]
    Layout {
        /// The weight type.
        ty: GgmlType,
        /// What does not fit.
        why: &'static str,
    },
}

/// A weight matrix: `rows` rows of `cols` values of type `ty`, in `layout`.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    /// The tensor's bytes.
    pub bytes: &'a [u8],
    /// Element type.
    pub ty: GgmlType,
    /// Number of rows (output features).
    pub rows: usize,
    /// Values per row (input features).
    pub cols: usize,
    /// How the rows are laid out.
    pub layout: Layout,
}

/// Reusable space for the quantized activations of [`matmul`].
#[derive(Debug, Default)]
pub struct MatmulScratch {
    words: Vec<u32>,
}

impl MatmulScratch {
    /// An empty scratch; the first product sizes it.
    pub fn new() -> Self {
        Self::default()
    }

    /// A scratch already large enough for `n_tokens` rows of `cols` activations
    /// multiplying weights of type `ty`.
    pub fn for_shape(ty: GgmlType, cols: usize, n_tokens: usize) -> Self {
        let mut scratch = Self::new();
        scratch.reserve(activation_bytes(ty, cols, n_tokens));
        scratch
    }

    /// A scratch of `bytes` bytes (see [`activation_bytes`]), allocated now.
    pub fn with_bytes(bytes: usize) -> Self {
        let mut scratch = Self::new();
        scratch.reserve(bytes);
        scratch
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.words.len() * 4
    }

    fn reserve(&mut self, bytes: usize) {
        let words = bytes.div_ceil(4);
        if self.words.len() < words {
            self.words.resize(words, 0);
        }
    }
}

/// True when [`matmul`] supports weights of this type.
pub fn supported(ty: GgmlType) -> bool {
    partner(ty).is_some()
}

/// The activation type weights of type `ty` multiply with ([`GgmlType::vec_dot_type`]).
pub fn partner(ty: GgmlType) -> Option<GgmlType> {
    ty.vec_dot_type()
}

/// Bytes of scratch [`matmul`] needs for this shape (0 for an unsupported type); the
/// formula lives with the types, where the memory estimate reads it too.
pub fn activation_bytes(ty: GgmlType, cols: usize, n_tokens: usize) -> usize {
    ggml_type::scratch::matmul_activation_bytes(ty, cols, n_tokens)
}

/// `out[t * rows + r] = dot(W[r], x[t * cols..])` for each token `t` and row `r`.
///
/// `x` holds `n_tokens` rows of `w.cols` values and `out` holds `n_tokens` rows of
/// `w.rows` values. Shapes are checked; the kernels run on `isa`.
pub fn matmul(
    pool: &ThreadPool,
    isa: Isa,
    w: Weights<'_>,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<(), MatmulError> {
    product(pool, isa, &[w], x, n_tokens, out, scratch, Order::Batch)
}

/// [`matmul`] in fast numerics: the same product, its float additions in another order
/// where a fast kernel exists (see the module's documentation).
pub fn matmul_fast(
    pool: &ThreadPool,
    isa: Isa,
    w: Weights<'_>,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<(), MatmulError> {
    product(pool, isa, &[w], x, n_tokens, out, scratch, Order::Fast)
}

/// [`matmul`] (or [`matmul_fast`], by `numerics`) of several matrices that multiply the
/// same activations, stacked by rows as if they were one: the query, key and value
/// projections, or the gate and up projections. `out` holds `n_tokens` rows of the
/// matrices' outputs side by side (`[t][part 0 | part 1 | ...]`). The activations are
/// quantized once and the rows of all the parts are shared out in one dispatch to the
/// pool, which is what a decode step of a small model pays for most; every output value
/// is the dot it is in a product of its own matrix, bit for bit.
///
/// The parts must have one quantized type ([`stackable`]) and one row length; at most
/// [`MAX_STACK`] of them.
#[allow(clippy::too_many_arguments)]
pub fn matmul_stacked(
    pool: &ThreadPool,
    isa: Isa,
    numerics: Numerics,
    parts: &[Weights<'_>],
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<(), MatmulError> {
    let first = parts.first().ok_or(MatmulError::Stack("no matrices"))?;
    if !stackable(first.ty) {
        return Err(MatmulError::UnsupportedType(first.ty));
    }
    let order = match numerics {
        Numerics::Exact => Order::Batch,
        Numerics::Fast => Order::Fast,
    };
    product(pool, isa, parts, x, n_tokens, out, scratch, order)
}

/// Most matrices [`matmul_stacked`] takes at once.
pub const MAX_STACK: usize = 4;

/// True when [`matmul_stacked`] takes matrices of this type: the quantized ones, whose
/// kernels do not depend on the number of rows (llama.cpp picks its F32 kernel by it).
pub fn stackable(ty: GgmlType) -> bool {
    supported(ty) && !matches!(ty, GgmlType::F32 | GgmlType::F16)
}

/// [`matmul`] for tokens gathered to one expert of a mixture of experts: llama.cpp's
/// `mul_mat_id` multiplies every row by `vec_dot`, never by llamafile's tiles, so F32
/// weights add in `ggml_vec_dot_f32`'s order whatever the batch (the quantized types add
/// the same way in both).
pub fn matmul_gathered(
    pool: &ThreadPool,
    isa: Isa,
    w: Weights<'_>,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<(), MatmulError> {
    product(pool, isa, &[w], x, n_tokens, out, scratch, Order::VecDot)
}

/// Which of llama.cpp's products a call reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// `mul_mat`: llamafile's tiles for F32 batches it takes.
    Batch,
    /// `mul_mat_id`: `vec_dot` always.
    VecDot,
    /// Fast numerics: [`FastDot`] kernels for a few tokens, else as `Batch`.
    Fast,
}

#[allow(clippy::too_many_arguments)]
fn product(
    pool: &ThreadPool,
    isa: Isa,
    parts: &[Weights<'_>],
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
    order: Order,
) -> Result<(), MatmulError> {
    let Some(w) = parts.first() else {
        return Err(MatmulError::Stack("no matrices"));
    };
    if parts.len() > MAX_STACK {
        return Err(MatmulError::Stack("more matrices than MAX_STACK"));
    }
    if parts.iter().any(|p| p.ty != w.ty || p.cols != w.cols) {
        return Err(MatmulError::Stack(
            "matrices of different types or row lengths",
        ));
    }
    let Some(act) = partner(w.ty) else {
        return Err(MatmulError::UnsupportedType(w.ty));
    };
    check_layout(parts, order)?;
    if !w.cols.is_multiple_of(w.ty.block_size()) || !w.cols.is_multiple_of(act.block_size()) {
        return Err(MatmulError::PartialBlock {
            ty: w.ty,
            cols: w.cols,
        });
    }
    let row_bytes = w.cols / w.ty.block_size() * w.ty.type_size();
    let rows: usize = parts.iter().map(|p| p.rows).sum();
    let weight_checks = parts
        .iter()
        .map(|p| ("weights", p.bytes.len(), p.rows.checked_mul(row_bytes)));
    let checks = [
        ("activations", x.len(), n_tokens.checked_mul(w.cols)),
        ("output", out.len(), n_tokens.checked_mul(rows)),
    ];
    for (what, actual, expected) in weight_checks.chain(checks) {
        let expected = expected.unwrap_or(usize::MAX);
        if actual != expected {
            return Err(MatmulError::Size {
                what,
                actual,
                expected,
            });
        }
    }
    scratch.reserve(activation_bytes(w.ty, w.cols, n_tokens));
    let product = Product {
        pool,
        isa,
        w: Weights { rows, ..*w },
        parts,
        x,
        n_tokens,
        order,
    };
    product.run_any(out, scratch)
}

impl Product<'_> {
    /// [`Product::run`] for the weight type, through [`VecDot::dot`].
    fn run_any(&self, out: &mut [f32], scratch: &mut MatmulScratch) -> Result<(), MatmulError> {
        let product = self;
        if self.w.layout == Layout::Rows8 {
            // `check_layout` let only the packable types through.
            return match self.w.ty {
                GgmlType::Q4_0 => product.run_packed::<kind::Q4_0>(out, scratch),
                GgmlType::Q4_1 => product.run_packed::<kind::Q4_1>(out, scratch),
                GgmlType::Q5_0 => product.run_packed::<kind::Q5_0>(out, scratch),
                _ => product.run_packed::<kind::Q8_0>(out, scratch),
            };
        }
        // Every batch size takes the fast kernels, so that a token's bits do not depend on
        // the batch it came in (a decode step beside another request's prompt).
        if self.order == Order::Fast && self.isa != Isa::Scalar {
            match self.w.ty {
                GgmlType::Q4_0 => return product.run_fast::<kind::Q4_0>(out, scratch),
                GgmlType::Q4_1 => return product.run_fast::<kind::Q4_1>(out, scratch),
                GgmlType::Q5_0 => return product.run_fast::<kind::Q5_0>(out, scratch),
                GgmlType::Q5_1 => return product.run_fast::<kind::Q5_1>(out, scratch),
                GgmlType::Q8_0 => return product.run_fast::<kind::Q8_0>(out, scratch),
                GgmlType::IQ4_NL => return product.run_fast::<kind::IQ4_NL>(out, scratch),
                GgmlType::Q4_K => return product.run_fast_k::<kind::Q4_K>(out, scratch),
                GgmlType::Q5_K => return product.run_fast_k::<kind::Q5_K>(out, scratch),
                GgmlType::Q6_K => return product.run_fast_k::<kind::Q6_K>(out, scratch),
                GgmlType::F32 => return product.run_float_fast::<f32>(out),
                GgmlType::F16 => return product.run_float_fast::<half::f16>(out),
                _ => {}
            }
        }
        match self.w.ty {
            GgmlType::Q4_0 => product.run::<kind::Q4_0>(out, scratch),
            GgmlType::Q4_1 => product.run::<kind::Q4_1>(out, scratch),
            GgmlType::Q5_0 => product.run::<kind::Q5_0>(out, scratch),
            GgmlType::Q5_1 => product.run::<kind::Q5_1>(out, scratch),
            GgmlType::Q8_0 => product.run::<kind::Q8_0>(out, scratch),
            GgmlType::IQ4_NL => product.run::<kind::IQ4_NL>(out, scratch),
            GgmlType::Q2_K => product.run::<kind::Q2_K>(out, scratch),
            GgmlType::Q3_K => product.run::<kind::Q3_K>(out, scratch),
            GgmlType::Q4_K => product.run::<kind::Q4_K>(out, scratch),
            GgmlType::Q5_K => product.run::<kind::Q5_K>(out, scratch),
            GgmlType::Q6_K => product.run::<kind::Q6_K>(out, scratch),
            GgmlType::F32 if product.llamafile_takes_f32() => {
                product.run::<kind::F32Tiled>(out, scratch)
            }
            GgmlType::F32 => product.run::<kind::F32>(out, scratch),
            GgmlType::F16 => product.run::<kind::F16>(out, scratch),
            other => Err(MatmulError::UnsupportedType(other)),
        }
    }
}

/// One validated call of [`matmul`].
struct Product<'a> {
    pool: &'a ThreadPool,
    isa: Isa,
    /// The shape of the whole stack (`rows` of all parts); its bytes are the first part's.
    w: Weights<'a>,
    /// The stacked matrices (one for a plain product).
    parts: &'a [Weights<'a>],
    x: &'a [f32],
    n_tokens: usize,
    order: Order,
}

impl Product<'_> {
    /// Whether llama.cpp's CPU backend (built with llamafile, as by default) multiplies
    /// these F32 weights with llamafile's `tinyBLAS` rather than `ggml_vec_dot_f32`: for
    /// two tokens or more, rows a multiple of 16 long (its AVX-512 step) and a row count
    /// that is a multiple of 4 (its smallest tile). We follow it so the bits are its.
    fn llamafile_takes_f32(&self) -> bool {
        self.order != Order::VecDot
            && self.n_tokens >= 2
            && self.w.cols.is_multiple_of(16)
            && self.w.rows.is_multiple_of(4)
    }

    /// The weight rows of the stack as blocks of `B`.
    fn stack_rows<B: Pod>(&self) -> Result<StackRows<'_, B>, MatmulError> {
        let mut stack = StackRows {
            parts: [(&[][..], 0); MAX_STACK],
            n: self.parts.len(),
            per_row: self.w.cols / self.w.ty.block_size(),
        };
        for (slot, p) in stack.parts.iter_mut().zip(self.parts) {
            let blocks = as_blocks::<B>(p.bytes).ok_or(MatmulError::Misaligned(p.ty))?;
            *slot = (blocks, p.rows);
        }
        Ok(stack)
    }

    /// Quantizes the activations into `words` (sized by the caller) in `K`'s partner type.
    fn quantize<'s, K: VecDot>(&self, words: &'s mut [u32]) -> &'s [K::Act] {
        let (n_tokens, cols) = (self.n_tokens, self.w.cols);
        let a_per_row = cols / K::ACT_TYPE.block_size();
        let acts_bytes = &mut as_bytes_mut(words)[..n_tokens * a_per_row * size_of::<K::Act>()];
        let acts = as_blocks_mut::<K::Act>(acts_bytes)
            .expect("u32 storage is aligned for every activation block");
        if a_per_row == 0 || n_tokens == 0 {
            return acts;
        }
        if n_tokens <= FAST_TILE {
            // A decode step's few rows cost less than handing them to the workers.
            for (t, y) in acts.chunks_exact_mut(a_per_row).enumerate() {
                K::quantize(self.isa, &self.x[t * cols..(t + 1) * cols], y);
            }
            return acts;
        }
        // A few tokens per task.
        let threads = self.pool.threads();
        let tokens_per_task = n_tokens.div_ceil(threads * 2).max(1);
        let split = Split {
            outer: 1,
            inner: n_tokens * a_per_row,
            per_task: tokens_per_task * a_per_row,
        };
        let x = self.x;
        self.pool.run_split(acts, split, |_, mut part| {
            let first = part.start() / a_per_row;
            for (i, y) in part.row(0).chunks_exact_mut(a_per_row).enumerate() {
                let t = first + i;
                K::quantize(self.isa, &x[t * cols..(t + 1) * cols], y);
            }
        });
        acts
    }

    fn run<K: VecDot>(
        &self,
        out: &mut [f32],
        scratch: &mut MatmulScratch,
    ) -> Result<(), MatmulError> {
        let weights = self.stack_rows::<K::Weight>()?;
        let a_per_row = self.w.cols / K::ACT_TYPE.block_size();
        let acts = self.quantize::<K>(&mut scratch.words);
        let isa = self.isa;
        let act_row = |t: usize| &acts[t * a_per_row..(t + 1) * a_per_row];
        self.tiles(out, TOKEN_TILE, |r, t, tile| {
            let wr = weights.row(r);
            let a = |k: usize| act_row(t + k);
            match tile {
                8 => sums(K::dot(
                    isa,
                    wr,
                    [a(0), a(1), a(2), a(3), a(4), a(5), a(6), a(7)],
                )),
                7 => sums(K::dot(isa, wr, [a(0), a(1), a(2), a(3), a(4), a(5), a(6)])),
                6 => sums(K::dot(isa, wr, [a(0), a(1), a(2), a(3), a(4), a(5)])),
                5 => sums(K::dot(isa, wr, [a(0), a(1), a(2), a(3), a(4)])),
                4 => sums(K::dot(isa, wr, [a(0), a(1), a(2), a(3)])),
                3 => sums(K::dot(isa, wr, [a(0), a(1), a(2)])),
                2 => sums(K::dot(isa, wr, [a(0), a(1)])),
                _ => sums(K::dot(isa, wr, [a(0)])),
            }
        });
        Ok(())
    }

    /// [`Product::run`] through [`FastDot::dot_fast`] for up to [`FAST_TILE`] tokens, and
    /// through the token-lane kernels for more.
    fn run_fast<K: FastDot>(
        &self,
        out: &mut [f32],
        scratch: &mut MatmulScratch,
    ) -> Result<(), MatmulError> {
        let weights = self.stack_rows::<K::Weight>()?;
        let a_per_row = self.w.cols / K::ACT_TYPE.block_size();
        let (acts, da, sa, lane_words) = self.fast_acts::<K>(&mut scratch.words);
        let isa = self.isa;
        if self.n_tokens >= LANES_FROM {
            self.run_lanes::<K>(&weights, acts, (da, sa), lane_words, out);
            return Ok(());
        }
        if self.n_tokens == 1 {
            // A decode step: one kernel call per run of consecutive rows.
            self.row_runs(out, |first, out| {
                weights.runs(first, out.len(), |blocks, done, rows| {
                    K::dot_fast_rows(isa, blocks, acts, da, sa, &mut out[done..done + rows]);
                });
            });
            return Ok(());
        }
        let row = |t: usize| t * a_per_row..(t + 1) * a_per_row;
        let a = |t: usize| &acts[row(t)];
        let d = |t: usize| &da[row(t)];
        let s = |t: usize| &sa[row(t)];
        let eight = |r: usize, t: usize, tile: usize| {
            let w: [&[K::Weight]; ROWS8] = std::array::from_fn(|k| weights.row(r + k));
            by_tile!(tile, t, (a, d, s), |ys, ds, ss| row_sums(K::dot_rows8(
                isa, w, ys, ds, ss
            )))
        };
        let one = |r: usize, t: usize, tile: usize| {
            let wr = weights.row(r);
            by_tile!(tile, t, (a, d, s), |ys, ds, ss| sums(K::dot_fast(
                isa, wr, ys, ds, ss
            )))
        };
        self.tiles8(out, FAST_TILE, eight, one);
        Ok(())
    }

    /// The activations quantized for the fast kernels, in `words`: the blocks, then
    /// (from the next whole word) their f32 scales, `d` of every block, then the second
    /// term of every block ([`FastDot::act_scales`]; see `activation_bytes`), and the
    /// words left for the token-lane kernels.
    #[allow(clippy::type_complexity)]
    fn fast_acts<'s, K: FastDot>(
        &self,
        words: &'s mut [u32],
    ) -> (&'s [K::Act], &'s [f32], &'s [f32], &'s mut [u32]) {
        let n_acts = self.n_tokens * (self.w.cols / K::ACT_TYPE.block_size());
        let act_words = (n_acts * size_of::<K::Act>()).div_ceil(size_of::<u32>());
        let (act_words, scale_words) = words.split_at_mut(act_words);
        let acts = self.quantize::<K>(act_words);
        let (scale_words, lane_words) = scale_words.split_at_mut(2 * n_acts);
        let scales = as_blocks_mut::<f32>(as_bytes_mut(scale_words))
            .expect("u32 storage is aligned for f32");
        let (da, sa) = scales.split_at_mut(n_acts);
        for ((y, d), s) in acts.iter().zip(da.iter_mut()).zip(sa.iter_mut()) {
            (*d, *s) = K::act_scales(y);
        }
        (acts, da, sa, lane_words)
    }

    /// Fills the one token's `out` by `fill(first, part)`: each task's run of rows from
    /// `first` into its `part` of `out`.
    fn row_runs(&self, out: &mut [f32], fill: impl Fn(usize, &mut [f32]) + Sync) {
        let rows = self.w.rows;
        if rows == 0 || self.w.cols == 0 {
            out.fill(0.0);
            return;
        }
        let split = Split {
            outer: 1,
            inner: rows,
            per_task: self.rows_per_task(),
        };
        self.pool.run_split(out, split, |_, mut part| {
            let first = part.start();
            fill(first, part.row(0));
        });
    }

    /// Rows per task.
    ///
    /// - A step of up to [`FAST_TILE`] tokens reads each row once: a task is a long run of
    ///   rows, [`STREAM_TASKS`] per thread, which the prefetchers stream and whose next
    ///   rows the kernels fetch while they compute (the ninth part of
    ///   `docs/PERFORMANCE.md`: 64-row tasks left four streams 15–19% slower).
    /// - A larger batch passes over a task's rows once per token tile: enough tasks to
    ///   balance the threads, few enough that a task's rows stay in cache meanwhile.
    fn rows_per_task(&self) -> usize {
        let rows = if self.n_tokens <= FAST_TILE {
            self.w
                .rows
                .div_ceil(self.pool.threads() * STREAM_TASKS)
                .max(1)
        } else {
            self.w.rows.div_ceil(self.pool.threads() * 4).clamp(1, 64)
        };
        match self.w.layout {
            Layout::Rows => rows,
            // A task takes whole groups, in pairs where the kernels take two at once.
            Layout::Rows8 => rows.next_multiple_of(2 * ROWS8),
        }
    }

    /// Fills `out` with `dot(r, t, tile)`: the dots of weight row `r` with the `tile`
    /// (1..=`max_tile`) activation rows from `t`, over tasks of runs of rows.
    fn tiles(
        &self,
        out: &mut [f32],
        max_tile: usize,
        dot: impl Fn(usize, usize, usize) -> [f32; TOKEN_TILE] + Sync,
    ) {
        self.token_tiles(out, max_tile, |part, first_row, t, tile| {
            for i in 0..part.row(0).len() {
                let sums = dot(first_row + i, t, tile);
                for (k, s) in sums[..tile].iter().enumerate() {
                    part.row(t + k)[i] = *s;
                }
            }
        });
    }

    /// [`Product::tiles`] eight rows at a time: `eight(r, t, tile)` gives rows `r..r + 8`
    /// with the `tile` activation rows from `t`, token by token; `one(r, t, tile)` the
    /// rows of a task's last fewer than eight.
    fn tiles8(
        &self,
        out: &mut [f32],
        max_tile: usize,
        eight: impl Fn(usize, usize, usize) -> [[f32; ROWS8]; TOKEN_TILE] + Sync,
        one: impl Fn(usize, usize, usize) -> [f32; TOKEN_TILE] + Sync,
    ) {
        self.token_tiles(out, max_tile, |part, first_row, t, tile| {
            let n_rows = part.row(0).len();
            let mut i = 0;
            while i + ROWS8 <= n_rows {
                let sums = eight(first_row + i, t, tile);
                for (k, s) in sums[..tile].iter().enumerate() {
                    part.row(t + k)[i..i + ROWS8].copy_from_slice(s);
                }
                i += ROWS8;
            }
            for i in i..n_rows {
                let sums = one(first_row + i, t, tile);
                for (k, s) in sums[..tile].iter().enumerate() {
                    part.row(t + k)[i] = *s;
                }
            }
        });
    }

    /// The task split [`Product::tiles`] and [`Product::tiles8`] share: each task takes a
    /// run of rows and calls `fill(part, first_row, t, tile)` for each tile of up to
    /// `max_tile` tokens from `t`, in order.
    fn token_tiles(
        &self,
        out: &mut [f32],
        max_tile: usize,
        fill: impl Fn(&mut SplitPart<'_, f32>, usize, usize, usize) + Sync,
    ) {
        let (rows, n_tokens) = (self.w.rows, self.n_tokens);
        if rows == 0 || n_tokens == 0 || self.w.cols == 0 {
            out.fill(0.0);
            return;
        }
        let split = Split {
            outer: n_tokens,
            inner: rows,
            per_task: self.rows_per_task(),
        };
        self.pool.run_split(out, split, |_, mut part| {
            let first_row = part.start();
            let mut t = 0;
            while t < n_tokens {
                let tile = (n_tokens - t).min(max_tile);
                fill(&mut part, first_row, t, tile);
                t += tile;
            }
        });
    }
}

/// The rows of up to [`MAX_STACK`] matrices of one type and width, numbered as if they
/// were one matrix.
struct StackRows<'a, B> {
    parts: [(&'a [B], usize); MAX_STACK],
    n: usize,
    per_row: usize,
}

impl<B> StackRows<'_, B> {
    /// Row `r` of the stack (`r` below the stack's rows, which `product` checked).
    #[inline(always)]
    fn row(&self, mut r: usize) -> &[B] {
        for &(blocks, rows) in &self.parts[..self.n - 1] {
            if r < rows {
                return &blocks[r * self.per_row..(r + 1) * self.per_row];
            }
            r -= rows;
        }
        let blocks = self.parts[self.n - 1].0;
        &blocks[r * self.per_row..(r + 1) * self.per_row]
    }

    /// Calls `f(blocks, done, rows)` for each piece of the `n` rows from `first` that lies
    /// in one matrix: its `rows` rows' blocks, `done` rows after `first`.
    fn runs(&self, first: usize, n: usize, mut f: impl FnMut(&[B], usize, usize)) {
        let (mut start, mut done) = (first, 0);
        for &(blocks, rows) in &self.parts[..self.n] {
            if done == n {
                return;
            }
            if start >= rows {
                start -= rows;
                continue;
            }
            let take = (rows - start).min(n - done);
            f(
                &blocks[start * self.per_row..(start + take) * self.per_row],
                done,
                take,
            );
            done += take;
            start = 0;
        }
    }
}

/// `N` tokens' sums of `R` rows in a tile-sized array.
#[inline(always)]
fn row_sums<const R: usize, const N: usize>(s: [[f32; R]; N]) -> [[f32; R]; TOKEN_TILE] {
    let mut all = [[0.0; R]; TOKEN_TILE];
    all[..N].copy_from_slice(&s);
    all
}

/// `N` sums in a tile-sized array.
#[inline(always)]
fn sums<const N: usize>(s: [f32; N]) -> [f32; TOKEN_TILE] {
    let mut all = [0.0; TOKEN_TILE];
    all[..N].copy_from_slice(&s);
    all
}

#[cfg(test)]
mod packed_tests;
#[cfg(test)]
mod stacked_tests;
#[cfg(test)]
mod tests;
