//! Flash attention against the straight computation (every score, one softmax, in f64)
//! on the same dequantized keys and values, for every storage type, head size, group
//! size and mask; split ranges against one call; every instruction set against the
//! scalar path.
//!
//! Tolerances, relative to the largest |value| in the head (`peak`):
//! - 1e-5 (the brief asks for 1e-4; the largest error seen over thousands of cases is
//!   2e-6) against the reference that scores with the query as the key type's dot sees
//!   it: the f32 query for f32/f16 keys, the dequantized Q8_0/Q8_1 blocks (plus Q8_1's
//!   stored f16 block sum `s` in the minimum term) for quantized keys. What is left is f32
//!   rounding of the dots, `exp` (ggml's polynomial, ~1.5 ulp) and the running sums.
//! - For quantized keys, also against the reference with the f32 query. Quantizing the
//!   query to Q8 moves each score by some `δ` (computed exactly in f64 for every row and
//!   cell; `eps` is the largest `|δ|`, about 0.02 to 0.05 for these inputs); moving every
//!   score by at most `eps` multiplies each softmax weight by a factor within
//!   `e^{±2 eps}`, so it moves the output by at most `(e^{2 eps} - 1) · peak`. That plus
//!   1e-5 is the tolerance: the only loss quantized keys add is the query's quantization.
//! - 1e-5 for split ranges merged against one call (only the order of additions differs).
//! - Equal bits for every instruction set against the scalar path, except f16 keys (their
//!   dot adds in a per-instruction-set order): 1e-5.

use proptest::prelude::*;

use super::values::CACHE_TYPES;
use super::*;
use crate::arch::cast::{as_bytes, as_bytes_mut};
use crate::blocks::{BlockQ4_1, BlockQ5_1, BlockQ8_0, BlockQ8_1};
use crate::quant::{
    dequantize_row, dequantize_row_q8_0, dequantize_row_q8_1, quantize_row,
    quantize_row_q8_0_scalar, quantize_row_q8_1_scalar,
};

/// Uniform values in `[-amplitude, amplitude)`, from a seed.
pub(super) fn uniform(n: usize, seed: u64, amplitude: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amplitude
        })
        .collect()
}

/// Small integers from a seed.
fn integers(n: usize, seed: u64) -> Vec<u64> {
    let mut state = seed.wrapping_mul(0xd1b5_4a32_d192_ed03) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state >> 11
        })
        .collect()
}

/// A cache of `n_cells` rows of `n_kv` heads of `dim` values of type `ty`, in 4-aligned
/// storage, with its values dequantized per head and cell for the reference.
pub(super) struct Cache {
    ty: GgmlType,
    storage: Vec<u32>,
    row_bytes: usize,
    dim: usize,
    n_cells: usize,
}

impl Cache {
    pub(super) fn new(ty: GgmlType, values: &[f32], n_kv: usize, dim: usize) -> Self {
        let row = n_kv * dim;
        let row_bytes = row / ty.block_size() * ty.type_size();
        let n_cells = values.len() / row;
        let mut storage = vec![0u32; (n_cells * row_bytes).div_ceil(4)];
        let bytes = &mut as_bytes_mut(&mut storage)[..n_cells * row_bytes];
        for (src, dst) in values
            .chunks_exact(row)
            .zip(bytes.chunks_exact_mut(row_bytes))
        {
            quantize_row(ty, src, dst).unwrap();
        }
        Self {
            ty,
            storage,
            row_bytes,
            dim,
            n_cells,
        }
    }

    fn bytes(&self) -> &[u8] {
        &as_bytes(&self.storage)[..self.n_cells * self.row_bytes]
    }

    fn head_bytes(&self) -> usize {
        self.dim / self.ty.block_size() * self.ty.type_size()
    }

