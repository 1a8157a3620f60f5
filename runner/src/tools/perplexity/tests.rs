//! Unit tests of the perplexity arithmetic and window rules.
use super::*;
use crate::kvcache::{KvCache, KvLayout};
use crate::model::ModelError;

/// [`evaluate`] with the cache [`cache_config`] gives (f32, reference attention).
fn eval(
    model: &mut NextToken,
    tokens: &[TokenId],
    bos: Option<TokenId>,
    num_ctx: usize,
    batch: usize,
    threads: usize,
    on_window: impl FnMut(usize, &NllSum),
) -> anyhow::Result<Report> {
    let args = CacheArgs {
        type_k: crate::kvcache::CacheType::F32,
        type_v: crate::kvcache::CacheType::F32,
        flash_attention: false,
        numerics: None,
        device: None,
    };
    let kv = cache_config(tokens.len(), num_ctx, batch, &args)?;
    let mut cache = KvCache::new(model.kv_layout(), kv)?;
    evaluate(model, &mut cache, tokens, bos, threads, on_window)
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * b.abs().max(1.0)
}

#[test]
fn known_logits_give_the_log_of_their_softmax() {
    // softmax of ln(1..=4) is (1, 2, 3, 4) / 10.
    let logits: Vec<f32> = (1..=4).map(|k| (k as f32).ln()).collect();
    for (token, p) in [0.1f64, 0.2, 0.3, 0.4].into_iter().enumerate() {
        let nll = token_nll(&logits, token).unwrap();
        assert!(close(nll, -p.ln(), 1e-6), "token {token}: {nll}");
    }
}

#[test]
fn huge_logits_do_not_overflow() {
    let nll = token_nll(&[1000.0, 1000.0, -1000.0], 0).unwrap();
    assert!(close(nll, 2f64.ln(), 1e-9), "{nll}");
    let nll = token_nll(&[1000.0, 1000.0, -1000.0], 2).unwrap();
    assert!(close(nll, 2000.0 + 2f64.ln(), 1e-6), "{nll}");
}

#[test]
fn a_token_outside_the_logits_has_no_nll() {
    assert_eq!(token_nll(&[0.0, 1.0], 2), None);
    assert_eq!(token_nll(&[], 0), None);
}

#[test]
fn uniform_logits_give_the_vocabulary_size() {
    let n_vocab = 49152;
    let logits = vec![0.25f32; n_vocab];
    let mut sum = NllSum::default();
    for token in (0..n_vocab).step_by(97) {
        sum.add(token_nll(&logits, token).unwrap());
    }
    let estimate = sum.estimate().unwrap();
    assert!(close(estimate.ppl, n_vocab as f64, 1e-9), "{estimate:?}");
    assert!(estimate.plus_minus < 1e-3, "{estimate:?}");
}

#[test]
fn the_uncertainty_is_the_standard_error_scaled_by_the_ppl() {
    let mut sum = NllSum::default();
    for nll in [1.0, 2.0, 3.0] {
        sum.add(nll);
    }
    // Mean 2, population variance 2/3, standard error sqrt(2/3 / 2).
    let estimate = sum.estimate().unwrap();
    let ppl = 2f64.exp();
    assert!(close(estimate.ppl, ppl, 1e-12));
    assert!(close(
        estimate.plus_minus,
        ppl * (1.0f64 / 3.0).sqrt(),
        1e-12
    ));
    assert_eq!(
        estimate.to_string(),
        format!("PPL = {ppl:.4} +/- {:.5}", ppl * (1.0f64 / 3.0).sqrt())
    );
    assert_eq!(NllSum::default().estimate(), None);
}

#[test]
fn merged_sums_equal_one_running_sum() {
    let values = [0.5, 1.25, 3.0, 0.125, 7.5];
    let mut whole = NllSum::default();
    values.iter().for_each(|&v| whole.add(v));
    let (mut a, mut b) = (NllSum::default(), NllSum::default());
    values[..2].iter().for_each(|&v| a.add(v));
    values[2..].iter().for_each(|&v| b.add(v));
    a.merge(b);
    assert_eq!(a, whole);
}

#[test]
fn windows_need_twice_the_context_and_drop_the_tail() {
    assert_eq!(
        Windows::new(1023, 512),
        Err(PerplexityError::TextTooShort {
            tokens: 1023,
            n_ctx: 512,
            need: 1024
        })
    );
    let windows = Windows::new(8089, 512).unwrap();
    assert_eq!(windows.count, 15);
    assert_eq!(windows.scored(), 256..511);
    assert_eq!(windows.range(2), 1024..1536);
    assert_eq!(
        Windows::new(100, 3),
        Err(PerplexityError::ContextTooSmall(3))
    );
}

/// A model that predicts `token + 1` with logit 4 (others 0), keeping K/V lengths as a
/// real model does and recording every batch it runs.
struct NextToken {
    n_vocab: usize,
    batches: Vec<Batch>,
}

