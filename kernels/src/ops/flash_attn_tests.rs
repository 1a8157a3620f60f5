//! Flash attention against the straight computation (every score, one softmax, in f64)
//! on the same dequantized keys and values, for every storage type, head size and mask.

use proptest::prelude::*;

use super::*;
use crate::quant::quantize_row;

/// A cache of `n_cells` rows of `n_kv` heads of `dim` values of type `ty`, as bytes.
struct Cache {
    ty: GgmlType,
    bytes: Vec<u8>,
    row_bytes: usize,
    head_bytes: usize,
    dim: usize,
    n_cells: usize,
}

impl Cache {
    fn new(ty: GgmlType, values: &[f32], n_kv: usize, dim: usize) -> Self {
        let row = n_kv * dim;
        let row_bytes = row / ty.block_size() * ty.type_size();
        let n_cells = values.len() / row;
        let mut bytes = vec![0u8; n_cells * row_bytes];
        for (src, dst) in values
            .chunks_exact(row)
            .zip(bytes.chunks_exact_mut(row_bytes))
        {
            quantize_row(ty, src, dst).unwrap();
        }
        Self {
            ty,
            bytes,
            row_bytes,
            head_bytes: dim / ty.block_size() * ty.type_size(),
            dim,
            n_cells,
        }
    }

    fn head(&self, h: usize) -> HeadRows<'_> {
        HeadRows::new(
            self.ty,
            &self.bytes,
            self.row_bytes,
            h * self.head_bytes,
            self.dim,
            self.n_cells,
        )
        .unwrap()
    }

    /// Cell `c`, head `h`, dequantized.
    fn values(&self, h: usize, c: usize) -> Vec<f32> {
        let mut out = vec![0.0; self.dim];
        self.head(h).read(c, &mut out).unwrap();
        out
    }
}

fn reference(
    q: &[f32],
    k: &Cache,
    v: &Cache,
    h: usize,
    scale: f32,
    visible: &dyn Fn(usize) -> bool,
) -> Vec<f64> {
    let cells: Vec<usize> = (0..k.n_cells).filter(|&c| visible(c)).collect();
    let mut out = vec![0.0f64; v.dim];
    if cells.is_empty() {
        return out;
    }
    let scores: Vec<f64> = cells
        .iter()
        .map(|&c| {
            let kc = k.values(h, c);
            f64::from(scale)
                * q.iter()
                    .zip(&kc)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum::<f64>()
        })
        .collect();
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    for (&c, w) in cells.iter().zip(&weights) {
        for (o, &x) in out.iter_mut().zip(&v.values(h, c)) {
            *o += w / total * f64::from(x);
        }
    }
    out
}

fn values(n: usize, seed: u64, amplitude: f32) -> Vec<f32> {
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

#[derive(Debug, Clone, Copy)]
enum Mask {
    /// Cells `0..=p`.
    Causal(usize),
    /// Cells `p - w < c <= p`.
    Window(usize, usize),
    /// Every third cell (cells of other sequences in between).
    Sparse,
    /// No cell.
    Nothing,
}

impl Mask {
    fn visible(self, c: usize) -> bool {
        match self {
            Mask::Causal(p) => c <= p,
            Mask::Window(p, w) => c <= p && p - c < w,
            Mask::Sparse => c % 3 == 1,
            Mask::Nothing => false,
        }
    }
}

const TYPES: [GgmlType; 6] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q5_1,
    GgmlType::IQ4_NL,
];

fn check(kt: GgmlType, vt: GgmlType, dim: usize, n_cells: usize, mask: Mask, seed: u64) {
    let (n_kv, h) = (2, 1);
    let scale = 1.0 / (dim as f32).sqrt();
    let k = Cache::new(kt, &values(n_cells * n_kv * dim, seed, 3.0), n_kv, dim);
    let v = Cache::new(vt, &values(n_cells * n_kv * dim, seed + 1, 1.0), n_kv, dim);
    let q = values(dim, seed + 2, 3.0);
    let want = reference(&q, &k, &v, h, scale, &|c| mask.visible(c));
    let mut out = vec![f32::NAN; dim];
    let mut scratch = FlashScratch::new();
    flash_attn_head(
        &q,
        &k.head(h),
        &v.head(h),
        scale,
        |c| mask.visible(c),
        &mut scratch,
        &mut out,
    )
    .unwrap();
    let peak = want.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-6);
    for (i, (&o, &w)) in out.iter().zip(&want).enumerate() {
        assert!(
            (f64::from(o) - w).abs() <= 1e-4 * peak,
            "K {kt}, V {vt}, dim {dim}, {n_cells} cells, {mask:?}: value {i} is {o}, want {w}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_the_straight_attention(
        kt in prop::sample::select(&TYPES[..]),
        vt in prop::sample::select(&TYPES[..]),
        dim in prop::sample::select(&[64usize, 128, 256][..]),
        n_cells in 1usize..300,
        pick in 0usize..4,
        seed in any::<u64>(),
    ) {
        let p = n_cells - 1 - (seed as usize % n_cells.min(17));
        let mask = match pick {
            0 => Mask::Causal(p),
            1 => Mask::Window(p, 1 + seed as usize % 70),
            2 => Mask::Sparse,
            _ => Mask::Nothing,
        };
        check(kt, vt, dim, n_cells, mask, seed);
    }
}

#[test]
fn float_heads_of_any_size_work() {
    for dim in [1, 3, 80, 96, 100] {
        check(GgmlType::F32, GgmlType::F16, dim, 130, Mask::Causal(129), 7);
    }
}

#[test]
fn a_query_that_sees_nothing_gets_zeros() {
    check(GgmlType::Q8_0, GgmlType::Q8_0, 64, 10, Mask::Nothing, 3);
}

#[test]
fn bad_shapes_are_errors() {
    let bytes = vec![0u8; 34 * 4];
    assert_eq!(
        HeadRows::new(GgmlType::Q8_0, &bytes, 34, 0, 48, 4).unwrap_err(),
        FlashAttnError::PartialBlock {
            ty: GgmlType::Q8_0,
            dim: 48
        }
    );
    assert!(matches!(
        HeadRows::new(GgmlType::Q8_0, &bytes, 34, 0, 32, 5),
        Err(FlashAttnError::TooShort { n_cells: 5, .. })
    ));
    assert!(HeadRows::new(GgmlType::Q8_0, &bytes, 34, 0, 32, 4).is_ok());
    assert!(HeadRows::new(GgmlType::Q8_0, &bytes, usize::MAX, 0, 32, 4).is_err());
}