    pub(super) fn head(&self, h: usize) -> HeadRows<'_> {
        let (stride, offset) = (self.row_bytes, h * self.head_bytes());
        HeadRows::new(
            self.ty,
            self.bytes(),
            stride,
            offset,
            self.dim,
            self.n_cells,
        )
        .unwrap()
    }

    /// Cell `c` of head `h`, its bytes.
    fn cell(&self, h: usize, c: usize) -> &[u8] {
        let start = c * self.row_bytes + h * self.head_bytes();
        &self.bytes()[start..start + self.head_bytes()]
    }

    /// Cell `c` of head `h`, dequantized.
    fn values(&self, h: usize, c: usize) -> Vec<f32> {
        let mut out = vec![0.0; self.dim];
        dequantize_row(self.ty, self.cell(h, c), &mut out).unwrap();
        out
    }

    /// The minimums of cell `c`'s blocks (Q4_1 and Q5_1), zeros for the other types.
    fn minimums(&self, h: usize, c: usize) -> Vec<f64> {
        let bytes = self.cell(h, c);
        match self.ty {
            GgmlType::Q4_1 => as_blocks::<BlockQ4_1>(bytes)
                .unwrap()
                .iter()
                .map(|b| f64::from(b.m.to_f32()))
                .collect(),
            GgmlType::Q5_1 => as_blocks::<BlockQ5_1>(bytes)
                .unwrap()
                .iter()
                .map(|b| f64::from(b.m.to_f32()))
                .collect(),
            _ => vec![0.0; self.dim / 32],
        }
    }
}

/// A query row as key type `kt`'s dot sees it: the values, and per 32-block the amount
/// the dot adds beyond `Σ k̂·q̂` per unit of the key block's minimum (Q8_1's stored `s`
/// minus `d · Σ qs`; zero for the other types).
fn query_as_seen(kt: GgmlType, q: &[f32]) -> (Vec<f32>, Vec<f64>) {
    let mut seen = vec![0.0f32; q.len()];
    match kt {
        GgmlType::F32 | GgmlType::F16 => (q.to_vec(), vec![0.0; q.len() / 32]),
        GgmlType::Q4_1 | GgmlType::Q5_1 => {
            let mut blocks = vec![
                BlockQ8_1 {
                    d: half::f16::ZERO,
                    s: half::f16::ZERO,
                    qs: [0; 32]
                };
                q.len() / 32
            ];
            quantize_row_q8_1_scalar(q, &mut blocks);
            dequantize_row_q8_1(&blocks, &mut seen);
            let extra = blocks
                .iter()
                .map(|b| {
                    let sum: i32 = b.qs.iter().map(|&x| i32::from(x)).sum();
                    f64::from(b.s.to_f32()) - f64::from(b.d.to_f32()) * f64::from(sum)
                })
                .collect();
            (seen, extra)
        }
        _ => {
            let mut blocks = vec![
                BlockQ8_0 {
                    d: half::f16::ZERO,
                    qs: [0; 32]
                };
                q.len() / 32
            ];
            quantize_row_q8_0_scalar(q, &mut blocks);
            dequantize_row_q8_0(&blocks, &mut seen);
            (seen, vec![0.0; q.len() / 32])
        }
    }
}

/// One test case: caches of 2 K/V heads (head 1 is used), cells of several sequences,
/// `tokens` tokens of `group` query heads each.
#[derive(Debug, Clone)]
struct Case {
    kt: GgmlType,
    vt: GgmlType,
    dk: usize,
    dv: usize,
    group: usize,
    tokens: usize,
    n_cells: usize,
    n_seqs: u32,
    window: Option<usize>,
    seed: u64,
}

/// Everything a call needs, built from a [`Case`].
struct Setup {
    k: Cache,
    v: Cache,
    q: Vec<f32>,
    pos: Vec<i32>,
    seq: Vec<u64>,
    cell_pos: Vec<i32>,
    cell_seqs: Vec<u64>,
    scale: f32,
}

const HEAD: usize = 1;

