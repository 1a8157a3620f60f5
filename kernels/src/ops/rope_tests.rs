use super::*;
use crate::ops::test_support::{from_bits, input};
use crate::ops::testdata;
use proptest::prelude::*;

/// The positions of the ggml reference cases, one head of 32 each.
const POSITIONS: [i32; 6] = [0, 1, 7, 1000, 40000, -5];

/// Runs `rope` over the reference input the way the model will: one table per position,
/// then the head rotated in place.
fn run_case(rope: &Rope) -> Vec<f32> {
    let head_dim = rope.head_dim();
    let mut x: Vec<f32> = (0..head_dim * POSITIONS.len())
        .map(|i| input(i, 3))
        .collect();
    let mut table = vec![0.0; rope.n_dims()];
    for (head, &pos) in x.chunks_exact_mut(head_dim).zip(&POSITIONS) {
        rope.cos_sin(pos, &mut table);
        rope.rotate_head(head, &table);
    }
    x
}

fn yarn_params(freq_base: f32, freq_scale: f32, ext_factor: f32, attn_factor: f32) -> RopeParams {
    RopeParams {
        freq_base,
        freq_scale,
        ext_factor,
        attn_factor,
        corr_dims: rope_yarn_corr_dims(32, 4096, freq_base, 32.0, 1.0),
    }
}

fn llama3_style_factors() -> Vec<f32> {
    (0..16).map(|i| 1.0 + i as f32 / 8.0).collect()
}

/// The six ggml reference cases: name, configuration, ggml's output as llama.cpp builds
/// it, and ggml's output with every operation rounded on its own.
type Case = (&'static str, Rope, &'static [u32], &'static [u32]);

fn reference_cases() -> Vec<Case> {
    use testdata::{native, plain};
    let rope = |n_dims, layout, params, factors: Option<&[f32]>| {
        Rope::new(n_dims, 32, layout, params, factors).expect("valid test configuration")
    };
    let plain_rope = RopeParams::new(10000.0);
    let factors = llama3_style_factors();
    vec![
        (
            "normal",
            rope(32, RopeLayout::Normal, plain_rope, None),
            &native::ROPE_NORMAL[..],
            &plain::ROPE_NORMAL[..],
        ),
        (
            "neox",
            rope(32, RopeLayout::NeoX, plain_rope, None),
            &native::ROPE_NEOX[..],
            &plain::ROPE_NEOX[..],
        ),
        (
            "neox partial",
            rope(16, RopeLayout::NeoX, RopeParams::new(1e6), None),
            &native::ROPE_NEOX_PARTIAL[..],
            &plain::ROPE_NEOX_PARTIAL[..],
        ),
        (
            "normal yarn",
            rope(
                32,
                RopeLayout::Normal,
                yarn_params(500000.0, 0.25, 1.0, 1.0),
                None,
            ),
            &native::ROPE_NORMAL_YARN[..],
            &plain::ROPE_NORMAL_YARN[..],
        ),
        (
            "neox linear",
            rope(
                32,
                RopeLayout::NeoX,
                yarn_params(10000.0, 0.125, 0.0, 0.75),
                None,
            ),
            &native::ROPE_NEOX_LINEAR_ATTN[..],
            &plain::ROPE_NEOX_LINEAR_ATTN[..],
        ),
        (
            "normal factors",
            rope(
                32,
                RopeLayout::Normal,
                RopeParams::new(500000.0),
                Some(&factors),
            ),
            &native::ROPE_NORMAL_FACTORS[..],
            &plain::ROPE_NORMAL_FACTORS[..],
        ),
    ]
}

#[test]
fn matches_llama_cpp_bit_for_bit() {
    // llama.cpp's x86 build fuses the rotation as we do. It fuses the YaRN mix too,
    // which we do not: with YaRN on (ext_factor != 0) an ulp or two remains, more where
    // the angle is large (position 40000 with theta ~ 1e3 rad: one ulp of it is 1e-4).
    for (name, rope, native, _) in reference_cases() {
        let got = run_case(&rope);
        let yarn = rope.params().ext_factor != 0.0;
        for (i, (g, w)) in got.iter().zip(from_bits(native)).enumerate() {
            let pos = POSITIONS[i / 32];
            if !yarn {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{name}, position {pos}, element {}",
                    i % 32
                );
                continue;
            }
            let tol = if pos == 40000 { 2e-5 } else { 5e-7 };
            assert!(
                (g - w).abs() <= tol,
                "{name}, position {pos}, element {}: got {g}, want {w}",
                i % 32
            );
        }
    }
}

