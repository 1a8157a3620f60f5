//! [`matmul_stacked`] against one product per matrix.

use super::*;
use crate::dot::test_data::{random_activations, random_weights};

/// Query, key and value shapes of a small model (rows 40, 16, 16 over 96 or 256 values).
fn parts_of(
    ty: GgmlType,
    rows: [usize; 3],
    seed: u64,
) -> (Vec<crate::dot::test_data::Bytes>, usize) {
    let cols = if ty.block_size() == 256 { 256 } else { 96 };
    let n_blocks = cols / ty.block_size();
    let bytes = rows
        .iter()
        .zip(seed..)
        .map(|(&r, s)| random_weights(ty, r, n_blocks, s))
        .collect();
    (bytes, cols)
}

#[test]
fn a_stacked_product_gives_each_matrix_its_own_products_bits() {
    use GgmlType::*;
    let rows = [40, 16, 16];
    for ty in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q4_K, Q6_K] {
        let (bytes, cols) = parts_of(ty, rows, ty.id().into());
        let parts: Vec<Weights> = bytes
            .iter()
            .zip(rows)
            .map(|(b, rows)| Weights {
                bytes: b.get(),
                ty,
                rows,
                cols,
                layout: Layout::Rows,
            })
            .collect();
        let total: usize = rows.iter().sum();
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads).unwrap();
            for isa in Isa::available() {
                for numerics in [Numerics::Exact, Numerics::Fast] {
                    for n in [1, 3, 4, 9] {
                        let x = random_activations(n * cols, n as u64);
                        let mut scratch = MatmulScratch::new();
                        let mut stacked = vec![f32::NAN; n * total];
                        matmul_stacked(
                            &pool,
                            isa,
                            numerics,
                            &parts,
                            &x,
                            n,
                            &mut stacked,
                            &mut scratch,
                        )
                        .unwrap();
                        let mut first = 0;
                        for p in &parts {
                            let mut alone = vec![f32::NAN; n * p.rows];
                            let product = match numerics {
                                Numerics::Exact => matmul,
                                Numerics::Fast => matmul_fast,
                            };
                            product(&pool, isa, *p, &x, n, &mut alone, &mut scratch).unwrap();
                            for t in 0..n {
                                let got = &stacked[t * total + first..][..p.rows];
                                let want = &alone[t * p.rows..][..p.rows];
                                let (got, want): (Vec<u32>, Vec<u32>) = (
                                    got.iter().map(|v| v.to_bits()).collect(),
                                    want.iter().map(|v| v.to_bits()).collect(),
                                );
                                assert_eq!(
                                    got, want,
                                    "{ty} {isa} {numerics:?} threads={threads} n={n} t={t}"
                                );
                            }
                            first += p.rows;
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn matrices_that_cannot_stack_are_refused() {
    let pool = ThreadPool::new(1).unwrap();
    let (q8, cols) = parts_of(GgmlType::Q8_0, [4, 4, 4], 1);
    let (q4, _) = parts_of(GgmlType::Q4_0, [4, 4, 4], 2);
    fn w(b: &crate::dot::test_data::Bytes, ty: GgmlType, cols: usize) -> Weights<'_> {
        Weights {
            bytes: b.get(),
            ty,
            rows: 4,
            cols,
            layout: Layout::Rows,
        }
    }
    let x = random_activations(cols, 3);
    let mut out = vec![0.0; 8];
    let mut scratch = MatmulScratch::new();
    let mut stack = |parts: &[Weights], out: &mut [f32]| {
        matmul_stacked(
            &pool,
            Isa::best(),
            Numerics::Fast,
            parts,
            &x,
            1,
            out,
            &mut scratch,
        )
    };
    let mixed = [
        w(&q8[0], GgmlType::Q8_0, cols),
        w(&q4[0], GgmlType::Q4_0, cols),
    ];
    assert!(matches!(
        stack(&mixed, &mut out),
        Err(MatmulError::Stack(_))
    ));
    assert!(matches!(stack(&[], &mut out), Err(MatmulError::Stack(_))));
    let five = [w(&q8[0], GgmlType::Q8_0, cols); 5];
    assert!(matches!(
        stack(&five, &mut [0.0; 20]),
        Err(MatmulError::Stack(_))
    ));
    let two = [
        w(&q8[0], GgmlType::Q8_0, cols),
        w(&q8[1], GgmlType::Q8_0, cols),
    ];
    assert!(matches!(
        stack(&two, &mut out[..7]),
        Err(MatmulError::Size { what: "output", .. })
    ));
    let f32_bytes = vec![0u8; 4 * cols * 4];
    let floats = [Weights {
        bytes: &f32_bytes,
        ty: GgmlType::F32,
        rows: 4,
        cols,
        layout: Layout::Rows,
    }];
    assert!(matches!(
        stack(&floats, &mut out[..4]),
        Err(MatmulError::UnsupportedType(GgmlType::F32))
    ));
    stack(&two, &mut out).unwrap();
}