impl Setup {
    fn new(c: &Case) -> Self {
        let n_kv = 2;
        let k = Cache::new(
            c.kt,
            &uniform(c.n_cells * n_kv * c.dk, c.seed, 3.0),
            n_kv,
            c.dk,
        );
        let v = Cache::new(
            c.vt,
            &uniform(c.n_cells * n_kv * c.dv, c.seed ^ 1, 1.0),
            n_kv,
            c.dv,
        );
        let rows = c.tokens * c.group;
        let q = uniform(rows * c.dk, c.seed ^ 2, 3.0);
        let meta = integers(2 * c.n_cells + 2 * c.tokens, c.seed ^ 3);
        let (cell_meta, token_meta) = meta.split_at(2 * c.n_cells);
        // Cells: random positions, random sets of sequences (0: an empty cell; several
        // bits: a cell shared by sequences).
        let cell_pos = (0..c.n_cells)
            .map(|i| (cell_meta[i] % c.n_cells as u64) as i32)
            .collect();
        let cell_seqs = (0..c.n_cells)
            .map(|i| cell_meta[c.n_cells + i] % (1 << c.n_seqs))
            .collect();
        // Tokens: a position from -1 (sees nothing) to past the last cell, one sequence
        // (bit `n_seqs` has no cells: such a token sees nothing). Rows token by token.
        let mut pos = Vec::new();
        let mut seq = Vec::new();
        for t in 0..c.tokens {
            let p = (token_meta[t] % (c.n_cells as u64 + 6)) as i32 - 1;
            let s = 1u64 << (token_meta[c.tokens + t] % (u64::from(c.n_seqs) + 1));
            pos.extend(std::iter::repeat_n(p, c.group));
            seq.extend(std::iter::repeat_n(s, c.group));
        }
        Self {
            k,
            v,
            q,
            pos,
            seq,
            cell_pos,
            cell_seqs,
            scale: 1.0 / (c.dk as f32).sqrt(),
        }
    }

    fn rows(&self) -> QueryRows<'_> {
        QueryRows {
            q: &self.q,
            dim: self.k.dim,
            pos: &self.pos,
            seq: &self.seq,
        }
    }

    fn mask(&self, window: Option<usize>) -> CellMask<'_> {
        CellMask {
            pos: &self.cell_pos,
            seqs: &self.cell_seqs,
            window,
        }
    }

    /// Runs flash attention over `ranges`, each into its own state, merged in the order
    /// given; returns the outputs row after row.
    fn flash(&self, isa: Isa, window: Option<usize>, ranges: &[Range<usize>]) -> Vec<f32> {
        let (n, dk, dv) = (self.pos.len(), self.k.dim, self.v.dim);
        let mut scratch = FlashScratch::new();
        scratch.reserve(n, dk, dv);
        let reserved = scratch.capacity_bytes();
        let mut total = FlashState::new();
        total.reset(n, dv);
        let mut part = FlashState::new();
        for range in ranges {
            part.reset(n, dv);
            let (k, v) = (self.k.head(HEAD), self.v.head(HEAD));
            let mask = self.mask(window);
            flash_attn(
                isa,
                &self.rows(),
                &k,
                &v,
                &mask,
                self.scale,
                range.clone(),
                &mut scratch,
                &mut part,
            )
            .unwrap();
            total.merge(&part);
        }
        assert_eq!(scratch.capacity_bytes(), reserved, "a call allocated");
        let mut out = vec![f32::NAN; n * dv];
        for (r, o) in out.chunks_exact_mut(dv).enumerate() {
            total.write(r, o);
        }
        out
    }

    /// [`Setup::flash`] over all the cells in one call.
    fn flash_whole(&self, isa: Isa, window: Option<usize>) -> Vec<f32> {
        self.flash(isa, window, std::slice::from_ref(&(0..self.k.n_cells)))
    }

    /// The straight attention in f64, with each row's query replaced by `query(row)`
    /// (values and per-block extra term of the minimums).
    fn reference(
        &self,
        window: Option<usize>,
        query: impl Fn(&[f32]) -> (Vec<f32>, Vec<f64>),
    ) -> Vec<f64> {
        let (dk, dv) = (self.k.dim, self.v.dim);
        let mut out = vec![0.0f64; self.pos.len() * dv];
        for (r, o) in out.chunks_exact_mut(dv).enumerate() {
            let (q, extra) = query(&self.q[r * dk..(r + 1) * dk]);
            let cells: Vec<usize> = (0..self.k.n_cells)
                .filter(|&c| {
                    let (p, rp) = (i64::from(self.cell_pos[c]), i64::from(self.pos[r]));
                    self.cell_seqs[c] & self.seq[r] != 0
                        && p <= rp
                        && window.is_none_or(|w| rp - p < w as i64)
                })
                .collect();
            if cells.is_empty() {
                continue;
            }
            let scores: Vec<f64> = cells
                .iter()
                .map(|&c| {
                    let k = self.k.values(HEAD, c);
                    let dot: f64 = q
                        .iter()
                        .zip(&k)
                        .map(|(&a, &b)| f64::from(a) * f64::from(b))
                        .sum();
                    let mins = self.k.minimums(HEAD, c);
                    let more: f64 = mins.iter().zip(&extra).map(|(m, e)| m * e).sum();
                    f64::from(self.scale) * (dot + more)
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for (&c, w) in cells.iter().zip(&weights) {
                for (o, &x) in o.iter_mut().zip(&self.v.values(HEAD, c)) {
                    *o += w / total * f64::from(x);
                }
            }
        }
        out
    }

    /// The largest change quantizing the query makes to any score (see the module docs).
    fn query_quantization_shift(&self) -> f64 {
        let dk = self.k.dim;
        let mut eps = 0.0f64;
        for r in 0..self.pos.len() {
            let q = &self.q[r * dk..(r + 1) * dk];
            let (seen, extra) = query_as_seen(self.k.ty, q);
            for c in 0..self.k.n_cells {
                let k = self.k.values(HEAD, c);
                let mins = self.k.minimums(HEAD, c);
                let shift: f64 = k
                    .iter()
                    .zip(q.iter().zip(&seen))
                    .map(|(&k, (&a, &b))| f64::from(k) * (f64::from(b) - f64::from(a)))
                    .sum::<f64>()
                    + mins.iter().zip(&extra).map(|(m, x)| m * x).sum::<f64>();
                eps = eps.max(f64::from(self.scale) * shift.abs());
            }
        }
        eps
    }

    /// Largest |value| of the head, the unit of the tolerances.
    fn peak(&self) -> f64 {
        (0..self.v.n_cells)
            .flat_map(|c| self.v.values(HEAD, c))
            .fold(1e-6f64, |m, x| m.max(f64::from(x).abs()))
    }
}

fn assert_close(what: &str, c: &Case, got: &[f32], want: &[f64], tolerance: f64) {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= tolerance,
            "{what}: {c:?}: row {} value {}: got {g}, want {w} (tolerance {tolerance:e})",
            i / c.dv,
            i % c.dv,
        );
    }
}

