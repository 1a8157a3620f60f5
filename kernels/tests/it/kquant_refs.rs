//! Our K-quant quantizers against llama.cpp's reference ones (`quantize_row_q*_K_ref`), on
//! the bytes `tests/data/kquants_reference.c` wrote into `tests/data/kquants-ref.bin` (the
//! generator documents the format). The inputs are rebuilt here with the generator's
//! formulas, and checked against its hashes of them before any byte is compared.

use std::path::Path;

use kernels::GgmlType;
use kernels::quant::quantize_row;

/// The generator's xorshift32 stream and its exact uniform draws.
struct Rng(u32);

impl Rng {
    fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    /// Uniform in [0, 1): 24 random bits times 2^-24.
    fn unit(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    /// Uniform in [-1, 1).
    fn sym(&mut self) -> f32 {
        self.unit() * 2.0 - 1.0
    }
}

/// Input row `row` of `n` values, as the generator's `fill` makes it: the cases include
/// all-zero, constant, outlier, below-epsilon, negative-only, positive-only, per-sub-block
/// scales, f16-subnormal scales and exact ties, then 16 bell-shaped rows of 1024.
fn input(row: u32, n: usize) -> Vec<f32> {
    let mut rng = Rng(0x9E37_79B9 ^ (row + 1).wrapping_mul(0x85EB_CA6B));
    (0..n)
        .map(|i| {
            let (b, s) = (i / 256, (i % 256) / 16);
            match row {
                0 => rng.sym(),
                1 => {
                    let t = rng.sym();
                    t * t * t * 4.0
                }
                2 => {
                    let v = match b {
                        0 => 0.0,
                        1 => 0.37,
                        2 => rng.sym() * 0.1,
                        _ => rng.sym() * 1e-20,
                    };
                    if i == 2 * 256 + 77 { 100.0 } else { v }
                }
                3 => -(rng.unit() * 3.0) - 0.01,
                4 => match s {
                    3 => 0.0,
                    5 => -0.5,
                    9 => 2.0,
                    _ => rng.sym() * (1u32 << s) as f32 / 256.0,
                },
                5 => rng.sym() * 1e-7,
                6 if b == 0 => rng.sym() * 1000.0,
                6 => rng.unit() * 2.0 + 0.5,
                7 => -1.25,
                8 => ((rng.next_u32() >> 8) % 65) as f32 / 8.0 - 4.0,
                9 => {
                    let v = rng.sym() * if b == 1 { 1e-3 } else { 3.0 };
                    if i % 97 == 0 { -v * 40.0 } else { v }
                }
                _ => {
                    let (a, c, d) = (rng.sym(), rng.sym(), rng.sym());
                    let v = (a + c + d) * (1u32 << (row % 8)) as f32 / 16.0;
                    if i % 61 == 0 { v * 8.0 } else { v }
                }
            }
        })
        .collect()
}

/// FNV-1a over the little-endian bytes of the values, as the generator hashes its inputs.
fn fnv(x: &[f32]) -> u32 {
    let mut h = 2_166_136_261u32;
    for v in x {
        for byte in v.to_le_bytes() {
            h ^= u32::from(byte);
            h = h.wrapping_mul(16_777_619);
        }
    }
    h
}

fn u32_at(raw: &[u8], at: &mut usize) -> u32 {
    let v = u32::from_le_bytes(raw[*at..*at + 4].try_into().unwrap());
    *at += 4;
    v
}

#[test]
fn k_quants_are_byte_identical_to_llama_cpp_reference() {
    let raw =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kquants-ref.bin"))
            .unwrap();
    assert_eq!(&raw[..4], b"KQRF");
    let mut at = 4;
    let n_rows = u32_at(&raw, &mut at);
    let mut rows = Vec::new();
    for row in 0..n_rows {
        let n = u32_at(&raw, &mut at) as usize;
        let x = input(row, n);
        assert_eq!(
            fnv(&x),
            u32_at(&raw, &mut at),
            "input row {row} differs from the generator's"
        );
        rows.push(x);
    }
    let mut types = Vec::new();
    while at < raw.len() {
        let ty = GgmlType::from_id(u32_at(&raw, &mut at)).unwrap();
        types.push(ty);
        for (r, x) in rows.iter().enumerate() {
            let len = ty.row_bytes(x.len() as u64).unwrap() as usize;
            let want = &raw[at..at + len];
            at += len;
            let mut got = vec![0x55u8; len];
            quantize_row(ty, x, &mut got).unwrap();
            if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
                let size = ty.type_size();
                let block = i / size;
                let range = block * size..(block + 1) * size;
                panic!(
                    "{ty} row {r}: byte {i} (block {block}, offset {}) differs\n ours:      {:02x?}\n llama.cpp: {:02x?}",
                    i % size,
                    &got[range.clone()],
                    &want[range]
                );
            }
        }
    }
    use GgmlType::*;
    assert_eq!(types, [Q2_K, Q3_K, Q4_K, Q5_K, Q6_K]);
}
