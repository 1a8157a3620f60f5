//! Products over weights repacked in groups of eight rows ([`Layout::Rows8`]) against
//! the same weights as the file stores them: the same bits, for every batch size, pool
//! and kernel path, alone and stacked; and the layouts a product cannot read refused.

use super::*;
use crate::arch::cast::as_bytes;
use crate::dot::test_data::{Bytes, random_activations, random_weights};
use crate::repack::repack_rows8;

const PACKABLE: [GgmlType; 4] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
];

/// Random rows of `ty`, and a copy repacked in groups of eight.
fn rows_and_packed(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> (Bytes, Bytes) {
    let plain = random_weights(ty, rows, cols / ty.block_size(), seed);
    let mut packed = Bytes::zeroed(plain.get().len());
    packed.get_mut().copy_from_slice(plain.get());
    repack_rows8(ty, rows, cols, packed.get_mut()).unwrap();
    (plain, packed)
}

fn weights(bytes: &Bytes, ty: GgmlType, rows: usize, cols: usize, layout: Layout) -> Weights<'_> {
    Weights {
        bytes: bytes.get(),
        ty,
        rows,
        cols,
        layout,
    }
}

/// The best SIMD path, whose fast product on the rows as stored is the reference: the
/// scalar path multiplies those in the exact order (fast numerics change nothing there),
/// while its product over repacked weights is the fast kernels' twin. Without SIMD the
/// runner never repacks, and the dot tests check the twin.
fn simd() -> Option<Isa> {
    let best = Isa::best();
    (best != Isa::Scalar).then_some(best)
}

#[test]
fn a_repacked_matrix_gives_the_bits_of_its_rows() {
    let Some(simd) = simd() else { return };
    // 19 blocks: two groups of eight and a tail of three. Seven groups of rows: tasks of
    // one to three groups, so both pairs of groups and a group alone.
    let (rows, cols) = (56, 32 * 19);
    for ty in PACKABLE {
        let (plain, packed) = rows_and_packed(ty, rows, cols, 5);
        let by_rows = weights(&plain, ty, rows, cols, Layout::Rows);
        let by_groups = weights(&packed, ty, rows, cols, Layout::Rows8);
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads).unwrap();
            for n_tokens in (1..=TOKEN_TILE + 1).chain([33]) {
                let x = random_activations(n_tokens * cols, n_tokens as u64);
                let mut scratch = MatmulScratch::new();
                let mut want = vec![0.0; n_tokens * rows];
                matmul_fast(&pool, simd, by_rows, &x, n_tokens, &mut want, &mut scratch).unwrap();
                for isa in Isa::available() {
                    let mut got = vec![f32::NAN; n_tokens * rows];
                    matmul_fast(&pool, isa, by_groups, &x, n_tokens, &mut got, &mut scratch)
                        .unwrap();
                    assert_eq!(
                        as_bytes(&got),
                        as_bytes(&want),
                        "{ty} {isa} threads={threads} n={n_tokens}"
                    );
                }
            }
        }
    }
}

#[test]
fn repacked_matrices_stack_as_their_rows_do() {
    let cols = 32 * 3;
    let parts = [8, 16, 8];
    let pool = ThreadPool::new(2).unwrap();
    let Some(simd) = simd() else { return };
    for ty in PACKABLE {
        let mats: Vec<(Bytes, Bytes)> = parts
            .iter()
            .enumerate()
            .map(|(i, &rows)| rows_and_packed(ty, rows, cols, i as u64))
            .collect();
        let stack = |layout: Layout| -> Vec<Weights<'_>> {
            mats.iter()
                .zip(parts)
                .map(|((plain, packed), rows)| {
                    let bytes = if layout == Layout::Rows {
                        plain
                    } else {
                        packed
                    };
                    weights(bytes, ty, rows, cols, layout)
                })
                .collect()
        };
        let total: usize = parts.iter().sum();
        for n_tokens in [1, 3, 6] {
            let x = random_activations(n_tokens * cols, 11);
            let mut scratch = MatmulScratch::new();
            for isa in Isa::available() {
                let mut results =
                    [(Layout::Rows, simd), (Layout::Rows8, isa)].map(|(layout, isa)| {
                        let mut out = vec![f32::NAN; n_tokens * total];
                        let parts = stack(layout);
                        matmul_stacked(
                            &pool,
                            isa,
                            Numerics::Fast,
                            &parts,
                            &x,
                            n_tokens,
                            &mut out,
                            &mut scratch,
                        )
                        .unwrap();
                        out
                    });
                let got = results[1].split_off(0);
                assert_eq!(
                    as_bytes(&got),
                    as_bytes(&results[0]),
                    "{ty} {isa} n={n_tokens}"
                );
            }
        }
    }
}

#[test]
fn layouts_a_product_cannot_read_are_refused() {
    let pool = ThreadPool::new(1).unwrap();
    let isa = Isa::best();
    let cols = 64;
    let (plain, packed) = rows_and_packed(GgmlType::Q8_0, 8, cols, 1);
    let x = vec![0.5; cols];
    let mut out = vec![0.0; 8];
    let mut scratch = MatmulScratch::new();
    let by_groups = weights(&packed, GgmlType::Q8_0, 8, cols, Layout::Rows8);
    let layout_error = |r: Result<(), MatmulError>| matches!(r, Err(MatmulError::Layout { .. }));
    // Exact numerics read the rows as the file stores them.
    assert!(layout_error(matmul(
        &pool,
        isa,
        by_groups,
        &x,
        1,
        &mut out,
        &mut scratch
    )));
    // Rows that are not whole groups.
    let short = Weights {
        rows: 4,
        ..by_groups
    };
    assert!(layout_error(matmul_fast(
        &pool,
        isa,
        short,
        &x,
        1,
        &mut out[..4],
        &mut scratch
    )));
    // A type without the layout.
    let q5 = random_weights(GgmlType::Q5_1, 8, 2, 1);
    let q5 = weights(&q5, GgmlType::Q5_1, 8, cols, Layout::Rows8);
    assert!(layout_error(matmul_fast(
        &pool,
        isa,
        q5,
        &x,
        1,
        &mut out,
        &mut scratch
    )));
    // Parts of a stack in different layouts.
    let by_rows = weights(&plain, GgmlType::Q8_0, 8, cols, Layout::Rows);
    let mut out2 = vec![0.0; 16];
    let mixed = matmul_stacked(
        &pool,
        isa,
        Numerics::Fast,
        &[by_rows, by_groups],
        &x,
        1,
        &mut out2,
        &mut scratch,
    );
    assert!(matches!(mixed, Err(MatmulError::Stack(_))));
}