#[test]
fn matches_unfused_ggml_to_an_ulp() {
    // ggml compiled without fused multiply-adds rounds each product of the rotation.
    for (name, rope, _, plain) in reference_cases() {
        let got = run_case(&rope);
        for (i, (g, w)) in got.iter().zip(from_bits(plain)).enumerate() {
            let pos = POSITIONS[i / 32];
            let tol = if pos == 40000 { 2e-5 } else { 5e-7 };
            assert!(
                (g - w).abs() <= tol,
                "{name}, position {pos}, element {}: got {g}, want {w}",
                i % 32
            );
        }
    }
}

#[test]
fn position_zero_is_the_identity_and_partial_rotary_keeps_the_tail() {
    for (name, rope, _, _) in reference_cases() {
        let x: Vec<f32> = (0..32).map(|i| input(i, 9)).collect();
        let mut table = vec![0.0; rope.n_dims()];
        let mut head = x.clone();
        rope.cos_sin(0, &mut table);
        rope.rotate_head(&mut head, &table);
        let mscale = if rope.params().ext_factor != 0.0 {
            rope.params().attn_factor * (1.0 + 0.1 * (1.0 / rope.params().freq_scale).ln())
        } else {
            rope.params().attn_factor
        };
        for (a, b) in head.iter().zip(&x).take(rope.n_dims()) {
            assert_eq!(*a, *b * mscale, "{name}");
        }
        let mut head = x.clone();
        rope.cos_sin(1234, &mut table);
        rope.rotate_head(&mut head, &table);
        assert_eq!(
            head[rope.n_dims()..],
            x[rope.n_dims()..],
            "{name}: tail must not move"
        );
    }
}

