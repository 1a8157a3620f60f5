//! Fast-numerics products over float weights (F32 and F16): a tile of up to
//! [`TILE_ROWS`] weight rows by up to [`TILE_TOKENS`] f32 activation rows at once, which
//! is what a prompt or a batch of embeddings multiplies. The exact path adds in ggml's
//! orders one row at a time and is bound by its loads; a tile reuses every load.
//!
//! The order of the additions, for each (row, token) dot of `cols` values: eight lanes,
//! lane `j` summing `w[k] * x[k]` for `k ≡ j (mod 8)` over the whole groups of eight, in
//! order, with fused multiply-adds; the lanes reduced as `((l0 + l4) + (l2 + l6)) +
//! ((l1 + l5) + (l3 + l7))`; the last `cols % 8` products, each rounded, summed from zero
//! in order and added last. It does not depend on the tile's shape, so a token's bits do
//! not depend on the batch it came in; [`tile_scalar`] is the same order in portable Rust.

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::GgmlType;
use crate::arch::cast::Pod;
#[cfg(target_arch = "x86_64")]
use crate::arch::x86;
use crate::cpu::Isa;

/// Weight rows per tile.
pub const TILE_ROWS: usize = 4;

/// Activation rows per tile.
pub const TILE_TOKENS: usize = 3;

/// A float weight type with a tiled fast-numerics kernel.
pub trait FloatWeight: Pod + Copy + Send + Sync + Into<f32> {
    /// The GGML type of the weights.
    const TYPE: GgmlType;

    /// The `R × N` dots of weight rows `w` with activation rows `x`, all of one length,
    /// on `isa` (`R <= TILE_ROWS`, `N <= TILE_TOKENS` is what the kernels are tuned for).
    fn tile<const R: usize, const N: usize>(
        isa: Isa,
        w: [&[Self]; R],
        x: [&[f32]; N],
    ) -> [[f32; N]; R];

    /// Widens `src` into `dst` (of one length), exactly.
    fn widen(src: &[Self], dst: &mut [f32]);
}

impl FloatWeight for f32 {
    const TYPE: GgmlType = GgmlType::F32;

    fn tile<const R: usize, const N: usize>(
        isa: Isa,
        w: [&[f32]; R],
        x: [&[f32]; N],
    ) -> [[f32; N]; R] {
        match isa {
            Isa::Scalar => tile_scalar(w, x),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(token) => x86::tile_f32_avx2(token, w, x),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(token) => x86::tile_f32_avx2(token.avx2(), w, x),
        }
    }

