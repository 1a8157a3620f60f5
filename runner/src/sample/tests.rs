use super::*;
use proptest::prelude::*;

fn greedy_options() -> SamplerOptions {
    SamplerOptions {
        temperature: 0.0,
        repeat_penalty: 1.0,
        ..Default::default()
    }
}

#[test]
fn temperature_zero_is_argmax_with_ties_to_the_lowest_id() {
    let mut s = Sampler::new(greedy_options()).unwrap();
    assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0], &[], 0).chosen.token, 1);
}

#[test]
fn the_same_seed_gives_the_same_tokens_and_another_seed_does_not() {
    let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
    let run = |seed| {
        let o = SamplerOptions {
            seed,
            top_k: 0,
            top_p: 1.0,
            repeat_penalty: 1.0,
            temperature: 1.5,
            ..Default::default()
        };
        let mut s = Sampler::new(o).unwrap();
        (0..50)
            .map(|_| s.sample(&logits, &[], 0).chosen.token)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn draws_follow_the_softmax_distribution() {
    let logits = [0.0f32, 1.0, 2.0];
    let o = SamplerOptions {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        repeat_penalty: 1.0,
        seed: 7,
        ..Default::default()
    };
    let mut s = Sampler::new(o).unwrap();
    let mut counts = [0u32; 3];
    let n = 20_000;
    for _ in 0..n {
        counts[s.sample(&logits, &[], 0).chosen.token as usize] += 1;
    }
    let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
    for (i, &c) in counts.iter().enumerate() {
        let expected = f64::from(logits[i]).exp() / z;
        let got = f64::from(c) / f64::from(n);
        assert!(
            (got - expected).abs() < 0.015,
            "token {i}: {got} vs {expected}"
        );
    }
}

#[test]
fn top_k_one_and_tiny_top_p_and_large_min_p_are_greedy() {
    let logits = [0.5f32, 2.0, 1.9, -3.0];
    for o in [
        SamplerOptions {
            top_k: 1,
            ..Default::default()
        },
        SamplerOptions {
            top_k: 0,
            top_p: 0.01,
            ..Default::default()
        },
        SamplerOptions {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.99,
            ..Default::default()
        },
    ] {
        let mut s = Sampler::new(SamplerOptions {
            repeat_penalty: 1.0,
            ..o
        })
        .unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[], 0).chosen.token, 1);
        }
    }
}

#[test]
fn penalties_push_recent_tokens_down() {
    let logits = [2.0f32, 1.9, -1.0];
    let mut s = Sampler::new(SamplerOptions {
        repeat_penalty: 1.5,
        ..greedy_options()
    })
    .unwrap();
    assert_eq!(s.sample(&logits, &[0], 0).chosen.token, 1);
    let mut s = Sampler::new(SamplerOptions {
        presence_penalty: 0.5,
        ..greedy_options()
    })
    .unwrap();
    assert_eq!(s.sample(&logits, &[0], 0).chosen.token, 1);
    // outside the window the penalty does not apply
    let mut s = Sampler::new(SamplerOptions {
        repeat_penalty: 1.5,
        repeat_last_n: 1,
        ..greedy_options()
    })
    .unwrap();
    assert_eq!(s.sample(&logits, &[0, 2], 0).chosen.token, 0);
    // the frequency penalty subtracts per occurrence
    let mut s = Sampler::new(SamplerOptions {
        frequency_penalty: 0.2,
        ..greedy_options()
    })
    .unwrap();
    assert_eq!(s.sample(&[1.0, 0.9], &[0], 0).chosen.token, 1);
}

#[test]
fn logprobs_are_the_models_distribution() {
    let logits = [1.0f32, 3.0, 2.0, 0.0];
    let mut s = Sampler::new(greedy_options()).unwrap();
    let out = s.sample(&logits, &[], 3);
    assert_eq!(out.chosen.token, 1);
    let tokens: Vec<_> = out.top.iter().map(|t| t.token).collect();
    assert_eq!(tokens, [1, 2, 0]);
    let z: f32 = logits.iter().map(|l| l.exp()).sum();
    assert!((out.chosen.logprob - (3.0f32.exp() / z).ln()).abs() < 1e-6);
    assert_eq!(out.top[0], out.chosen);
}

#[test]
fn typical_p_keeps_at_least_one_token() {
    let mut s = Sampler::new(SamplerOptions {
        typical_p: 0.01,
        top_k: 0,
        top_p: 1.0,
        ..Default::default()
    })
    .unwrap();
    let t = s.sample(&[0.0, 5.0, 0.0], &[], 0).chosen.token;
    assert!(t < 3);
}

