//! The key side of flash attention: the query rows converted once per call into the
//! operand a key type's dot product takes, the dots of one cached key with up to four
//! query rows, and a block's scores ([`score_block`]).
//!
//! As llama.cpp's CPU flash attention does, a quantized key multiplies with the query
//! quantized to the key type's activation partner (Q8_0 for Q8_0, Q4_0, Q5_0 and IQ4_NL;
//! Q8_1 for Q4_1 and Q5_1), with the SIMD dots of [`crate::dot`]. F32 keys take the f32
//! query through [`crate::ops::dot_f32_ggml_isa`] (ggml's summation order, the one the
//! straight attention uses), F16 keys through [`crate::dot::vec_dot_f16_f32`], or on
//! AVX-512 a query row against a block's keys at once
//! ([`crate::dot::vec_dot_f16_f32_many`], the same bits).

use std::marker::PhantomData;

use half::f16;

use crate::arch::cast::{Pod, as_blocks_mut, as_bytes_mut};
use crate::cpu::Isa;
use crate::dot::{VecDot, vec_dot_f16_f32, vec_dot_f16_f32_many, vec_dot_f16_f32_many_rows};
use crate::ops::dot_f32_ggml_isa;

use super::FLASH_BLOCK;
use super::run::low_bits;

/// A key storage type, its query operand and their dot product.
pub(super) trait KeyKind {
    /// The stored element or block of a key row.
    type Weight: Pod;
    /// The element or block of a converted query row.
    type Act: Pod;
    /// The length of `buf` (in f32) a converted query row of `dk` values takes.
    fn query_len(dk: usize) -> usize;
    /// The query rows `q` (each `dk` values) in this type's operand: `q` itself, or
    /// quantized into `buf`. `None` when `buf` is too short.
    fn query<'a>(isa: Isa, q: &'a [f32], dk: usize, buf: &'a mut [f32]) -> Option<&'a [Self::Act]>;
    /// `k · q_t` for each of the `N` query rows.
    fn dots<const N: usize>(isa: Isa, k: &[Self::Weight], qs: [&[Self::Act]; N]) -> [f32; N];
    /// Whether [`KeyKind::dots_keys`] is the faster way on `isa`: a query row against
    /// many keys rather than a key against a few query rows.
    fn by_row(_: Isa) -> bool {
        false
    }
    /// `k_i · q` for each key `ks[i]` into `out[i]`, with [`KeyKind::dots`]'s bits.
    fn dots_keys(isa: Isa, ks: &[&[Self::Weight]], q: &[Self::Act], out: &mut [f32]) {
        for (o, k) in out.iter_mut().zip(ks) {
            *o = Self::dots::<1>(isa, k, [q])[0];
        }
    }
    /// [`KeyKind::dots_keys`] for `R` query rows that see the same keys.
    fn dots_keys_rows<const R: usize>(
        isa: Isa,
        ks: &[&[Self::Weight]],
        qs: [&[Self::Act]; R],
        outs: [&mut [f32]; R],
    ) {
        for (q, out) in qs.into_iter().zip(outs) {
            Self::dots_keys(isa, ks, q, out);
        }
    }
}

/// F32 keys.
pub(super) struct F32Keys;

impl KeyKind for F32Keys {
    type Weight = f32;
    type Act = f32;
    fn query_len(_: usize) -> usize {
        0
    }
    fn query<'a>(_: Isa, q: &'a [f32], _: usize, _: &'a mut [f32]) -> Option<&'a [f32]> {
        Some(q)
    }
    fn dots<const N: usize>(isa: Isa, k: &[f32], qs: [&[f32]; N]) -> [f32; N] {
        std::array::from_fn(|t| dot_f32_ggml_isa(isa, qs[t], k))
    }
}

/// F16 keys.
pub(super) struct F16Keys;

impl KeyKind for F16Keys {
    type Weight = f16;
    type Act = f32;
    fn query_len(_: usize) -> usize {
        0
    }
    fn query<'a>(_: Isa, q: &'a [f32], _: usize, _: &'a mut [f32]) -> Option<&'a [f32]> {
        Some(q)
    }
    fn dots<const N: usize>(isa: Isa, k: &[f16], qs: [&[f32]; N]) -> [f32; N] {
        std::array::from_fn(|t| vec_dot_f16_f32(isa, k, qs[t]))
    }
    fn by_row(isa: Isa) -> bool {
        matches!(isa, Isa::Avx512(_))
    }
    fn dots_keys(isa: Isa, ks: &[&[f16]], q: &[f32], out: &mut [f32]) {
        vec_dot_f16_f32_many(isa, ks, q, out);
    }
    fn dots_keys_rows<const R: usize>(
        isa: Isa,
        ks: &[&[f16]],
        qs: [&[f32]; R],
        outs: [&mut [f32]; R],
    ) {
        vec_dot_f16_f32_many_rows(isa, ks, qs, outs);
    }
}

