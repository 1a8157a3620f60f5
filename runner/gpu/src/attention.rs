//! Attention over a K/V cache on the device: the cache's cell table ([`CellTable`]), the
//! store of new K and V rows into their cells ([`Gpu::store_kv_rows`]) and flash attention
//! over the cells a token sees ([`Gpu::flash_attention`]).
//!
//! Cache rows are GGML blocks, byte for byte what the CPU cache stores, so a cache can be
//! compared with (or moved from) the CPU's. Which cells a token sees is decided in the
//! kernel from each cell's position and sequence set, as llama.cpp's `llama_kv_cells`
//! keeps them, so no mask matrix is built.

use ggml_type::GgmlType;

use crate::buffer::GpuBuffer;
use crate::device::Gpu;
use crate::error::Result;
use crate::kernel::{Dispatch, Params, WORKGROUP, check_distinct, to_u32};
use crate::ops::shape;

const KV_CACHE: &str = include_str!("shaders/kv_cache.wgsl");
const FLASH_ATTENTION: &str = include_str!("shaders/flash_attention.wgsl");
const STORE_KV: &str = include_str!("shaders/store_kv.wgsl");
/// The largest head `flash_attention.wgsl` holds (its `MAX_HEAD_DIM`): Gemma 3's 256.
const MAX_HEAD_DIM: usize = 256;
/// Sequences a cell's bit set can name.
const MAX_SEQUENCES: u32 = 64;

/// Storage type of a K/V cache row on the device; rows are GGML blocks, as the CPU cache
/// stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvType {
    /// Plain f32.
    F32,
    /// IEEE half, rounded to nearest even.
    F16,
    /// `block_q8_0`.
    Q8_0,
    /// `block_q4_0`.
    Q4_0,
}

impl KvType {
    /// Every cache type, for tests.
    pub const ALL: [Self; 4] = [Self::F32, Self::F16, Self::Q8_0, Self::Q4_0];

    /// The GGML type of its rows.
    pub fn ggml(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q4_0 => GgmlType::Q4_0,
        }
    }

    /// The values one invocation of `store_kv.wgsl` converts and the bytes they become
    /// (whole words, or one block): a row is a whole number of these.
    fn unit(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 => (2, 4),
            Self::Q8_0 => (32, 34),
            Self::Q4_0 => (32, 18),
        }
    }

    /// Bytes of a row of `dim` values (`dim` a multiple of 32 for Q8_0 and Q4_0, even for
    /// F16, non-zero), or a shape error.
    pub fn row_bytes(self, dim: usize) -> Result<usize> {
        let (values, bytes) = self.unit();
        if dim == 0 || !dim.is_multiple_of(values) {
            return Err(shape(
                "kv row",
                format!("a {self:?} row of {dim} values is not a whole number of {values}"),
            ));
        }
        (dim / values).checked_mul(bytes).ok_or_else(|| {
            shape(
                "kv row",
                format!("a {self:?} row of {dim} values overflows"),
            )
        })
    }
}

/// The cells of a cache table as attention sees them: each cell's position and its set
/// of sequences (bit `s` = sequence `s`, 0 = empty), uploaded before each pass.
#[derive(Debug)]
pub struct CellTable {
    /// Per cell: position (i32), then the sequence set as two words, low first.
    buffer: GpuBuffer,
    len: usize,
}

impl CellTable {
    /// Cells in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no cells.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The shape of one attention layer and its cache, as the model file gives them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionParams {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (a divisor of `n_head`: grouped-query attention).
    pub n_head_kv: usize,
    /// Values per query and key head (at most 256).
    pub head_dim_k: usize,
    /// Values per value head (at most 256).
    pub head_dim_v: usize,
    /// Factor on `q·k` (usually `1 / sqrt(head_dim_k)`).
    pub scale: f32,
    /// `Some(c)`: scores become `c * tanh(score / c)` (Gemma 2's attention softcap).
    pub softcap: Option<f32>,
    /// `Some(w)`: a token sees only cells less than `w` positions back (sliding window).
    pub window: Option<usize>,
    /// Type of the K cache rows.
    pub k_type: KvType,
    /// Type of the V cache rows.
    pub v_type: KvType,
}

/// `a * b`, or a shape error naming `what`.
fn product(kernel: &'static str, what: &str, factors: &[usize]) -> Result<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| shape(kernel, format!("{what} overflows")))
}

/// Fails unless `buffer` holds at least `need` bytes.
fn check_bytes(kernel: &'static str, name: &str, buffer: &GpuBuffer, need: usize) -> Result<()> {
    if (buffer.len_bytes() as usize) < need {
        return Err(shape(
            kernel,
            format!("{name} holds {} bytes, {need} needed", buffer.len_bytes()),
        ));
    }
    Ok(())
}