#[test]
fn out_of_range_options_are_named() {
    let err = Sampler::new(SamplerOptions {
        top_p: 1.5,
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(err.name, "top_p");
    assert!(err.to_string().contains("between 0 and 1"));
    let err = Sampler::new(SamplerOptions {
        temperature: f32::NAN,
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(err.name, "temperature");
}

/// The fast path without log-probabilities draws the same tokens as the full one, for
/// the same seed and history, whatever the options.
#[test]
fn next_token_picks_what_sample_picks() {
    let logits: Vec<f32> = (0..500).map(|i| ((i * 53) % 17) as f32 * 0.21).collect();
    for options in [
        greedy_options(),
        SamplerOptions::default(),
        SamplerOptions {
            temperature: 1.3,
            top_k: 0,
            min_p: 0.05,
            repeat_penalty: 1.2,
            seed: 9,
            ..Default::default()
        },
    ] {
        let (mut a, mut b) = (
            Sampler::new(options.clone()).unwrap(),
            Sampler::new(options).unwrap(),
        );
        let mut history = vec![3, 4, 5];
        for _ in 0..40 {
            let t = a.sample(&logits, &history, 2).chosen.token;
            assert_eq!(b.next_token(&logits, &history), t);
            history.push(t);
        }
    }
}

/// The sampler as first written, the plain reading of its definition: every candidate
/// looked up among the recent tokens, the whole vocabulary sorted, the best kept by a
/// scan. The fast paths must pick what it picks.
fn reference_next_token(s: &mut Sampler, logits: &[f32], history: &[TokenId]) -> TokenId {
    let o = s.options.clone();
    let mut c: Vec<(TokenId, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as TokenId, l))
        .collect();
    let n = o.repeat_last_n.min(history.len());
    let penalize =
        o.repeat_penalty != 1.0 || o.presence_penalty != 0.0 || o.frequency_penalty != 0.0;
    if n > 0 && penalize {
        let mut counts = HashMap::<TokenId, u32>::new();
        for &t in &history[history.len() - n..] {
            *counts.entry(t).or_default() += 1;
        }
        for (token, logit) in &mut c {
            if let Some(&count) = counts.get(token) {
                if *logit <= 0.0 {
                    *logit *= o.repeat_penalty;
                } else {
                    *logit /= o.repeat_penalty;
                }
                *logit -= count as f32 * o.frequency_penalty + o.presence_penalty;
            }
        }
    }
    if o.temperature <= 0.0 {
        let mut best = 0;
        for (i, x) in c.iter().enumerate() {
            if x.1 > c[best].1 {
                best = i;
            }
        }
        return c.get(best).map_or(0, |x| x.0);
    }
    c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if o.top_k > 0 && o.top_k < c.len() {
        c.truncate(o.top_k);
    }
    // The filters after top-k are shared code: hand the sorted candidates to them.
    s.candidates = c;
    s.draw_sorted()
}

/// A logit drawn from few values, so that ties are common, or a signed zero or an
/// infinity.
fn logit() -> impl Strategy<Value = f32> {
    prop_oneof![
        20 => (-8i32..8).prop_map(|v| v as f32 * 0.5),
        4 => -20.0f32..20.0,
        1 => Just(-0.0f32),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::INFINITY),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    // Vocabularies of up to 4,000 logits, so that top-k meets as many stretches of 64 as
    // it keeps tokens (its fast selection) and fewer; now and then a NaN somewhere.
    #[test]
    fn fast_paths_pick_what_the_plain_definition_picks(
        mut logits in prop::collection::vec(logit(), 1..4000),
        nans in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        history in prop::collection::vec(0u32..4100, 0..80),
        temperature in prop_oneof![Just(0.0f32), 0.1f32..2.0],
        top_k in prop_oneof![Just(0usize), 1usize..70],
        top_p in prop_oneof![Just(1.0f32), 0.05f32..1.0],
        min_p in prop_oneof![Just(0.0f32), 0.0f32..0.5],
        repeat_penalty in prop_oneof![Just(1.0f32), 0.5f32..2.0],
        presence_penalty in prop_oneof![Just(0.0f32), -1.0f32..1.0],
        repeat_last_n in 0usize..100,
        seed in 0u64..1000,
    ) {
        for at in nans {
            let i = at.index(logits.len());
            logits[i] = f32::NAN;
        }
        let options = SamplerOptions {
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            presence_penalty,
            repeat_last_n,
            seed,
            ..Default::default()
        };
        let mut fast = Sampler::new(options.clone()).unwrap();
        let mut plain = Sampler::new(options).unwrap();
        for step in 0..3 {
            let history = &history[..history.len().saturating_sub(step)];
            let want = reference_next_token(&mut plain, &logits, history);
            prop_assert_eq!(fast.next_token(&logits, history), want);
        }
    }
}
