//! Random weight rows and activations for the dot and matmul tests.

use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::GgmlType;
use crate::arch::cast::{Pod, as_bytes, read_unaligned};
use crate::quant::dequantize_row;

/// Block counts that catch remainder handling: 1, 2, 3, powers of two and their neighbours.
pub(crate) const AWKWARD_BLOCKS: [usize; 12] = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33];

/// Bytes with 4-byte alignment, so any block type can be viewed over them.
pub(crate) struct Bytes {
    words: Vec<u32>,
    len: usize,
}

impl Bytes {
    pub(crate) fn zeroed(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(4)],
            len,
        }
    }

    pub(crate) fn get(&self) -> &[u8] {
        &as_bytes(&self.words)[..self.len]
    }

    pub(crate) fn get_mut(&mut self) -> &mut [u8] {
        &mut crate::arch::cast::as_bytes_mut(&mut self.words)[..self.len]
    }
}

/// A vector of `n` all-zero `T`.
pub(crate) fn zeroed<T: Pod>(n: usize) -> Vec<T> {
    let zero = read_unaligned::<T>(&vec![0u8; size_of::<T>()]).expect("sized");
    vec![zero; n]
}

/// A finite scale of random sign and magnitude between 2^-10 and 1.
fn scale(rng: &mut StdRng) -> f16 {
    let magnitude = 2f32.powf(rng.random_range(-10.0..0.0));
    f16::from_f32(if rng.random_bool(0.5) {
        magnitude
    } else {
        -magnitude
    })
}

/// Byte offsets of the f16 scale fields in one block of `ty` (random bits there could be
/// NaN or infinite).
fn scale_offsets(ty: GgmlType) -> &'static [usize] {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL => &[0],
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        _ => &[],
    }
}

/// `rows` random rows of `n_blocks` blocks of weight type `ty`: random quants, finite
/// random scales (random f32/f16 values for the float types).
pub(crate) fn random_weights(ty: GgmlType, rows: usize, n_blocks: usize, seed: u64) -> Bytes {
    let mut rng = StdRng::seed_from_u64(seed);
    let block = ty.type_size();
    let mut bytes = Bytes::zeroed(rows * n_blocks * block);
    let out = bytes.get_mut();
    match ty {
        GgmlType::F32 => {
            for v in out.chunks_exact_mut(4) {
                v.copy_from_slice(&rng.random_range(-1.0f32..1.0).to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for v in out.chunks_exact_mut(2) {
                v.copy_from_slice(&f16::from_f32(rng.random_range(-1.0..1.0)).to_le_bytes());
            }
        }
        _ => {
            rng.fill(out);
            for b in out.chunks_exact_mut(block) {
                for &at in scale_offsets(ty) {
                    b[at..at + 2].copy_from_slice(&scale(&mut rng).to_le_bytes());
                }
            }
        }
    }
    bytes
}

/// `n` random activations, mostly small with a few large ones as real activations have.
pub(crate) fn random_activations(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    (0..n)
        .map(|_| {
            let v = rng.random_range(-1.0f32..1.0);
            if rng.random_bool(0.02) { v * 30.0 } else { v }
        })
        .collect()
}

/// `rows` dequantized rows of `ty`.
pub(crate) fn dequantized(ty: GgmlType, bytes: &[u8], values: usize) -> Vec<f32> {
    let mut out = vec![0.0; values];
    dequantize_row(ty, bytes, &mut out).expect("dequantizable test type");
    out
}

/// `sum(a * b)` and `sum(|a * b|)` in f64.
pub(crate) fn dot_and_bound(a: &[f32], b: &[f32]) -> (f64, f64) {
    a.iter().zip(b).fold((0.0, 0.0), |(s, m), (&x, &y)| {
        let p = f64::from(x) * f64::from(y);
        (s + p, m + p.abs())
    })
}
