//! Several heads through the cells together against one call per head (the same bits, on
//! every instruction set, for every storage type, with holes, other sequences' cells and
//! windows), the multi-head call's argument errors, and the vectorized row maximum
//! against the plain fold.

use proptest::prelude::*;

use super::super::tests::{Cache, uniform};
use super::super::values::CACHE_TYPES;
use super::super::*;
use super::row_max;

/// `n_kv` heads of `dk` values over `n_cells` cells, the positions and sequences of the
/// cells, and `rows` query rows per head (one token's `group` heads, `tokens` tokens).
struct Case {
    kt: GgmlType,
    vt: GgmlType,
    n_kv: usize,
    dk: usize,
    group: usize,
    tokens: usize,
    n_cells: usize,
    window: Option<usize>,
    holes: bool,
    seed: u64,
}

impl Case {
    fn run(&self, isa: Isa) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
        let (n_kv, dk, n) = (self.n_kv, self.dk, self.n_cells);
        let keys = Cache::new(self.kt, &uniform(n * n_kv * dk, self.seed, 3.0), n_kv, dk);
        let values = Cache::new(
            self.vt,
            &uniform(n * n_kv * dk, self.seed + 1, 1.0),
            n_kv,
            dk,
        );
        // Cells of sequences 1 and 2 in turn, positions rising per sequence.
        let seqs: Vec<u64> = (0..n).map(|c| 1 << (1 + c % 2)).collect();
        let pos: Vec<i32> = (0..n).map(|c| (c / 2) as i32).collect();
        let mask = CellMask {
            pos: &pos,
            seqs: &seqs,
            window: self.window,
        };
        // Sequence 1's cells by position, with a hole every eleventh entry or none (then
        // every block before the rows' own is seen whole).
        let list: Vec<u32> = (0..n)
            .step_by(2)
            .enumerate()
            .map(|(i, c)| {
                if self.holes && i % 11 == 5 {
                    NO_CELL
                } else {
                    c as u32
                }
            })
            .collect();
        let last = ((n - 1) / 2) as i32;
        let row_pos: Vec<i32> = (0..self.tokens)
            .flat_map(|t| [last - t as i32; 8].into_iter().take(self.group))
            .collect();
        let row_seq = vec![2u64; row_pos.len()];
        let rows_per_head = row_pos.len();
        let q = uniform(n_kv * rows_per_head * dk, self.seed + 2, 3.0);
        let calls: Vec<HeadCall<'_>> = (0..n_kv)
            .map(|h| HeadCall {
                rows: QueryRows {
                    q: &q[h * rows_per_head * dk..(h + 1) * rows_per_head * dk],
                    dim: dk,
                    pos: &row_pos,
                    seq: &row_seq,
                },
                keys: keys.head(h),
                values: values.head(h),
            })
            .collect();
        let outputs = |states: &[FlashState]| -> Vec<Vec<u32>> {
            states
                .iter()
                .map(|st| {
                    let mut out = vec![0.0f32; rows_per_head * dk];
                    for (r, o) in out.chunks_exact_mut(dk).enumerate() {
                        st.write(r, o);
                    }
                    out.iter().map(|x| x.to_bits()).collect()
                })
                .collect()
        };
        let fresh = || {
            let mut st = FlashState::new();
            st.reset(rows_per_head, dk);
            st
        };
        let mut together: Vec<FlashState> = (0..n_kv).map(|_| fresh()).collect();
        let mut refs: Vec<&mut FlashState> = together.iter_mut().collect();
        let mut scratch = FlashScratch::new();
        flash_attn_list_heads(isa, &calls, &mask, 0.125, &list, &mut scratch, &mut refs).unwrap();
        let alone: Vec<FlashState> = calls
            .iter()
            .map(|c| {
                let mut st = fresh();
                flash_attn_list(
                    isa,
                    &c.rows,
                    &c.keys,
                    &c.values,
                    &mask,
                    0.125,
                    &list,
                    &mut FlashScratch::new(),
                    &mut st,
                )
                .unwrap();
                st
            })
            .collect();
        (outputs(&together), outputs(&alone))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn heads_together_sum_as_heads_alone(
        kt in prop::sample::select(&CACHE_TYPES[..]),
        vt in prop::sample::select(&CACHE_TYPES[..]),
        n_kv in 1usize..=4,
        dk in prop::sample::select(&[32usize, 64, 128][..]),
        group in 1usize..=4,
        tokens in 1usize..=4,
        n_cells in 2usize..400,
        window in prop::option::weighted(0.3, 1usize..100),
        holes in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let c = Case { kt, vt, n_kv, dk, group, tokens, n_cells, window, holes, seed };
        for isa in Isa::available() {
            let (together, alone) = c.run(isa);
            prop_assert_eq!(together, alone, "{}", isa.name());
        }
    }

