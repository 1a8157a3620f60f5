//! Fast numerics for the k-quants Q4_K, Q5_K and Q6_K: one order of additions for the
//! decode kernels (one weight row against one token) and the prompt kernels (a tile of
//! eight tokens in register lanes), and its scalar twin.
//!
//! For weight row `x` and activation row `y` (Q8_K), super-block `b` gives two integers,
//! exact in i32: `S1 = Σ_k sc_k · (Σ_{i∈k} u_i·a_i − OFFSET·Σ_{i∈k} a_i)` over its
//! sub-blocks `k` (of 32 values for Q4_K/Q5_K, 16 for Q6_K; `u` the stored unsigned
//! values, `OFFSET` 32 for Q6_K and 0 otherwise) and, for the types with minimums,
//! `S2 = Σ_k m_k · Σ_{i∈k} a_i`. Each is rounded to f32 once and added to partial sum
//! `b mod 8` by a fused multiply-add with `d·d'` (and `dmin·d'`):
//! `P[b mod 8] = fma(S1, d·d', P[b mod 8])`, `M[b mod 8] = fma(S2, dmin·d', M[b mod 8])`.
//! The result is `H(P) − H(M)` (`H` as in [`super::scalar_fast::tree8`]), or `H(P)`.
//!
//! ggml instead scales each super-block's eight lane sums apart; the integers here are
//! the same products, only added before their conversion, which is what fast numerics
//! allows. The activation sums are Q8_K's `bsums`.

use crate::blocks::{BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};
use crate::quant::get_scale_min_k4;

use super::lanes::{DecodedRows, LANES};
use super::scalar_fast::tree8;

/// A k-quant super-block as the fast kernels read it.
pub trait FastK: Copy {
    /// Values per sub-block (32 or 16).
    const SUB: usize;
    /// What the stored values hold above the quants (32 for Q6_K).
    const OFFSET: i32;
    /// Whether the type has minimums.
    const HAS_MIN: bool;
    /// Bits of the stored values (4, 5 or 6): how many byte products add as i16.
    const RAW_BITS: u32;
    /// The stored unsigned values, the sub-blocks' scales and minimums (as many as there
    /// are sub-blocks), `d` and `dmin` (0 without minimums).
    fn decode(&self, u: &mut [u8; QK_K], sc: &mut [i16; 16], mn: &mut [i16; 16]) -> (f32, f32);
}

impl FastK for BlockQ4K {
    const SUB: usize = 32;
    const OFFSET: i32 = 0;
    const HAS_MIN: bool = true;
    const RAW_BITS: u32 = 4;
    fn decode(&self, u: &mut [u8; QK_K], sc: &mut [i16; 16], mn: &mut [i16; 16]) -> (f32, f32) {
        for j in 0..4 {
            for l in 0..32 {
                let q = self.qs[32 * j + l];
                u[64 * j + l] = q & 0x0f;
                u[64 * j + 32 + l] = q >> 4;
            }
        }
        q45_scales(&self.scales, sc, mn);
        (self.d.to_f32(), self.dmin.to_f32())
    }
}

impl FastK for BlockQ5K {
    const SUB: usize = 32;
    const OFFSET: i32 = 0;
    const HAS_MIN: bool = true;
    const RAW_BITS: u32 = 5;
    fn decode(&self, u: &mut [u8; QK_K], sc: &mut [i16; 16], mn: &mut [i16; 16]) -> (f32, f32) {
        for j in 0..4 {
            for l in 0..32 {
                let q = self.qs[32 * j + l];
                let h = self.qh[l] >> (2 * j);
                u[64 * j + l] = (q & 0x0f) | ((h & 1) << 4);
                u[64 * j + 32 + l] = (q >> 4) | (((h >> 1) & 1) << 4);
            }
        }
        q45_scales(&self.scales, sc, mn);
        (self.d.to_f32(), self.dmin.to_f32())
    }
}

