use super::*;

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