/// Flash attention over the whole cache on every instruction set against the reference.
fn check(c: &Case) {
    let s = Setup::new(c);
    let peak = s.peak();
    let scalar = s.flash_whole(Isa::Scalar, c.window);
    let want = s.reference(c.window, |q| query_as_seen(c.kt, q));
    assert_close("against the reference", c, &scalar, &want, 1e-5 * peak);
    if c.kt.is_quantized() {
        let eps = s.query_quantization_shift();
        let with_f32_query = s.reference(c.window, |q| (q.to_vec(), vec![0.0; q.len() / 32]));
        let tolerance = ((2.0 * eps).exp() - 1.0 + 1e-5) * peak;
        assert_close(
            "against the f32 query",
            c,
            &scalar,
            &with_f32_query,
            tolerance,
        );
    }
    for isa in Isa::available().into_iter().skip(1) {
        let got = s.flash_whole(isa, c.window);
        if c.kt == GgmlType::F16 {
            let scalar: Vec<f64> = scalar.iter().map(|&x| f64::from(x)).collect();
            assert_close(isa.name(), c, &got, &scalar, 1e-5 * peak);
        } else {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&scalar), "{isa} against scalar: {c:?}");
        }
    }
}

fn case(
    (kt, vt, dk, dv, group, tokens): (GgmlType, GgmlType, usize, usize, usize, usize),
    (n_cells, n_seqs, window, seed): (usize, u32, Option<usize>, u64),
) -> Case {
    Case {
        kt,
        vt,
        dk,
        dv,
        group,
        tokens,
        n_cells,
        n_seqs,
        window,
        seed,
    }
}

/// Cells, sequences, window and seed.
fn cells() -> impl Strategy<Value = (usize, u32, Option<usize>, u64)> {
    (
        1usize..300,
        1u32..4,
        prop::option::weighted(0.3, 1usize..100),
        any::<u64>(),
    )
}

/// Tokens: mostly one (decode), up to ten (rows = tokens × group, up to 40).
fn tokens() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), 1usize..=10]
}