impl FastK for BlockQ6K {
    const SUB: usize = 16;
    const OFFSET: i32 = 32;
    const HAS_MIN: bool = false;
    const RAW_BITS: u32 = 6;
    fn decode(&self, u: &mut [u8; QK_K], sc: &mut [i16; 16], mn: &mut [i16; 16]) -> (f32, f32) {
        for h in 0..2 {
            let (ql, qh) = (&self.ql[64 * h..], &self.qh[32 * h..]);
            let out = &mut u[128 * h..];
            for l in 0..32 {
                out[l] = (ql[l] & 0x0f) | ((qh[l] & 3) << 4);
                out[l + 32] = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4);
                out[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                out[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
            }
        }
        for (s, &v) in sc.iter_mut().zip(&self.scales) {
            *s = i16::from(v);
        }
        mn.fill(0);
        (self.d.to_f32(), 0.0)
    }
}

fn q45_scales(packed: &[u8; 12], sc: &mut [i16; 16], mn: &mut [i16; 16]) {
    for j in 0..8 {
        let (s, m) = get_scale_min_k4(j, packed);
        sc[j] = i16::from(s);
        mn[j] = i16::from(m);
    }
    sc[8..].fill(0);
    mn[8..].fill(0);
}

/// `S1` and `S2` of one super-block from its decoded values (see the module's
/// documentation).
fn int_parts<W: FastK>(u: &[u8; QK_K], sc: &[i16; 16], mn: &[i16; 16], y: &BlockQ8K) -> (i32, i32) {
    let mut s1 = 0i32;
    let mut s2 = 0i32;
    for k in 0..QK_K / W::SUB {
        let range = k * W::SUB..(k + 1) * W::SUB;
        let dot: i32 = range
            .clone()
            .map(|i| i32::from(u[i]) * i32::from(y.qs[i]))
            .sum();
        let asum: i32 = y.bsums[k * W::SUB / 16..(k + 1) * W::SUB / 16]
            .iter()
            .map(|&s| i32::from(s))
            .sum();
        s1 += i32::from(sc[k]) * (dot - W::OFFSET * asum);
        s2 += i32::from(mn[k]) * asum;
    }
    (s1, s2)
}

/// The fast dot of one k-quant weight row with one Q8_K activation row, super-block by
/// super-block: the scalar twin of every fast k-quant kernel.
pub fn dot_fast_k<W: FastK>(x: &[W], y: &[BlockQ8K]) -> f32 {
    assert_eq!(
        x.len(),
        y.len(),
        "weight and activation rows differ in blocks"
    );
    let (mut u, mut sc, mut mn) = ([0u8; QK_K], [0i16; 16], [0i16; 16]);
    let mut p = [0.0f32; 8];
    let mut m = [0.0f32; 8];
    for (b, (xb, yb)) in x.iter().zip(y).enumerate() {
        let (d, dmin) = xb.decode(&mut u, &mut sc, &mut mn);
        let (s1, s2) = int_parts::<W>(&u, &sc, &mn, yb);
        p[b % 8] = (s1 as f32).mul_add(d * yb.d, p[b % 8]);
        if W::HAS_MIN {
            m[b % 8] = (s2 as f32).mul_add(dmin * yb.d, m[b % 8]);
        }
    }
    if W::HAS_MIN {
        tree8(&p) - tree8(&m)
    } else {
        tree8(&p)
    }
}

/// Bytes of one super-block of a k-quant lane tile: 256 quants of each of eight tokens,
/// eight pairs of `bsums` (i16) per token, and the eight scales.
pub const K_TILE_BLOCK_BYTES: usize = QK_K * LANES + 8 * 4 * LANES + 4 * LANES;

/// One tile of eight Q8_K activation rows for the k-quant lane kernels: per super-block,
/// the quants as in [`super::lanes::LaneTile`] (64 groups of 32 bytes), then eight
/// vectors whose lane `t` holds token `t`'s `bsums[2p]` and `bsums[2p + 1]`, then the
/// eight tokens' scales.
#[derive(Debug, Clone, Copy)]
pub struct KTile<'a> {
    /// `blocks × K_TILE_BLOCK_BYTES` bytes.
    pub bytes: &'a [u8],
}