#[test]
fn normal_and_neox_pair_different_elements() {
    // With a table that rotates only pair 0 by 90 degrees, the normal layout mixes
    // elements 0 and 1, NeoX mixes elements 0 and n_dims/2.
    let mut table = [1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
    table[0] = 0.0;
    table[1] = 1.0;
    let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let mut normal = x;
    rope_normal(&mut normal, &table);
    assert_eq!(normal, [-2.0, 1.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let mut neox = x;
    rope_neox(&mut neox, &table);
    assert_eq!(neox, [-5.0, 2.0, 3.0, 4.0, 1.0, 6.0, 7.0, 8.0]);
}

#[test]
fn corr_dims_match_llama_cpp() {
    let got = [
        rope_yarn_corr_dims(32, 4096, 500000.0, 32.0, 1.0),
        rope_yarn_corr_dims(128, 8192, 10000.0, 32.0, 1.0),
        rope_yarn_corr_dims(64, 2048, 1000000.0, 32.0, 1.0),
        rope_yarn_corr_dims(128, 131072, 10000.0, 32.0, 1.0),
    ];
    assert_eq!(got.concat(), testdata::native::CORR_DIMS);
    assert_eq!(got.concat(), testdata::plain::CORR_DIMS);
}

#[test]
fn yarn_ramp_interpolates_low_pairs_and_extrapolates_high_ones() {
    // corr_dims [2, 5]: pairs 0..=2 are pure extrapolation (original angle), pairs
    // >= 5 pure interpolation (angle * freq_scale), pairs 3 and 4 a 2/3 and 1/3 mix.
    let params = RopeParams {
        freq_base: 10000.0,
        freq_scale: 0.5,
        ext_factor: 1.0,
        attn_factor: 1.0,
        corr_dims: [2.0, 5.0],
    };
    let rope = Rope::new(16, 16, RopeLayout::NeoX, params, None).unwrap();
    let pos = 3;
    let mut table = [0.0f32; 16];
    rope.cos_sin(pos, &mut table);
    let mscale = 1.0 + 0.1 * 2f64.ln();
    let extrap_weight = [1.0, 1.0, 1.0, 2.0 / 3.0, 1.0 / 3.0, 0.0, 0.0, 0.0];
    for (i, pair) in table.chunks(2).enumerate() {
        let theta = f64::from(pos) * 10000f64.powf(-2.0 * i as f64 / 16.0);
        let angle = theta * (extrap_weight[i] + (1.0 - extrap_weight[i]) * 0.5);
        assert!(
            (f64::from(pair[0]) - angle.cos() * mscale).abs() < 1e-5,
            "pair {i} cos"
        );
        assert!(
            (f64::from(pair[1]) - angle.sin() * mscale).abs() < 1e-5,
            "pair {i} sin"
        );
    }
}

#[test]
fn freq_factors_divide_the_angle() {
    let factors = llama3_style_factors();
    let with = Rope::new(
        32,
        32,
        RopeLayout::Normal,
        RopeParams::new(500000.0),
        Some(&factors),
    )
    .unwrap();
    let mut table = [0.0f32; 32];
    with.cos_sin(100, &mut table);
    for (i, pair) in table.chunks(2).enumerate() {
        let theta = 100.0 * 500000f64.powf(-2.0 * i as f64 / 32.0) / f64::from(factors[i]);
        assert!((f64::from(pair[0]) - theta.cos()).abs() < 2e-5, "pair {i}");
        assert!((f64::from(pair[1]) - theta.sin()).abs() < 2e-5, "pair {i}");
    }
}

#[test]
fn shifting_by_a_delta_composes_rotations() {
    // llama.cpp's context shift re-rotates a cached key by RoPE at the position delta.
    let rope = Rope::new(64, 64, RopeLayout::NeoX, RopeParams::new(10000.0), None).unwrap();
    let x: Vec<f32> = (0..64).map(|i| input(i, 2)).collect();
    let mut table = [0.0f32; 64];
    let mut direct = x.clone();
    rope.cos_sin(300, &mut table);
    rope.rotate_head(&mut direct, &table);
    let mut shifted = x.clone();
    rope.cos_sin(500, &mut table);
    rope.rotate_head(&mut shifted, &table);
    rope.cos_sin(-200, &mut table);
    rope.rotate_head(&mut shifted, &table);
    for (a, b) in direct.iter().zip(&shifted) {
        assert!((a - b).abs() < 2e-4, "{a} vs {b}");
    }
}

#[test]
fn batch_tables_and_all_heads() {
    let rope = Rope::new(16, 32, RopeLayout::Normal, RopeParams::new(10000.0), None).unwrap();
    let positions = [3, 9];
    let mut tables = [0.0f32; 32];
    rope.cos_sin_batch(&positions, &mut tables);
    let mut one = [0.0f32; 16];
    rope.cos_sin(9, &mut one);
    assert_eq!(tables[16..], one);
    let x: Vec<f32> = (0..96).map(|i| input(i, 7)).collect();
    let mut all = x.clone();
    rope.rotate_heads(&mut all, &one);
    for (h, head) in all.chunks(32).enumerate() {
        let mut single = x[h * 32..(h + 1) * 32].to_vec();
        rope.rotate_head(&mut single, &one);
        assert_eq!(head, &single[..]);
    }
}

#[test]
fn bad_configurations_are_errors() {
    let p = RopeParams::new(10000.0);
    assert_eq!(
        Rope::new(0, 64, RopeLayout::Normal, p, None),
        Err(RopeError::BadDims(0))
    );
    assert_eq!(
        Rope::new(7, 64, RopeLayout::Normal, p, None),
        Err(RopeError::BadDims(7))
    );
    assert_eq!(
        Rope::new(128, 64, RopeLayout::Normal, p, None),
        Err(RopeError::DimsExceedHead {
            n_dims: 128,
            head_dim: 64
        })
    );
    let bad_base = RopeParams::new(-1.0);
    assert!(matches!(
        Rope::new(64, 64, RopeLayout::NeoX, bad_base, None),
        Err(RopeError::BadParam {
            name: "freq_base",
            ..
        })
    ));
    let nan_scale = RopeParams {
        freq_scale: f32::NAN,
        ..p
    };
    assert!(matches!(
        Rope::new(64, 64, RopeLayout::NeoX, nan_scale, None),
        Err(RopeError::BadParam {
            name: "freq_scale",
            ..
        })
    ));
    assert_eq!(
        Rope::new(64, 64, RopeLayout::Normal, p, Some(&[1.0; 31])),
        Err(RopeError::FreqFactorsTooShort { got: 31, want: 32 })
    );
    let mut factors = [1.0f32; 40];
    factors[5] = 0.0;
    assert_eq!(
        Rope::new(64, 64, RopeLayout::Normal, p, Some(&factors)),
        Err(RopeError::BadFreqFactor {
            index: 5,
            value: 0.0
        })
    );
    factors[5] = 1.0;
    factors[35] = f32::NAN; // past n_dims / 2: unused, so accepted
    assert!(Rope::new(64, 64, RopeLayout::Normal, p, Some(&factors)).is_ok());
}

/// ggml's table by the formula in f64 from the exact angle; returns the error budget
/// for the f32 recurrence, which drifts by about one ulp of the angle per pair.
fn reference_table(
    pos: i32,
    n_dims: usize,
    params: &RopeParams,
    factors: Option<&[f32]>,
) -> Vec<(f64, f64, f64)> {
    (0..n_dims / 2)
        .map(|i| {
            let theta =
                f64::from(pos) * f64::from(params.freq_base).powf(-2.0 * i as f64 / n_dims as f64);
            let extrap = theta / factors.map_or(1.0, |f| f64::from(f[i]));
            let interp = f64::from(params.freq_scale) * extrap;
            let (angle, mscale) = if params.ext_factor != 0.0 {
                let [low, high] = params.corr_dims.map(f64::from);
                let y = (i as f64 - low) / (high - low).max(0.001);
                let mix = (1.0 - y.clamp(0.0, 1.0)) * f64::from(params.ext_factor);
                let m = 1.0 + 0.1 * (1.0 / f64::from(params.freq_scale)).ln();
                (
                    interp * (1.0 - mix) + extrap * mix,
                    f64::from(params.attn_factor) * m,
                )
            } else {
                (interp, f64::from(params.attn_factor))
            };
            let budget =
                (angle.abs() * (i as f64 + 3.0) * f64::from(f32::EPSILON) + 1e-6) * mscale.abs();
            (angle.cos() * mscale, angle.sin() * mscale, budget)
        })
        .collect()
}

proptest! {
    #[test]
    fn tables_match_f64_reference(
        pos in -70000i32..70000,
        half_dims in 1usize..70,
        base in prop::sample::select(vec![10000.0f32, 500000.0, 1e6]),
        freq_scale in prop::sample::select(vec![1.0f32, 0.5, 0.125]),
        ext_factor in prop::sample::select(vec![0.0f32, 1.0, 0.5]),
        attn_factor in 0.5f32..1.5,
        with_factors in any::<bool>(),
    ) {
        let n_dims = 2 * half_dims;
        let factors: Vec<f32> = (0..half_dims).map(|i| 1.0 + (i % 9) as f32 * 0.75).collect();
        let params = RopeParams {
            freq_base: base,
            freq_scale,
            ext_factor,
            attn_factor,
            corr_dims: rope_yarn_corr_dims(n_dims, 4096, base, 32.0, 1.0),
        };
        let factors = with_factors.then_some(&factors[..]);
        let rope = Rope::new(n_dims, n_dims, RopeLayout::NeoX, params, factors).unwrap();
        let mut table = vec![0.0f32; n_dims];
        rope.cos_sin(pos, &mut table);
        for (i, (pair, (c, s, tol))) in table.chunks(2).zip(reference_table(pos, n_dims, &params, factors)).enumerate() {
            prop_assert!((f64::from(pair[0]) - c).abs() <= tol, "pair {i}: cos {} vs {c}", pair[0]);
            prop_assert!((f64::from(pair[1]) - s).abs() <= tol, "pair {i}: sin {} vs {s}", pair[1]);
        }
    }

    #[test]
    fn rotation_matches_f64_and_preserves_norm(
        half_dims in 1usize..40,
        extra in 0usize..9,
        pos in -5000i32..5000,
        neox in any::<bool>(),
        seed in 0usize..1000,
    ) {
        let n_dims = 2 * half_dims;
        let head_dim = n_dims + extra;
        let layout = if neox { RopeLayout::NeoX } else { RopeLayout::Normal };
        let rope = Rope::new(n_dims, head_dim, layout, RopeParams::new(10000.0), None).unwrap();
        let x: Vec<f32> = (0..head_dim).map(|i| input(i + seed, 1)).collect();
        let mut table = vec![0.0f32; n_dims];
        rope.cos_sin(pos, &mut table);
        let mut y = x.clone();
        rope.rotate_head(&mut y, &table);
        for i in 0..half_dims {
            let (a, b) = if neox { (i, i + half_dims) } else { (2 * i, 2 * i + 1) };
            let (c, s) = (f64::from(table[2 * i]), f64::from(table[2 * i + 1]));
            let (x0, x1) = (f64::from(x[a]), f64::from(x[b]));
            prop_assert!((f64::from(y[a]) - (x0 * c - x1 * s)).abs() < 1e-6);
            prop_assert!((f64::from(y[b]) - (x0 * s + x1 * c)).abs() < 1e-6);
        }
        let norm = |v: &[f32]| v.iter().map(|&e| f64::from(e).powi(2)).sum::<f64>();
        prop_assert!((norm(&y) - norm(&x)).abs() <= 1e-5 * norm(&x) + 1e-9);
        prop_assert_eq!(&y[n_dims..], &x[n_dims..]);
    }
}