/// Keys of a 32-element block type `K` (Q8_0, Q4_0, ...), dotted with quantized queries.
pub(super) struct BlockKeys<K>(PhantomData<K>);

impl<K: VecDot> KeyKind for BlockKeys<K> {
    type Weight = K::Weight;
    type Act = K::Act;
    fn query_len(dk: usize) -> usize {
        (dk / K::ACT_TYPE.block_size() * size_of::<K::Act>()).div_ceil(size_of::<f32>())
    }
    fn query<'a>(isa: Isa, q: &'a [f32], dk: usize, buf: &'a mut [f32]) -> Option<&'a [K::Act]> {
        let per_row = dk / K::ACT_TYPE.block_size();
        let n_rows = q.len() / dk;
        let bytes = as_bytes_mut(buf).get_mut(..n_rows * per_row * size_of::<K::Act>())?;
        let act = as_blocks_mut::<K::Act>(bytes)?;
        for (row, out) in q.chunks_exact(dk).zip(act.chunks_exact_mut(per_row)) {
            K::quantize(isa, row, out);
        }
        Some(act)
    }
    fn dots<const N: usize>(isa: Isa, k: &[K::Weight], qs: [&[K::Act]; N]) -> [f32; N] {
        K::dot(isa, k, qs)
    }
}

/// Keys a query row takes at once in [`score_block_by_row`]: the AVX-512 kernel sums
/// sixteen together.
const GROUP: usize = 16;

/// Scores of the cells `list` (entries `at` of the block) for every row, in
/// `scores[r * FLASH_BLOCK + i]`: `scale · q_r·k` where row `r` sees cell `list[i]`, `-inf`
/// elsewhere. Rows go four at a time so a key block is decoded once for four rows, or,
/// where the key kind says so ([`KeyKind::by_row`]), each row takes the keys it sees
/// together. `None` when a key row is not aligned for its blocks.
pub(super) fn score_block<K: KeyKind>(
    isa: Isa,
    call: &super::Call<'_>,
    q: &[K::Act],
    masks: &[u64],
    at: &[usize],
    list: &[usize],
    scores: &mut [f32],
) -> Option<()> {
    if K::by_row(isa) {
        return score_block_by_row::<K>(isa, call, q, masks, at, list, scores);
    }
    let n = masks.len();
    let per_row = q.len() / n;
    let q_row = |r: usize| &q[r * per_row..(r + 1) * per_row];
    for (i, (&j, &c)) in at.iter().zip(list).enumerate() {
        let k = call.keys.row::<K::Weight>(c)?;
        let mut r = 0;
        while r < n {
            let t = (n - r).min(4);
            let sees = |u: usize| masks[r + u] >> j & 1 == 1;
            let mut dots = [0.0f32; 4];
            if (0..t).any(sees) {
                match t {
                    4 => dots = K::dots::<4>(isa, k, std::array::from_fn(|u| q_row(r + u))),
                    3 => {
                        let d = K::dots::<3>(isa, k, std::array::from_fn(|u| q_row(r + u)));
                        dots[..3].copy_from_slice(&d);
                    }
                    2 => {
                        let d = K::dots::<2>(isa, k, std::array::from_fn(|u| q_row(r + u)));
                        dots[..2].copy_from_slice(&d);
                    }
                    _ => dots[0] = K::dots::<1>(isa, k, [q_row(r)])[0],
                }
            }
            for (u, &d) in dots.iter().enumerate().take(t) {
                scores[(r + u) * FLASH_BLOCK + i] = if sees(u) {
                    call.scores.of(d)
                } else {
                    f32::NEG_INFINITY
                };
            }
            r += t;
        }
    }
    Some(())
}

