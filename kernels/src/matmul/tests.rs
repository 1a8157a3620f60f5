use super::*;
use crate::arch::cast::as_bytes;
use crate::dot::test_data::{dequantized, dot_and_bound, random_activations, random_weights};

const TYPES: [GgmlType; 13] = {
    use GgmlType::*;
    [
        Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, F32, F16,
    ]
};

/// Quantizes `x` as `matmul` does and dequantizes it again.
fn round_trip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let act = partner(ty).unwrap();
    if act == GgmlType::F32 {
        return x.to_vec();
    }
    let row_bytes = x.len() / act.block_size() * act.type_size();
    let mut bytes = vec![0u32; row_bytes.div_ceil(4)];
    let bytes = &mut crate::arch::cast::as_bytes_mut(&mut bytes)[..row_bytes];
    crate::quant::quantize_row(act, x, bytes).unwrap();
    dequantized(act, bytes, x.len())
}

#[test]
fn every_type_matches_the_dequantized_product_on_every_path_and_pool() {
    let (rows, n_tokens) = (13, 6);
    for ty in TYPES {
        let cols = 2 * ty.block_size().max(32) * if ty.block_size() == 1 { 4 } else { 1 };
        let n_blocks = cols / ty.block_size();
        let w = random_weights(ty, rows, n_blocks, ty.id().into());
        let wd = dequantized(ty, w.get(), rows * cols);
        let x = random_activations(n_tokens * cols, 7);
        let xq: Vec<f32> = x.chunks(cols).flat_map(|xt| round_trip(ty, xt)).collect();
        let weights = Weights {
            bytes: w.get(),
            ty,
            rows,
            cols,
            layout: Layout::Rows,
        };
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads).unwrap();
            for isa in Isa::available() {
                let mut out = vec![f32::NAN; n_tokens * rows];
                let mut scratch = MatmulScratch::new();
                matmul(&pool, isa, weights, &x, n_tokens, &mut out, &mut scratch).unwrap();
                for t in 0..n_tokens {
                    for r in 0..rows {
                        let wr = &wd[r * cols..(r + 1) * cols];
                        let (exact, bound) = dot_and_bound(wr, &xq[t * cols..(t + 1) * cols]);
                        let got = f64::from(out[t * rows + r]);
                        let rel = if partner(ty) == Some(GgmlType::Q8_1) {
                            2e-3
                        } else {
                            1e-5
                        };
                        assert!(
                            (got - exact).abs() <= rel * bound + 1e-6,
                            "{ty} {isa} threads={threads} t={t} r={r}: {got} vs {exact}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_batch_equals_its_tokens_one_at_a_time() {
    let (rows, cols, n_tokens) = (37, 512, 11);
    let pool = ThreadPool::new(2).unwrap();
    let x = random_activations(n_tokens * cols, 3);
    for ty in TYPES {
        let w = random_weights(ty, rows, cols / ty.block_size(), 99);
        let weights = Weights {
            bytes: w.get(),
            ty,
            rows,
            cols,
            layout: Layout::Rows,
        };
        let isa = Isa::best();
        let mut scratch = MatmulScratch::new();
        let mut batch = vec![0.0; n_tokens * rows];
        matmul(&pool, isa, weights, &x, n_tokens, &mut batch, &mut scratch).unwrap();
        for t in 0..n_tokens {
            let mut one = vec![0.0; rows];
            let xt = &x[t * cols..(t + 1) * cols];
            matmul(&pool, isa, weights, xt, 1, &mut one, &mut scratch).unwrap();
            assert_eq!(
                as_bytes(&one),
                as_bytes(&batch[t * rows..(t + 1) * rows]),
                "{ty} t={t}"
            );
        }
    }
}

#[test]
fn the_fast_product_is_the_exact_one_up_to_the_order_of_its_additions() {
    let rows = 21;
    let pool = ThreadPool::new(2).unwrap();
    for ty in TYPES {
        // 19 blocks: two groups of eight and a tail of three, for the fast kernels.
        let cols = if ty.block_size() == 32 { 32 * 19 } else { 512 };
        let w = random_weights(ty, rows, cols / ty.block_size(), 17);
        let weights = Weights {
            bytes: w.get(),
            ty,
            rows,
            cols,
            layout: Layout::Rows,
        };
        let wd = dequantized(ty, w.get(), rows * cols);
        // 33 tokens: F16 rows are widened to f32 from 32 on.
        for n_tokens in (1..=TOKEN_TILE + 3).chain([33]) {
            let x = random_activations(n_tokens * cols, n_tokens as u64);
            let bound = |i: usize| {
                let (t, r) = (i / rows, i % rows);
                dot_and_bound(&wd[r * cols..(r + 1) * cols], &x[t * cols..(t + 1) * cols]).1
            };
            for isa in Isa::available() {
                let mut scratch = MatmulScratch::new();
                let mut exact = vec![0.0; n_tokens * rows];
                let mut fast = vec![f32::NAN; n_tokens * rows];
                matmul(&pool, isa, weights, &x, n_tokens, &mut exact, &mut scratch).unwrap();
                matmul_fast(&pool, isa, weights, &x, n_tokens, &mut fast, &mut scratch).unwrap();
                for (i, (f, e)) in fast.iter().zip(&exact).enumerate() {
                    // A reordered sum, and the offsets of Q4_0/Q5_0 taken out after it.
                    let tol = 64.0 * f64::from(f32::EPSILON) * bound(i);
                    assert!(
                        f64::from((f - e).abs()) <= tol,
                        "{ty} {isa} n={n_tokens} [{i}]: {f} vs {e}"
                    );
                }
                // Each token adds alone as it does in the batch, whatever the batch.
                for t in 0..n_tokens {
                    let mut one = vec![0.0; rows];
                    let xt = &x[t * cols..(t + 1) * cols];
                    matmul_fast(&pool, isa, weights, xt, 1, &mut one, &mut scratch).unwrap();
                    assert_eq!(
                        as_bytes(&one),
                        as_bytes(&fast[t * rows..(t + 1) * rows]),
                        "{ty} {isa} t={t}"
                    );
                }
            }
        }
    }
}

#[test]
fn shapes_and_types_are_checked() {
    let pool = ThreadPool::new(1).unwrap();
    let isa = Isa::Scalar;
    let w = random_weights(GgmlType::Q8_0, 2, 2, 1);
    let weights = Weights {
        bytes: w.get(),
        ty: GgmlType::Q8_0,
        rows: 2,
        cols: 64,
        layout: Layout::Rows,
    };
    let mut scratch = MatmulScratch::new();
    let x = vec![0.5; 64];
    let mut out = vec![0.0; 2];
    assert_eq!(
        matmul(&pool, isa, weights, &x, 1, &mut out, &mut scratch),
        Ok(())
    );
    let err = matmul(&pool, isa, weights, &x[..63], 1, &mut out, &mut scratch);
    assert_eq!(
        err,
        Err(MatmulError::Size {
            what: "activations",
            actual: 63,
            expected: 64
        })
    );
    let err = matmul(&pool, isa, weights, &x, 1, &mut out[..1], &mut scratch);
    assert_eq!(
        err,
        Err(MatmulError::Size {
            what: "output",
            actual: 1,
            expected: 2
        })
    );
    let short = Weights { rows: 3, ..weights };
    let err = matmul(&pool, isa, short, &x, 1, &mut out, &mut scratch);
    assert!(matches!(
        err,
        Err(MatmulError::Size {
            what: "weights",
            ..
        })
    ));
    let partial = Weights {
        cols: 48,
        layout: Layout::Rows,
        ..weights
    };
    let err = matmul(&pool, isa, partial, &x[..48], 1, &mut out, &mut scratch);
    assert!(matches!(err, Err(MatmulError::PartialBlock { .. })));
    let bf16 = Weights {
        ty: GgmlType::BF16,
        ..weights
    };
    let err = matmul(&pool, isa, bf16, &x, 1, &mut out, &mut scratch);
    assert_eq!(err, Err(MatmulError::UnsupportedType(GgmlType::BF16)));
    let misaligned = Weights {
        bytes: &w.get()[1..35],
        rows: 1,
        cols: 32,
        ..weights
    };
    let err = matmul(
        &pool,
        isa,
        misaligned,
        &x[..32],
        1,
        &mut out[..1],
        &mut scratch,
    );
    assert_eq!(err, Err(MatmulError::Misaligned(GgmlType::Q8_0)));
}

#[test]
fn the_scratch_stops_growing_once_sized() {
    let pool = ThreadPool::new(2).unwrap();
    let (rows, cols) = (8, 256);
    let w = random_weights(GgmlType::Q4_K, rows, 1, 5);
    let weights = Weights {
        bytes: w.get(),
        ty: GgmlType::Q4_K,
        rows,
        cols,
        layout: Layout::Rows,
    };
    let mut scratch = MatmulScratch::for_shape(GgmlType::Q4_K, cols, 4);
    let before = scratch.bytes();
    assert_eq!(before, 4 * 292);
    let x = random_activations(4 * cols, 1);
    let mut out = vec![0.0; 4 * rows];
    for n in 1..=4 {
        matmul(
            &pool,
            Isa::best(),
            weights,
            &x[..n * cols],
            n,
            &mut out[..n * rows],
            &mut scratch,
        )
        .unwrap();
    }
    assert_eq!(scratch.bytes(), before);
}
