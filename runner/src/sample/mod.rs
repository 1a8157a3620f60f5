//! The sampler chain: turns one position's logits into the next token.
//!
//! The order is llama.cpp's default: penalties (repeat, presence, frequency over the last
//! N tokens), top-k, typical-p, top-p, min-p, temperature, then a draw from the seeded
//! generator. A temperature of zero or below is greedy: the highest logit wins, ties to
//! the lowest id. Log-probabilities reported to callers are those of the model's own
//! distribution (log-softmax of the raw logits), as OpenAI's `logprobs` are.

mod rng;
mod select;

pub use rng::SamplerRng;

use select::{greedy, top_candidates};

use std::collections::HashMap;

use thiserror::Error;

use crate::tokenizer::TokenId;

/// The options a request may set; defaults are Ollama's.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerOptions {
    /// Softmax temperature; `<= 0` is greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens (`0`: all).
    pub top_k: usize,
    /// Keep the most likely tokens whose probabilities sum to `top_p` (`1`: all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (`0`: none).
    pub min_p: f32,
    /// Locally typical sampling mass (`1`: off).
    pub typical_p: f32,
    /// Divide positive logits (multiply negative ones) of recent tokens by this (`1`: off).
    pub repeat_penalty: f32,
    /// Subtract this once from the logit of every recent token (`0`: off).
    pub presence_penalty: f32,
    /// Subtract this times the count from the logit of every recent token (`0`: off).
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at (`0`: none).
    pub repeat_last_n: usize,
    /// The generator's seed; the same seed and input give the same output.
    pub seed: u64,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            typical_p: 1.0,
            repeat_penalty: 1.1,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

/// An option value outside its range.
#[derive(Debug, Error, PartialEq)]
#[error("sampling option {name} = {value} is out of range: {expected}")]
pub struct SamplerOptionError {
    /// The option.
    pub name: &'static str,
    /// Its value.
    pub value: f32,
    /// What is accepted.
    pub expected: &'static str,
}

impl SamplerOptions {
    /// Checks every value, naming the first one out of range.
    pub fn validate(&self) -> Result<(), SamplerOptionError> {
        let checks: [(&'static str, f32, bool, &'static str); 7] = [
            (
                "temperature",
                self.temperature,
                self.temperature.is_finite(),
                "a finite number",
            ),
            (
                "top_p",
                self.top_p,
                (0.0..=1.0).contains(&self.top_p),
                "between 0 and 1",
            ),
            (
                "min_p",
                self.min_p,
                (0.0..=1.0).contains(&self.min_p),
                "between 0 and 1",
            ),
            (
                "typical_p",
                self.typical_p,
                (0.0..=1.0).contains(&self.typical_p),
                "between 0 and 1",
            ),
            (
                "repeat_penalty",
                self.repeat_penalty,
                self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0,
                "a positive number",
            ),
            (
                "presence_penalty",
                self.presence_penalty,
                self.presence_penalty.is_finite(),
                "a finite number",
            ),
            (
                "frequency_penalty",
                self.frequency_penalty,
                self.frequency_penalty.is_finite(),
                "a finite number",
            ),
        ];
        for (name, value, ok, expected) in checks {
            if !ok {
                return Err(SamplerOptionError {
                    name,
                    value,
                    expected,
                });
            }
        }
        Ok(())
    }
}

/// One token with its log-probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLogprob {
    /// The token.
    pub token: TokenId,
    /// Its log-probability under the model's distribution.
    pub logprob: f32,
}

/// What the sampler chose, with the log-probabilities a caller asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The chosen token and its log-probability.
    pub chosen: TokenLogprob,
    /// The most likely tokens (as many as asked), most likely first.
    pub top: Vec<TokenLogprob>,
}

/// A sampler for one sequence: its options, generator and working buffers.
#[derive(Debug, Clone)]
pub struct Sampler {
    options: SamplerOptions,
    rng: SamplerRng,
    candidates: Vec<(TokenId, f32)>,
    counts: HashMap<TokenId, u32>,
    /// The logits with the penalties applied, when any apply.
    penalized: Vec<f32>,
    /// Top-k's working values (the highest logit of each stretch of the vocabulary).
    maxima: Vec<f32>,
}

impl Sampler {
    /// A sampler with validated options.
    pub fn new(options: SamplerOptions) -> Result<Self, SamplerOptionError> {
        options.validate()?;
        let rng = SamplerRng::new(options.seed);
        Ok(Self {
            options,
            rng,
            candidates: Vec::new(),
            counts: HashMap::new(),
            penalized: Vec::new(),
            maxima: Vec::new(),
        })
    }

    /// The options in use.
    pub fn options(&self) -> &SamplerOptions {
        &self.options
    }

    /// Picks the next token from `logits` (one per vocabulary entry), given the tokens of
    /// the sequence so far (`history`, oldest first), reporting its log-probability and
    /// `n_top` alternatives.
    pub fn sample(&mut self, logits: &[f32], history: &[TokenId], n_top: usize) -> Sampled {
        let chosen = self.next_token(logits, history);
        report(logits, chosen, n_top)
    }