const HEADS: [usize; 4] = [64, 96, 128, 256];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn f32_cache_matches_the_straight_attention(
        dk in prop::sample::select(&HEADS[..]),
        dv in prop::sample::select(&HEADS[..]),
        group in 1usize..=4,
        tokens in tokens(),
        cells in cells(),
    ) {
        check(&case((GgmlType::F32, GgmlType::F32, dk, dv, group, tokens), cells));
    }

    #[test]
    fn every_cache_type_matches_the_straight_attention(
        kt in prop::sample::select(&CACHE_TYPES[..]),
        vt in prop::sample::select(&CACHE_TYPES[..]),
        dk in prop::sample::select(&HEADS[..]),
        group in 1usize..=4,
        tokens in tokens(),
        cells in cells(),
    ) {
        check(&case((kt, vt, dk, dk, group, tokens), cells));
    }

    #[test]
    fn split_ranges_merged_equal_one_call(
        kt in prop::sample::select(&CACHE_TYPES[..]),
        vt in prop::sample::select(&CACHE_TYPES[..]),
        group in 1usize..=4,
        tokens in tokens(),
        cells in cells(),
        cuts in prop::collection::vec(0usize..5, 0..4),
        reverse in any::<bool>(),
    ) {
        let c = case((kt, vt, 64, 128, group, tokens), cells);
        let s = Setup::new(&c);
        let whole = s.flash_whole(Isa::best(), c.window);
        let mut bounds: Vec<usize> = cuts
            .iter()
            .map(|&b| (b * FLASH_BLOCK).min(c.n_cells))
            .chain([0, c.n_cells])
            .collect();
        bounds.sort_unstable();
        let mut ranges: Vec<Range<usize>> = bounds.windows(2).map(|w| w[0]..w[1]).collect();
        if reverse {
            ranges.reverse();
        }
        let split = s.flash(Isa::best(), c.window, &ranges);
        let whole: Vec<f64> = whole.iter().map(|&x| f64::from(x)).collect();
        assert_close("split against whole", &c, &split, &whole, 1e-5 * s.peak());
    }
}

#[test]
fn rows_that_see_nothing_get_zeros() {
    let c = case(
        (GgmlType::Q8_0, GgmlType::F16, 64, 64, 3, 2),
        (70, 1, None, 5),
    );
    let mut s = Setup::new(&c);
    s.pos = vec![-1, -1, -1, 100, 100, 100];
    s.seq = vec![1, 1, 1, 2, 2, 2];
    for isa in Isa::available() {
        let out = s.flash_whole(isa, None);
        assert!(out.iter().all(|&x| x == 0.0), "{isa}: {out:?}");
    }
}

#[test]
fn a_decode_row_sees_its_sequence_only() {
    // Two sequences in alternate cells, one shared cell: the row of sequence 1 at the last
    // position sees the even cells and the shared one; values are the cell numbers.
    let (n, dim) = (130, 32);
    let k = Cache::new(GgmlType::F32, &vec![0.0; n * dim], 1, dim);
    let v: Vec<f32> = (0..n)
        .flat_map(|c| std::iter::repeat_n(c as f32, dim))
        .collect();
    let v = Cache::new(GgmlType::F32, &v, 1, dim);
    let pos: Vec<i32> = (0..n as i32).collect();
    let mut seqs: Vec<u64> = (0..n).map(|c| 1 << (c % 2)).collect();
    seqs[7] = 0b11;
    let mask = CellMask {
        pos: &pos,
        seqs: &seqs,
        window: None,
    };
    let rows = QueryRows {
        q: &[0.5; 32],
        dim,
        pos: &[128],
        seq: &[1],
    };
    let mut state = FlashState::new();
    state.reset(1, dim);
    let mut scratch = FlashScratch::new();
    let (kh, vh) = (k.head(0), v.head(0));
    flash_attn(
        Isa::best(),
        &rows,
        &kh,
        &vh,
        &mask,
        1.0,
        0..n,
        &mut scratch,
        &mut state,
    )
    .unwrap();
    let mut out = vec![0.0; dim];
    state.write(0, &mut out);
    let seen: Vec<f64> = (0..=128)
        .filter(|c| c % 2 == 0 || *c == 7)
        .map(f64::from)
        .collect();
    let mean = seen.iter().sum::<f64>() / seen.len() as f64;
    assert!(
        out.iter().all(|&x| (f64::from(x) - mean).abs() < 1e-4),
        "{out:?} vs {mean}"
    );
}