impl Gpu {
    /// Uploads `pos` (one per cell) and `seqs` (sequence bit sets, one per cell; the same
    /// length) for [`Gpu::flash_attention`].
    pub fn upload_cells(&self, pos: &[i32], seqs: &[u64]) -> Result<CellTable> {
        if pos.len() != seqs.len() {
            return Err(shape(
                "upload_cells",
                format!("{} positions for {} sequence sets", pos.len(), seqs.len()),
            ));
        }
        let words: Vec<u32> = pos
            .iter()
            .zip(seqs)
            .flat_map(|(&p, &s)| [p as u32, s as u32, (s >> 32) as u32])
            .collect();
        Ok(CellTable {
            buffer: self.upload_u32("kv cell table", &words)?,
            len: pos.len(),
        })
    }

    /// Writes row `t` of `src` (f32, `cells.len()` rows of `dim` values) into cell
    /// `cells[t]` of `cache` (rows of `ty.row_bytes(dim)` bytes, cell after cell),
    /// converted to `ty` as ggml's reference quantizers do: the new tokens' K or V rows
    /// enter the cache on the device, in the bytes the CPU cache would hold. The cells
    /// must be distinct and `cache` at least (largest cell + 1) rows.
    pub fn store_kv_rows(
        &self,
        src: &GpuBuffer,
        cells: &[u32],
        dim: usize,
        ty: KvType,
        cache: &GpuBuffer,
    ) -> Result<()> {
        const KERNEL: &str = "store_kv_rows";
        let row_bytes = ty.row_bytes(dim)?;
        let Some(&last) = cells.iter().max() else {
            return Ok(());
        };
        let mut sorted = cells.to_vec();
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(shape(KERNEL, format!("cell {} is written twice", pair[0])));
        }
        let src_len = product(KERNEL, "the source rows", &[cells.len(), dim])?;
        if src.len_words() < src_len {
            return Err(shape(
                KERNEL,
                format!("src holds {} values, {src_len} needed", src.len_words()),
            ));
        }
        let cache_bytes = product(KERNEL, "the cache", &[last as usize + 1, row_bytes])?;
        check_bytes(KERNEL, "cache", cache, cache_bytes)?;
        to_u32(KERNEL, "cache bytes", cache_bytes)?;
        check_distinct(KERNEL, cache, src)?;
        let (unit_values, unit_bytes) = ty.unit();
        let units_per_row = dim / unit_values;
        let units = to_u32(
            KERNEL,
            "units",
            product(KERNEL, "units", &[cells.len(), units_per_row])?,
        )?;
        let cells_gpu = self.constant("kv store cells", bytemuck::cast_slice(cells))?;
        let name = format!("store_kv_{ty:?}");
        let pipeline = self.pipeline(&name, || {
            format!(
                "const UNIT_VALUES: u32 = {unit_values}u;\nconst UNIT_BYTES: u32 = {unit_bytes}u;\n{}",
                STORE_KV.replace("{ty}", &format!("{ty:?}"))
            )
        })?;
        let [gx, gy] = self.grid(units.div_ceil(WORKGROUP));
        self.dispatch(
            &pipeline,
            Dispatch {
                kernel: KERNEL,
                buffers: &[src, &cells_gpu, cache],
                params: Params::default()
                    .u32(to_u32(KERNEL, "tokens", cells.len())?)
                    .u32(to_u32(KERNEL, "dim", dim)?)
                    .u32(to_u32(KERNEL, "row bytes", row_bytes)?)
                    .u32(units_per_row as u32),
                workgroups: [gx, gy, 1],
            },
        )
    }

    /// Flash attention for `n_tokens = token_pos.len()` query tokens over cells
    /// `0..n_cells` of a cache: the whole of a layer's attention in one dispatch, without
    /// a score matrix in memory.
    ///
    /// `q`: f32 `[token][n_head][head_dim_k]`; `k_cache` and `v_cache`: one row per cell
    /// holding all kv heads (`[n_head_kv][head_dim]`) in `params.k_type` and
    /// `params.v_type`; `out`: f32 `[token][n_head][head_dim_v]`.
    ///
    /// Token `t`, at position `token_pos[t]` of sequence `token_seq[t]`, sees cell `c` iff
    /// the cell's sequence set holds `token_seq[t]`, its position is at most
    /// `token_pos[t]` and, with a window, `token_pos[t] - pos < window`. Scores are
    /// `scale * q·k`, then softcapped; the softmax over the seen cells weighs the V rows.
    /// A token that sees no cell gets zeros. Query head `h` reads kv head
    /// `h / (n_head / n_head_kv)`.
    #[expect(
        clippy::too_many_arguments,
        reason = "the operands of one attention: a struct would only rename them"
    )]
    pub fn flash_attention(
        &self,
        q: &GpuBuffer,
        k_cache: &GpuBuffer,
        v_cache: &GpuBuffer,
        cells: &CellTable,
        n_cells: usize,
        token_pos: &[i32],
        token_seq: &[u32],
        params: &AttentionParams,
        out: &GpuBuffer,
    ) -> Result<()> {
        const KERNEL: &str = "flash_attention";
        let AttentionParams {
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            k_type,
            v_type,
            ..
        } = *params;
        if n_head == 0 || n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
            return Err(shape(
                KERNEL,
                format!("{n_head} query heads are not a multiple of {n_head_kv} kv heads"),
            ));
        }
        for (name, dim) in [("head_dim_k", head_dim_k), ("head_dim_v", head_dim_v)] {
            if dim == 0 || dim > MAX_HEAD_DIM {
                return Err(shape(
                    KERNEL,
                    format!("{name} {dim} is not in 1..={MAX_HEAD_DIM}"),
                ));
            }
        }
        // Each head is whole units of its type, so a head starts `g * head bytes` in.
        let k_head_bytes = k_type.row_bytes(head_dim_k)?;
        let v_head_bytes = v_type.row_bytes(head_dim_v)?;
        let k_row_bytes = product(KERNEL, "a K row", &[n_head_kv, k_head_bytes])?;
        let v_row_bytes = product(KERNEL, "a V row", &[n_head_kv, v_head_bytes])?;
        if token_pos.len() != token_seq.len() {
            return Err(shape(
                KERNEL,
                format!(
                    "{} positions for {} sequences",
                    token_pos.len(),
                    token_seq.len()
                ),
            ));
        }
        if let Some(bad) = token_seq.iter().find(|&&s| s >= MAX_SEQUENCES) {
            return Err(shape(
                KERNEL,
                format!("sequence {bad} is past the {MAX_SEQUENCES} a cell can hold"),
            ));
        }
        if n_cells > cells.len() {
            return Err(shape(
                KERNEL,
                format!("{n_cells} cells asked of a table of {}", cells.len()),
            ));
        }
        let softcap = match params.softcap {
            None => 0.0,
            Some(c) if c.is_finite() && c > 0.0 => c,
            Some(c) => return Err(shape(KERNEL, format!("softcap {c} is not positive"))),
        };
        let n_tokens = token_pos.len();
        let q_len = product(KERNEL, "q", &[n_tokens, n_head, head_dim_k])?;
        let out_len = product(KERNEL, "out", &[n_tokens, n_head, head_dim_v])?;
        for (name, buffer, need) in [("q", q, q_len), ("out", out, out_len)] {
            if buffer.len_words() < need {
                return Err(shape(
                    KERNEL,
                    format!("{name} holds {} values, {need} needed", buffer.len_words()),
                ));
            }
        }
        let k_bytes = product(KERNEL, "the K cache", &[n_cells, k_row_bytes])?;
        let v_bytes = product(KERNEL, "the V cache", &[n_cells, v_row_bytes])?;
        check_bytes(KERNEL, "k_cache", k_cache, k_bytes)?;
        check_bytes(KERNEL, "v_cache", v_cache, v_bytes)?;
        to_u32(KERNEL, "K cache bytes", k_bytes)?;
        to_u32(KERNEL, "V cache bytes", v_bytes)?;
        for input in [q, k_cache, v_cache] {
            check_distinct(KERNEL, out, input)?;
        }
        let pairs = to_u32(
            KERNEL,
            "token heads",
            product(KERNEL, "token heads", &[n_tokens, n_head])?,
        )?;
        if pairs == 0 {
            return Ok(());
        }
        let tokens: Vec<u32> = token_pos
            .iter()
            .zip(token_seq)
            .flat_map(|(&p, &s)| [p as u32, s])
            .collect();
        let tokens = self.constant("attention tokens", bytemuck::cast_slice(&tokens))?;
        let name = format!("flash_attention_{k_type:?}_{v_type:?}");
        let pipeline = self.pipeline(&name, || {
            let cache = |buf: &str, binding: u32, ty: KvType| {
                KV_CACHE
                    .replace("{buf}", buf)
                    .replace("{binding}", &binding.to_string())
                    .replace("{ty}", &format!("{ty:?}"))
            };
            [
                cache("k_cache", 1, k_type),
                cache("v_cache", 2, v_type),
                FLASH_ATTENTION.to_owned(),
            ]
            .join("\n")
        })?;
        let window = params.window.map_or(0, |w| w.min(u32::MAX as usize) as u32);
        let [gx, gy] = self.grid(pairs);
        self.dispatch(
            &pipeline,
            Dispatch {
                kernel: KERNEL,
                buffers: &[q, k_cache, v_cache, &cells.buffer, &tokens, out],
                params: Params::default()
                    .u32(to_u32(KERNEL, "tokens", n_tokens)?)
                    .u32(n_head as u32)
                    .u32((n_head / n_head_kv) as u32)
                    .u32(head_dim_k as u32)
                    .u32(head_dim_v as u32)
                    .u32(n_cells as u32)
                    .u32(k_row_bytes as u32)
                    .u32(k_head_bytes as u32)
                    .u32(v_row_bytes as u32)
                    .u32(v_head_bytes as u32)
                    .f32(params.scale)
                    .f32(softcap)
                    .u32(u32::from(params.window.is_some()))
                    .u32(window),
                workgroups: [gx, gy, 1],
            },
        )
    }
}