    /// The token [`Sampler::sample`] picks, without the log-probabilities (which cost a
    /// pass of `exp` over the whole vocabulary).
    pub fn next_token(&mut self, logits: &[f32], history: &[TokenId]) -> TokenId {
        // Penalties change a few logits, in a copy.
        let logits = if self.penalizes(history) {
            self.penalized.clear();
            self.penalized.extend_from_slice(logits);
            self.apply_penalties(history);
            &self.penalized[..]
        } else {
            logits
        };
        if self.options.temperature <= 0.0 {
            return greedy(logits);
        }
        top_candidates(
            &mut self.candidates,
            &mut self.maxima,
            self.options.top_k,
            logits,
        );
        self.draw_sorted()
    }

    /// Whether any penalty applies to the next token of a sequence with this `history`.
    fn penalizes(&self, history: &[TokenId]) -> bool {
        let o = &self.options;
        let penalty =
            o.repeat_penalty != 1.0 || o.presence_penalty != 0.0 || o.frequency_penalty != 0.0;
        penalty && o.repeat_last_n > 0 && !history.is_empty()
    }

    /// Penalizes the logits in `self.penalized` of the recent tokens, each once.
    fn apply_penalties(&mut self, history: &[TokenId]) {
        let o = &self.options;
        let n = o.repeat_last_n.min(history.len());
        self.counts.clear();
        for &t in &history[history.len() - n..] {
            *self.counts.entry(t).or_default() += 1;
        }
        for (&token, &count) in &self.counts {
            // A token outside the vocabulary has no logit to penalize.
            let Some(logit) = self.penalized.get_mut(token as usize) else {
                continue;
            };
            if *logit <= 0.0 {
                *logit *= o.repeat_penalty;
            } else {
                *logit /= o.repeat_penalty;
            }
            *logit -= count as f32 * o.frequency_penalty + o.presence_penalty;
        }
    }

    /// Typical-p, top-p, min-p, temperature and the draw, over candidates sorted best
    /// first.
    fn draw_sorted(&mut self) -> TokenId {
        let o = self.options.clone();
        let c = &mut self.candidates;
        if o.typical_p < 1.0 {
            typical(c, o.typical_p);
        }
        if o.top_p < 1.0 {
            let probs = softmax_of(c);
            let mut sum = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    sum += p;
                    sum >= o.top_p
                })
                .map_or(c.len(), |i| i + 1);
            c.truncate(keep.max(1));
        }
        if o.min_p > 0.0 && !c.is_empty() {
            let threshold = c[0].1 + o.min_p.ln();
            let keep = c.iter().take_while(|x| x.1 >= threshold).count();
            c.truncate(keep.max(1));
        }
        for x in c.iter_mut() {
            x.1 /= o.temperature;
        }
        let probs = softmax_of(c);
        let r = self.rng.next_f64();
        let mut acc = 0.0f64;
        for (i, p) in probs.iter().enumerate() {
            acc += f64::from(*p);
            if r < acc {
                return c[i].0;
            }
        }
        c.last().map_or(0, |x| x.0)
    }
}

/// Probabilities of candidates sorted by logit, highest first.
fn softmax_of(c: &[(TokenId, f32)]) -> Vec<f32> {
    let Some(max) = c.iter().map(|x| x.1).reduce(f32::max) else {
        return Vec::new();
    };
    let exps: Vec<f64> = c.iter().map(|x| f64::from(x.1 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// Locally typical sampling (Meister et al. 2022): keep the tokens whose surprise is
/// closest to the distribution's entropy until their mass reaches `p`.
fn typical(c: &mut Vec<(TokenId, f32)>, p: f32) {
    let probs = softmax_of(c);
    let entropy: f32 = probs
        .iter()
        .filter(|&&q| q > 0.0)
        .map(|&q| -q * q.ln())
        .sum();
    let mut order: Vec<usize> = (0..c.len()).collect();
    let shift = |i: usize| (-probs[i].ln() - entropy).abs();
    order.sort_by(|&a, &b| shift(a).total_cmp(&shift(b)).then(a.cmp(&b)));
    let mut sum = 0.0;
    let keep = order
        .iter()
        .position(|&i| {
            sum += probs[i];
            sum > p
        })
        .map_or(order.len(), |i| i + 1)
        .max(1);
    let mut kept: Vec<(TokenId, f32)> = order[..keep].iter().map(|&i| c[i]).collect();
    kept.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    *c = kept;
}

/// Log-softmax of the raw logits for the chosen token and the `n_top` most likely ones.
fn report(logits: &[f32], chosen: TokenId, n_top: usize) -> Sampled {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits
        .iter()
        .map(|&l| f64::from(l - max).exp())
        .sum::<f64>()
        .ln() as f32
        + max;
    let logprob = |t: TokenId| {
        logits
            .get(t as usize)
            .map_or(f32::NEG_INFINITY, |l| l - log_sum)
    };
    let mut top = Vec::new();
    if n_top > 0 {
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        let k = n_top.min(idx.len());
        idx.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| {
            logits[b].total_cmp(&logits[a]).then(a.cmp(&b))
        });
        idx.truncate(k);
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        top = idx
            .into_iter()
            .map(|i| TokenLogprob {
                token: i as TokenId,
                logprob: logprob(i as TokenId),
            })
            .collect();
    }
    Sampled {
        chosen: TokenLogprob {
            token: chosen,
            logprob: logprob(chosen),
        },
        top,
    }
}

#[cfg(test)]
mod tests;