#[test]
fn sizes_reserved_are_the_sizes_held() {
    for (n, dk, dv) in [(1, 64, 64), (3, 128, 96), (128, 256, 256)] {
        let mut scratch = FlashScratch::new();
        scratch.reserve(n, dk, dv);
        assert_eq!(scratch.capacity_bytes(), FlashScratch::bytes_for(n, dk, dv));
        scratch.reserve(n / 2, dk, dv);
        assert_eq!(scratch.capacity_bytes(), FlashScratch::bytes_for(n, dk, dv));
        let mut state = FlashState::new();
        state.reset(n, dv);
        assert_eq!(state.capacity_bytes(), FlashState::bytes_for(n, dv));
    }
}

#[test]
fn bad_heads_are_errors() {
    let storage = vec![0u32; 40];
    let bytes = as_bytes(&storage);
    assert_eq!(
        HeadRows::new(GgmlType::Q8_0, bytes, 34, 0, 48, 4).unwrap_err(),
        FlashAttnError::PartialBlock {
            ty: GgmlType::Q8_0,
            dim: 48
        }
    );
    assert!(matches!(
        HeadRows::new(GgmlType::Q8_0, &bytes[..34 * 4], 34, 0, 32, 5),
        Err(FlashAttnError::TooShort { n_cells: 5, .. })
    ));
    assert!(HeadRows::new(GgmlType::Q8_0, &bytes[..34 * 4], 34, 0, 32, 4).is_ok());
    assert!(HeadRows::new(GgmlType::Q8_0, bytes, usize::MAX, 0, 32, 4).is_err());
}

#[test]
fn bad_calls_are_errors() {
    let storage = vec![0u32; 256];
    let bytes = as_bytes(&storage);
    let heads = |ty, offset, dim| HeadRows::new(ty, bytes, 256, offset, dim, 2).unwrap();
    let (pos, seqs) = ([0, 1], [1, 1]);
    let mask = CellMask {
        pos: &pos,
        seqs: &seqs,
        window: None,
    };
    let rows = QueryRows {
        q: &[1.0; 32],
        dim: 32,
        pos: &[1],
        seq: &[1],
    };
    let mut scratch = FlashScratch::new();
    let mut state = FlashState::new();
    state.reset(1, 32);
    let mut call = |k: HeadRows<'_>, v: HeadRows<'_>, rows: &QueryRows<'_>, cells: Range<usize>| {
        flash_attn(
            Isa::Scalar,
            rows,
            &k,
            &v,
            &mask,
            1.0,
            cells,
            &mut scratch,
            &mut state,
        )
    };
    let f32_head = heads(GgmlType::F32, 0, 32);
    assert_eq!(call(f32_head, f32_head, &rows, 0..2), Ok(()));
    assert!(matches!(
        call(heads(GgmlType::Q8_0, 2, 32), f32_head, &rows, 0..2),
        Ok(())
    ));
    assert_eq!(
        call(heads(GgmlType::Q8_0, 1, 32), f32_head, &rows, 0..2),
        Err(FlashAttnError::Misaligned {
            ty: GgmlType::Q8_0,
            offset: 1,
            stride: 256
        })
    );
    assert!(matches!(
        call(f32_head, heads(GgmlType::F32, 2, 32), &rows, 0..2),
        Err(FlashAttnError::Misaligned {
            ty: GgmlType::F32,
            ..
        })
    ));
    assert!(matches!(
        call(f32_head, heads(GgmlType::F32, 0, 64), &rows, 0..2),
        Err(FlashAttnError::Shape {
            expected: 64,
            actual: 32,
            ..
        })
    ));
    assert!(matches!(
        call(heads(GgmlType::Q4_K, 0, 0), f32_head, &rows, 0..2),
        Err(FlashAttnError::EmptyHead)
    ));
    assert!(matches!(
        call(f32_head, heads(GgmlType::BF16, 0, 32), &rows, 0..2),
        Err(FlashAttnError::Unsupported { ty: GgmlType::BF16 })
    ));
    assert!(matches!(
        call(f32_head, f32_head, &rows, 1..3),
        Err(FlashAttnError::CellRange { end: 3, .. })
    ));
    let short = QueryRows {
        q: &[1.0; 31],
        ..rows
    };
    assert!(matches!(
        call(f32_head, f32_head, &short, 0..2),
        Err(FlashAttnError::Shape {
            expected: 32,
            actual: 31,
            ..
        })
    ));
}