/// [`score_block`] by rows: each row's visible keys go to [`KeyKind::dots_keys`]
/// [`GROUP`] at a time, and consecutive rows (up to four) that see the same keys, as the
/// query heads of one token do, go together ([`KeyKind::dots_keys_rows`]).
fn score_block_by_row<K: KeyKind>(
    isa: Isa,
    call: &super::Call<'_>,
    q: &[K::Act],
    masks: &[u64],
    at: &[usize],
    list: &[usize],
    scores: &mut [f32],
) -> Option<()> {
    let n = masks.len();
    let per_row = q.len() / n;
    let mut keys: [&[K::Weight]; FLASH_BLOCK] = [&[]; FLASH_BLOCK];
    for (k, &c) in keys.iter_mut().zip(list) {
        *k = call.keys.row::<K::Weight>(c)?;
    }
    let keys = &keys[..list.len()];
    let mut r = 0;
    while r < n {
        let mut t = 1;
        while t < 4 && r + t < n && masks[r + t] == masks[r] {
            t += 1;
        }
        let rows = Rows {
            q,
            per_row,
            first: r,
            mask: masks[r],
        };
        let scores = &mut scores[r * FLASH_BLOCK..(r + t) * FLASH_BLOCK];
        match t {
            4 => score_rows::<K, 4>(isa, call, rows, at, keys, scores),
            3 => score_rows::<K, 3>(isa, call, rows, at, keys, scores),
            2 => score_rows::<K, 2>(isa, call, rows, at, keys, scores),
            _ => score_rows::<K, 1>(isa, call, rows, at, keys, scores),
        }
        r += t;
    }
    Some(())
}

/// Query rows `first..` of a call that see the same cells (`mask`).
#[derive(Clone, Copy)]
struct Rows<'a, A> {
    q: &'a [A],
    per_row: usize,
    first: usize,
    mask: u64,
}

/// The scores of `R` rows that see the same keys, into their rows of `scores` (`R` rows of
/// [`FLASH_BLOCK`]): the visible keys [`GROUP`] at a time.
fn score_rows<K: KeyKind, const R: usize>(
    isa: Isa,
    call: &super::Call<'_>,
    rows: Rows<'_, K::Act>,
    at: &[usize],
    keys: &[&[K::Weight]],
    scores: &mut [f32],
) {
    let qs: [&[K::Act]; R] = std::array::from_fn(|u| {
        let r = rows.first + u;
        &rows.q[r * rows.per_row..(r + 1) * rows.per_row]
    });
    // Entries `0..n` in order (`at` strictly increases), every one seen: the keys go as
    // they lie, GROUP at a time, and every score is written.
    let n = at.len();
    if at.last() == Some(&(n - 1)) && rows.mask | !low_bits(n) == u64::MAX {
        for first in (0..n).step_by(GROUP) {
            let sel = &keys[first..(first + GROUP).min(n)];
            let mut dots = [[0.0f32; GROUP]; R];
            let outs = dots.each_mut().map(|d| &mut d[..sel.len()]);
            K::dots_keys_rows::<R>(isa, sel, qs, outs);
            for (u, d) in dots.iter().enumerate() {
                let row = &mut scores[u * FLASH_BLOCK + first..][..sel.len()];
                for (s, &d) in row.iter_mut().zip(d) {
                    *s = call.scores.of(d);
                }
            }
        }
        return;
    }
    for u in 0..R {
        scores[u * FLASH_BLOCK..u * FLASH_BLOCK + keys.len()].fill(f32::NEG_INFINITY);
    }
    let (mut idx, mut sel) = ([0usize; GROUP], [&[][..]; GROUP]);
    let mut m = 0;
    let mut flush = |sel: &[&[K::Weight]], idx: &[usize]| {
        let mut dots = [[0.0f32; GROUP]; R];
        let outs = dots.each_mut().map(|d| &mut d[..sel.len()]);
        K::dots_keys_rows::<R>(isa, sel, qs, outs);
        for (u, d) in dots.iter().enumerate() {
            for (&i, &d) in idx.iter().zip(d) {
                scores[u * FLASH_BLOCK + i] = call.scores.of(d);
            }
        }
    };
    for (i, &j) in at.iter().enumerate() {
        if rows.mask >> j & 1 == 0 {
            continue;
        }
        (idx[m], sel[m]) = (i, keys[i]);
        m += 1;
        if m == GROUP {
            flush(&sel, &idx);
            m = 0;
        }
    }
    if m > 0 {
        flush(&sel[..m], &idx[..m]);
    }
}