/// Fills one k-quant tile (`out`, [`K_TILE_BLOCK_BYTES`] per super-block) from up to
/// eight activation rows of `per_row` super-blocks, zero past the last row.
pub fn interleave_k(acts: &[BlockQ8K], per_row: usize, out: &mut [u8]) {
    let rows = acts.len().checked_div(per_row).unwrap_or(0);
    assert!(rows <= LANES && acts.len() == rows * per_row);
    assert_eq!(out.len(), per_row * K_TILE_BLOCK_BYTES);
    out.fill(0);
    for b in 0..per_row {
        let block = &mut out[b * K_TILE_BLOCK_BYTES..(b + 1) * K_TILE_BLOCK_BYTES];
        let (q, rest) = block.split_at_mut(QK_K * LANES);
        let (bs, d) = rest.split_at_mut(8 * 4 * LANES);
        for t in 0..rows {
            let y = &acts[t * per_row + b];
            for g in 0..QK_K / 4 {
                for k in 0..4 {
                    q[g * 32 + 4 * t + k] = y.qs[4 * g + k] as u8;
                }
            }
            for p in 0..8 {
                let at = p * 32 + 4 * t;
                bs[at..at + 2].copy_from_slice(&y.bsums[2 * p].to_le_bytes());
                bs[at + 2..at + 4].copy_from_slice(&y.bsums[2 * p + 1].to_le_bytes());
            }
            d[4 * t..4 * t + 4].copy_from_slice(&y.d.to_le_bytes());
        }
    }
}

/// Decodes whole k-quant rows into `rows` from row `at` (`rows.per_row` super-blocks a
/// row): values into `u`, scales and minimums into `sc` and `mn` (16 a super-block),
/// `d` and `dmin` into `dw` and `mw`.
pub fn decode_k<W: FastK>(x: &[W], at: usize, rows: &mut DecodedRows) {
    let first = at * rows.per_row;
    for (i, xb) in x.iter().enumerate() {
        let b = first + i;
        let u: &mut [u8; QK_K] = (&mut rows.u[b * QK_K..(b + 1) * QK_K])
            .try_into()
            .expect("256 values");
        let sc: &mut [i16; 16] = (&mut rows.sc[b * 16..(b + 1) * 16])
            .try_into()
            .expect("16 scales");
        let mn: &mut [i16; 16] = (&mut rows.mn[b * 16..(b + 1) * 16])
            .try_into()
            .expect("16 minimums");
        let (d, dmin) = xb.decode(u, sc, mn);
        rows.dw[b] = d;
        rows.mw[b] = dmin;
    }
}

/// The fast dots of decoded k-quant row `r` with the eight tokens of `tile`: the portable
/// twin of the SIMD lane kernels.
pub fn dot_lanes_k_portable<W: FastK>(
    rows: &DecodedRows,
    r: usize,
    tile: &KTile<'_>,
) -> [f32; LANES] {
    let per_row = rows.per_row;
    let mut p = [[0.0f32; 8]; LANES];
    let mut m = [[0.0f32; 8]; LANES];
    for b in 0..per_row {
        let sb = r * per_row + b;
        let u = &rows.u[sb * QK_K..(sb + 1) * QK_K];
        let block = &tile.bytes[b * K_TILE_BLOCK_BYTES..(b + 1) * K_TILE_BLOCK_BYTES];
        let (q, rest) = block.split_at(QK_K * LANES);
        let (bs, d) = rest.split_at(8 * 4 * LANES);
        for t in 0..LANES {
            let a = |i: usize| i32::from(q[(i / 4) * 32 + 4 * t + i % 4] as i8);
            let bsum = |k16: usize| {
                let at = (k16 / 2) * 32 + 4 * t + 2 * (k16 % 2);
                i32::from(i16::from_le_bytes([bs[at], bs[at + 1]]))
            };
            let (mut s1, mut s2) = (0i32, 0i32);
            for k in 0..QK_K / W::SUB {
                let dot: i32 = (k * W::SUB..(k + 1) * W::SUB)
                    .map(|i| i32::from(u[i]) * a(i))
                    .sum();
                let asum: i32 = (k * W::SUB / 16..(k + 1) * W::SUB / 16).map(bsum).sum();
                s1 += i32::from(rows.sc[sb * 16 + k]) * (dot - W::OFFSET * asum);
                s2 += i32::from(rows.mn[sb * 16 + k]) * asum;
            }
            let da = f32::from_le_bytes(d[4 * t..4 * t + 4].try_into().expect("4 bytes"));
            p[t][b % 8] = (s1 as f32).mul_add(da * rows.dw[sb], p[t][b % 8]);
            if W::HAS_MIN {
                m[t][b % 8] = (s2 as f32).mul_add(da * rows.mw[sb], m[t][b % 8]);
            }
        }
    }
    std::array::from_fn(|t| {
        if W::HAS_MIN {
            tree8(&p[t]) - tree8(&m[t])
        } else {
            tree8(&p[t])
        }
    })
}