    fn widen(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl FloatWeight for f16 {
    const TYPE: GgmlType = GgmlType::F16;

    fn tile<const R: usize, const N: usize>(
        isa: Isa,
        w: [&[f16]; R],
        x: [&[f32]; N],
    ) -> [[f32; N]; R] {
        match isa {
            Isa::Scalar => tile_scalar(w, x),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(token) => x86::tile_f16_avx2(token, w, x),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(token) => x86::tile_f16_avx2(token.avx2(), w, x),
        }
    }

    fn widen(src: &[f16], dst: &mut [f32]) {
        // `half`'s slice conversion uses F16C where the CPU has it.
        src.convert_to_f32_slice(dst);
    }
}

/// [`FloatWeight::tile`] for a tile of `w.len()` rows (1..=[`TILE_ROWS`]) by `x.len()`
/// tokens (1..=[`TILE_TOKENS`]) known only at run time; the sums are in the top-left
/// corner of the result.
pub fn tile_up_to<E: FloatWeight>(
    isa: Isa,
    w: &[&[E]],
    x: &[&[f32]],
) -> [[f32; TILE_TOKENS]; TILE_ROWS] {
    fn place<const R: usize, const N: usize>(
        sums: [[f32; N]; R],
    ) -> [[f32; TILE_TOKENS]; TILE_ROWS] {
        let mut all = [[0.0; TILE_TOKENS]; TILE_ROWS];
        for (all, sums) in all.iter_mut().zip(sums) {
            all[..N].copy_from_slice(&sums);
        }
        all
    }
    macro_rules! shapes {
        ($(($r:literal, $n:literal)),*) => {
            match (w.len(), x.len()) {
                $(($r, $n) => place(E::tile::<$r, $n>(
                    isa,
                    std::array::from_fn(|i| w[i]),
                    std::array::from_fn(|i| x[i]),
                )),)*
                (r, n) => panic!("a float tile of {r} rows by {n} tokens"),
            }
        };
    }
    shapes!(
        (4, 3),
        (4, 2),
        (4, 1),
        (3, 3),
        (3, 2),
        (3, 1),
        (2, 3),
        (2, 2),
        (2, 1),
        (1, 3),
        (1, 2),
        (1, 1)
    )
}

/// The scalar twin of the tile kernels: the same additions in the same order (see the
/// module's documentation), so the same bits.
pub fn tile_scalar<E: FloatWeight, const R: usize, const N: usize>(
    w: [&[E]; R],
    x: [&[f32]; N],
) -> [[f32; N]; R] {
    let cols = x.first().map_or(0, |x| x.len());
    assert!(w.iter().all(|w| w.len() == cols) && x.iter().all(|x| x.len() == cols));
    let body = cols - cols % 8;
    std::array::from_fn(|r| {
        std::array::from_fn(|n| {
            let mut lanes = [0.0f32; 8];
            for (wc, xc) in w[r][..body]
                .chunks_exact(8)
                .zip(x[n][..body].chunks_exact(8))
            {
                for ((l, &w), &x) in lanes.iter_mut().zip(wc).zip(xc) {
                    *l = w.into().mul_add(x, *l);
                }
            }
            let l = lanes;
            let sum = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
            let tail = (w[r][body..].iter().zip(&x[n][body..]))
                .fold(0.0f32, |t, (&w, x)| t + w.into() * x);
            sum + tail
        })
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every (row, token) dot of a `R × N` tile on `isa`, against the scalar twin (bit for
    /// bit), against one-by-one tiles (bit for bit), and against f64 within a reordering
    /// budget.
    fn check<E: FloatWeight, const R: usize, const N: usize>(
        isa: Isa,
        w: &[Vec<E>],
        x: &[Vec<f32>],
    ) -> Result<(), TestCaseError> {
        let wr: [&[E]; R] = std::array::from_fn(|r| &w[r][..]);
        let xr: [&[f32]; N] = std::array::from_fn(|n| &x[n][..]);
        let got = E::tile(isa, wr, xr);
        prop_assert_eq!(got, tile_scalar(wr, xr));
        for r in 0..R {
            for n in 0..N {
                let one = E::tile(isa, [wr[r]], [xr[n]])[0][0];
                prop_assert_eq!(got[r][n].to_bits(), one.to_bits(), "row {} token {}", r, n);
                let products = w[r].iter().zip(&x[n]).map(|(&a, &b)| {
                    let p = f64::from(a.into()) * f64::from(b);
                    (p, p.abs())
                });
                let (exact, magnitude) = products.fold((0.0, 0.0), |s, p| (s.0 + p.0, s.1 + p.1));
                let budget =
                    8.0 * f64::from(f32::EPSILON) * magnitude + f64::from(f32::MIN_POSITIVE);
                prop_assert!(
                    (f64::from(got[r][n]) - exact).abs() <= budget,
                    "row {} token {}: {} against {}",
                    r,
                    n,
                    got[r][n],
                    exact
                );
            }
        }
        Ok(())
    }

    fn rows(n: usize, cols: usize) -> impl Strategy<Value = Vec<Vec<f32>>> {
        prop::collection::vec(prop::collection::vec(-4.0f32..4.0, cols), n)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn tiles_match_the_scalar_twin_at_awkward_sizes(
            (w, x) in (0usize..90).prop_flat_map(|cols| (rows(4, cols), rows(3, cols)))
        ) {
            let w16: Vec<Vec<f16>> = w.iter().map(|r| r.iter().map(|&v| f16::from_f32(v)).collect()).collect();
            for isa in Isa::available() {
                check::<f32, 4, 3>(isa, &w, &x)?;
                check::<f32, 3, 2>(isa, &w, &x)?;
                check::<f32, 1, 1>(isa, &w, &x)?;
                check::<f16, 4, 3>(isa, &w16, &x)?;
                check::<f16, 2, 1>(isa, &w16, &x)?;
                check::<f16, 1, 3>(isa, &w16, &x)?;
            }
        }
    }
}