impl Model for NextToken {
    fn architecture(&self) -> &'static str {
        "next-token"
    }
    fn n_vocab(&self) -> usize {
        self.n_vocab
    }
    fn n_embd(&self) -> usize {
        self.n_vocab
    }
    fn train_ctx(&self) -> usize {
        4096
    }
    fn kv_layout(&self) -> KvLayout {
        KvLayout {
            k_dim: 32,
            v_dim: 32,
            head_dim_k: 32,
            head_dim_v: 32,
            windows: vec![None],
        }
    }
    fn scratch_bytes(&self) -> usize {
        0
    }
    fn forward(
        &mut self,
        batch: &Batch,
        cache: &mut KvCache,
        out: &mut Logits,
    ) -> Result<(), ModelError> {
        cache.place(batch.seqs(), batch.positions())?;
        let wanted: Vec<usize> = (0..batch.len())
            .filter(|&t| batch.wants_logits()[t])
            .collect();
        let rows = out.prepare(self.n_vocab, wanted.iter().copied());
        rows.fill(0.0);
        for (row, &t) in rows.chunks_exact_mut(self.n_vocab).zip(&wanted) {
            row[(batch.tokens()[t] as usize + 1) % self.n_vocab] = 4.0;
        }
        self.batches.push(batch.clone());
        Ok(())
    }
}

fn run_next_token(tokens: &[TokenId], bos: Option<TokenId>, batch: usize) -> NextToken {
    let mut model = NextToken {
        n_vocab: 16,
        batches: Vec::new(),
    };
    let mut seen = Vec::new();
    eval(&mut model, tokens, bos, 8, batch, 3, |w, _| seen.push(w)).unwrap();
    assert_eq!(seen, [0, 1, 2]);
    model
}

#[test]
fn the_second_half_of_each_window_is_scored_against_the_next_token() {
    // 27 tokens: 3 windows of 8, 3 dropped. Every token follows its predecessor except
    // at index 13 (second half of window 1, position 5), which breaks the chain.
    let mut tokens: Vec<TokenId> = (0..27).map(|t| t % 16).collect();
    tokens[13] = 9;
    let mut model = NextToken {
        n_vocab: 16,
        batches: Vec::new(),
    };
    let report = eval(&mut model, &tokens, None, 8, 8, 2, |_, _| {}).unwrap();
    // Positions 4, 5, 6 of each window predict positions 5, 6, 7.
    assert_eq!(report.nll.count(), 9);
    let row: Vec<f32> = (0..16).map(|k| if k == 0 { 4.0 } else { 0.0 }).collect();
    let (hit, miss) = (token_nll(&row, 0).unwrap(), token_nll(&row, 1).unwrap());
    // Window 1: position 4 (token 12) predicts 13 but sees 9, position 5 (token 9)
    // predicts 10 but sees 14: two misses, seven hits.
    let want = (7.0 * hit + 2.0 * miss) / 9.0;
    let got = report.nll.estimate().unwrap().ppl.ln();
    assert!(close(got, want, 1e-9), "{got} vs {want}");
}

#[test]
fn each_window_starts_at_position_zero_with_bos() {
    let tokens: Vec<TokenId> = (0..24).map(|t| t % 16).collect();
    let model = run_next_token(&tokens, Some(15), 8);
    assert_eq!(model.batches.len(), 3);
    for (w, batch) in model.batches.iter().enumerate() {
        assert_eq!(batch.positions(), &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(batch.seqs(), &[0; 8]);
        assert_eq!(batch.tokens()[0], 15);
        assert_eq!(batch.tokens()[1..], tokens[w * 8 + 1..w * 8 + 8]);
        let wanted: Vec<bool> = (0..8).map(|p| (4..7).contains(&p)).collect();
        assert_eq!(batch.wants_logits(), wanted);
    }
}

#[test]
fn windows_per_pass_and_passes_per_window_give_the_same_sums() {
    let tokens: Vec<TokenId> = (0..29).map(|t| (t * 7 + t / 3) % 16).collect();
    let sums: Vec<f64> = [8, 16, 24, 64, 3, 5]
        .into_iter()
        .map(|batch| {
            let mut model = NextToken {
                n_vocab: 16,
                batches: Vec::new(),
            };
            let report = eval(&mut model, &tokens, Some(1), 8, batch, 2, |_, _| {});
            let report = report.unwrap();
            assert_eq!(report.nll.count(), 9, "batch {batch}");
            report.nll.estimate().unwrap().ppl
        })
        .collect();
    for ppl in &sums {
        assert!(close(*ppl, sums[0], 1e-12), "{sums:?}");
    }
    let model = run_next_token(&tokens, Some(1), 16);
    assert_eq!(model.batches.len(), 2);
    assert_eq!(model.batches[0].seqs()[..9], [0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(model.batches[1].len(), 8);
}

#[test]
fn a_short_text_or_empty_batch_is_an_error() {
    let mut model = NextToken {
        n_vocab: 16,
        batches: Vec::new(),
    };
    let error = eval(&mut model, &[1; 15], None, 8, 8, 1, |_, _| {}).unwrap_err();
    assert!(error.to_string().contains("at least 16"), "{error}");
    let error = eval(&mut model, &[1; 16], None, 8, 0, 1, |_, _| {}).unwrap_err();
    assert!(error.to_string().contains("batch size"), "{error}");
    assert!(model.batches.is_empty());
}