/// Listing cells is laying them out in that order: the same sums, bit for bit, as a
/// range over a cache whose cells lie as listed (holes as empty cells). This is what makes
/// a sequence's attention independent of where its cells are and who else uses the cache.
#[test]
fn a_list_of_cells_sums_as_if_the_cells_lay_in_that_order() {
    let (n, dk, dv, group) = (150usize, 64usize, 64usize, 2usize);
    let shuffle = integers(n, 77);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| shuffle[i]);
    // Every seventh entry is a hole.
    let mut entries: Vec<Option<usize>> = Vec::new();
    for (i, &c) in order.iter().enumerate() {
        if i % 7 == 3 {
            entries.push(None);
        }
        entries.push(Some(c));
    }
    let list: Vec<u32> = entries
        .iter()
        .map(|e| e.map_or(NO_CELL, |c| c as u32))
        .collect();
    let (keys, values) = (uniform(n * dk, 5, 3.0), uniform(n * dv, 6, 1.0));
    let laid = |src: &[f32], dim: usize| -> Vec<f32> {
        entries
            .iter()
            .flat_map(|e| match e {
                Some(c) => src[c * dim..(c + 1) * dim].to_vec(),
                None => vec![0.0; dim],
            })
            .collect()
    };
    let (pos, seqs): (Vec<i32>, Vec<u64>) = ((0..n as i32).collect(), vec![1; n]);
    let laid_pos: Vec<i32> = entries.iter().map(|e| e.map_or(0, |c| c as i32)).collect();
    let laid_seqs: Vec<u64> = entries.iter().map(|e| u64::from(e.is_some())).collect();
    let q = uniform(3 * group * dk, 8, 3.0);
    let row_pos: Vec<i32> = [149, 60, 9].iter().flat_map(|&p| [p; 2]).collect();
    let rows = QueryRows {
        q: &q,
        dim: dk,
        pos: &row_pos,
        seq: &[1; 6],
    };
    for (kt, vt) in [
        (GgmlType::F32, GgmlType::F32),
        (GgmlType::F16, GgmlType::F16),
        (GgmlType::Q8_0, GgmlType::Q4_0),
    ] {
        for window in [None, Some(40)] {
            let run = |k: &Cache, v: &Cache, mask: CellMask<'_>, list: Option<&[u32]>| {
                let mut scratch = FlashScratch::new();
                let mut state = FlashState::new();
                state.reset(row_pos.len(), dv);
                let (kh, vh) = (k.head(0), v.head(0));
                let result = match list {
                    Some(l) => flash_attn_list(
                        Isa::best(),
                        &rows,
                        &kh,
                        &vh,
                        &mask,
                        0.125,
                        l,
                        &mut scratch,
                        &mut state,
                    ),
                    None => flash_attn(
                        Isa::best(),
                        &rows,
                        &kh,
                        &vh,
                        &mask,
                        0.125,
                        0..kh.n_cells(),
                        &mut scratch,
                        &mut state,
                    ),
                };
                result.unwrap();
                let mut out = vec![0.0f32; row_pos.len() * dv];
                for (r, o) in out.chunks_exact_mut(dv).enumerate() {
                    state.write(r, o);
                }
                out
            };
            let (k, v) = (Cache::new(kt, &keys, 1, dk), Cache::new(vt, &values, 1, dv));
            let (lk, lv) = (
                Cache::new(kt, &laid(&keys, dk), 1, dk),
                Cache::new(vt, &laid(&values, dv), 1, dv),
            );
            let mask = |pos, seqs| CellMask { pos, seqs, window };
            let listed = run(&k, &v, mask(&pos, &seqs), Some(&list));
            let ranged = run(&lk, &lv, mask(&laid_pos, &laid_seqs), None);
            assert_eq!(
                as_bytes(&listed),
                as_bytes(&ranged),
                "{kt}/{vt} window {window:?}"
            );
        }
    }
    let k = Cache::new(GgmlType::F32, &keys, 1, dk);
    let mut state = FlashState::new();
    state.reset(row_pos.len(), dk);
    let err = flash_attn_list(
        Isa::best(),
        &rows,
        &k.head(0),
        &k.head(0),
        &CellMask {
            pos: &pos,
            seqs: &seqs,
            window: None,
        },
        0.125,
        &[0, n as u32],
        &mut FlashScratch::new(),
        &mut state,
    );
    assert_eq!(
        err,
        Err(FlashAttnError::CellOutOfRange {
            cell: n,
            n_cells: n
        })
    );
}