    #[test]
    fn the_row_maximum_is_the_fold_of_max(
        s in prop::collection::vec(
            prop_oneof![
                8 => -1e3f32..1e3,
                1 => Just(f32::NAN),
                1 => Just(f32::INFINITY),
                1 => Just(f32::NEG_INFINITY),
            ],
            0..100,
        ),
        old in prop_oneof![Just(f32::NEG_INFINITY), -10f32..10.0],
    ) {
        let want = s.iter().fold(old, |m, &x| m.max(x));
        let got = row_max(old, &s);
        prop_assert!(got == want || (got.is_nan() && want.is_nan()), "{got} against {want}");
    }
}

#[test]
fn heads_that_disagree_are_errors() {
    let (dk, n) = (32usize, 8usize);
    let f32_cache = Cache::new(GgmlType::F32, &uniform(n * 2 * dk, 1, 1.0), 2, dk);
    let f16_cache = Cache::new(GgmlType::F16, &uniform(n * 2 * dk, 2, 1.0), 2, dk);
    let (pos, seqs) = ((0..n as i32).collect::<Vec<_>>(), vec![1u64; n]);
    let mask = CellMask {
        pos: &pos,
        seqs: &seqs,
        window: None,
    };
    let q = uniform(2 * dk, 3, 1.0);
    let rows = |p: &'static [i32; 2]| QueryRows {
        q: &q,
        dim: dk,
        pos: p,
        seq: &[1, 1],
    };
    fn call<'a>(rows: QueryRows<'a>, keys: &'a Cache, values: &'a Cache) -> HeadCall<'a> {
        HeadCall {
            rows,
            keys: keys.head(0),
            values: values.head(1),
        }
    }
    let list: Vec<u32> = (0..n as u32).collect();
    let run = |calls: &[HeadCall<'_>], n_states: usize| {
        let mut states: Vec<FlashState> = (0..n_states)
            .map(|_| {
                let mut st = FlashState::new();
                st.reset(2, dk);
                st
            })
            .collect();
        let mut refs: Vec<&mut FlashState> = states.iter_mut().collect();
        flash_attn_list_heads(
            Isa::best(),
            calls,
            &mask,
            0.125,
            &list,
            &mut FlashScratch::new(),
            &mut refs,
        )
    };
    static SAME: [i32; 2] = [7, 7];
    static OTHER: [i32; 2] = [7, 6];
    let a = call(rows(&SAME), &f32_cache, &f32_cache);
    assert!(run(&[a, a], 2).is_ok());
    assert!(matches!(
        run(&[a, a], 1),
        Err(FlashAttnError::Shape { what, .. }) if what.starts_with("states")
    ));
    let moved = call(rows(&OTHER), &f32_cache, &f32_cache);
    assert!(matches!(
        run(&[a, moved], 2),
        Err(FlashAttnError::Shape { what, .. }) if what.starts_with("heads' query positions")
    ));
    let f16_keys = call(rows(&SAME), &f16_cache, &f32_cache);
    assert_eq!(
        run(&[a, f16_keys], 2),
        Err(FlashAttnError::MixedTypes {
            first: GgmlType::F32,
            other: GgmlType::F16
        })
    );
    assert!(run(&[], 0).is_ok());
}
