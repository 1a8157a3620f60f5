//! `ollama-runner perplexity`: the perplexity of a model on a text file, computed as
//! llama.cpp's `llama-perplexity` does, so the two figures can be compared.
//!
//! The whole file is tokenized once (BOS first when the model's metadata asks for it,
//! control tokens not parsed) and cut into consecutive, non-overlapping windows of
//! `--num-ctx` tokens; the tail that does not fill a window is dropped. Each window is
//! evaluated from an empty cache, its first token replaced by BOS when the model adds
//! BOS. Only the second half is scored, so every prediction has at least `num_ctx / 2`
//! tokens of context: the logits at positions `num_ctx / 2 .. num_ctx - 1` are scored
//! against the token that follows. `PPL = exp(mean nll)`, and its uncertainty is the
//! standard error of the mean nll scaled by the PPL (first-order propagation through
//! `exp`). Several windows run in one forward pass as separate sequences when `--batch`
//! holds several windows (llama.cpp's `n_seq = n_batch / n_ctx`).
//!
//! Only the final `PPL = X +/- Y` line goes to stdout; progress and timings go to stderr.
//! With `--kl-divergence-base FILE` the run also writes its distributions to `FILE`, and
//! with `--kl-divergence` as well it compares its own with the file's instead (`kld.rs`),
//! as llama.cpp's `llama-perplexity` does.

pub mod kld;

use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use gguf::GgufFile;
use thiserror::Error;

use super::cache_args::{CacheArgs, describe};
use crate::kvcache::{KvCache, KvConfig};
use crate::model::{self, Batch, LoadOptions, Logits, Model};
use crate::tokenizer::{TokenId, Tokenizer};

/// Arguments of `perplexity`.
#[derive(Debug, Args)]
pub struct PerplexityArgs {
    /// The GGUF model file.
    #[arg(long)]
    pub model: PathBuf,
    /// The text to evaluate (UTF-8).
    #[arg(long)]
    pub file: PathBuf,
    /// Tokens per window.
    #[arg(long, default_value_t = 512)]
    pub num_ctx: usize,
    /// Compute threads.
    #[arg(long, default_value_t = default_threads())]
    pub threads: usize,
    /// Tokens per forward pass: `batch / num_ctx` windows at once when it holds several,
    /// else each window in passes of `batch` tokens (llama.cpp's default is 2048).
    #[arg(long, default_value_t = 2048)]
    pub batch: usize,
    /// The K/V cache.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Evaluate at most this many windows (llama.cpp's `--chunks`).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Write every scored position's token distribution to this file (the base run of a
    /// KL-divergence comparison); with `--kl-divergence`, read it and compare instead.
    #[arg(long)]
    pub kl_divergence_base: Option<PathBuf>,
    /// Compare this run's distributions with those of `--kl-divergence-base`: mean and
    /// 99th-percentile KL divergence, same top token, perplexity ratio.
    #[arg(long, requires = "kl_divergence_base")]
    pub kl_divergence: bool,
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Why a perplexity cannot be computed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PerplexityError {
    /// A window must hold at least one scored prediction.
    #[error("a context of {0} tokens is too small: it must be at least 4")]
    ContextTooSmall(usize),
    /// The text must fill two windows, as llama.cpp requires.
    #[error(
        "the text tokenizes to {tokens} tokens: at least {need} (twice the context of \
         {n_ctx}) are needed"
    )]
    TextTooShort {
        /// Tokens in the text.
        tokens: usize,
        /// Tokens per window.
        n_ctx: usize,
        /// Tokens needed.
        need: usize,
    },
    /// The batch size is zero.
    #[error("the batch size must be positive")]
    EmptyBatch,
    /// A token to score is not in the model's vocabulary.
    #[error("token {token} is outside the model's {n_vocab} logits")]
    TokenOutOfRange {
        /// The token.
        token: TokenId,
        /// Length of a row of logits.
        n_vocab: usize,
    },
    /// The model did not return the logits of a scored position.
    #[error("the model returned no logits for batch position {0}")]
    MissingLogits(usize),
    /// No prediction was scored, so there is nothing to average.
    #[error("no token was scored")]
    NothingScored,
}

/// The negative log-likelihood of `token` under `logits`: `-log softmax(logits)[token]`,
/// or `None` when `token` is not an index of `logits`.
///
/// As llama.cpp computes it: the maximum and the exponentials in f32, their sum in f64.
pub fn token_nll(logits: &[f32], token: usize) -> Option<f64> {
    let &logit = logits.get(token)?;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum_exp: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    Some(sum_exp.ln() - f64::from(logit - max))
}

/// Running sums of the negative log-likelihoods of the scored tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NllSum {
    sum: f64,
    sum_sq: f64,
    count: usize,
}

impl NllSum {
    /// Adds one token's negative log-likelihood.
    pub fn add(&mut self, nll: f64) {
        self.sum += nll;
        self.sum_sq += nll * nll;
        self.count += 1;
    }

    /// Adds the tokens summed in `other`.
    pub fn merge(&mut self, other: NllSum) {
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
        self.count += other.count;
    }

    /// Tokens scored.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The perplexity and its uncertainty, or `None` before any token.
    ///
    /// `PPL = exp(m)` with `m` the mean nll; the uncertainty is `PPL * sqrt(v / (n - 1))`
    /// with `v = mean(nll²) - m²`, taken as 0 when `v` is not positive (all tokens equally
    /// likely) or a single token was scored.
    pub fn estimate(&self) -> Option<Estimate> {
        if self.count == 0 {
            return None;
        }
        let n = self.count as f64;
        let mean = self.sum / n;
        let variance = self.sum_sq / n - mean * mean;
        let ppl = mean.exp();
        let plus_minus = if variance > 0.0 && self.count > 1 {
            (variance / (n - 1.0)).sqrt() * ppl
        } else {
            0.0
        };
        Some(Estimate { ppl, plus_minus })
    }
}

/// A perplexity with its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// `exp` of the mean negative log-likelihood.
    pub ppl: f64,
    /// Its standard error.
    pub plus_minus: f64,
}

impl std::fmt::Display for Estimate {
    /// llama.cpp's `PPL = %.4lf +/- %.5lf`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PPL = {:.4} +/- {:.5}", self.ppl, self.plus_minus)
    }
}

/// How a text of `n_tokens` is cut into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Tokens per window.
    pub n_ctx: usize,
    /// Number of whole windows in the text.
    pub count: usize,
}

impl Windows {
    /// The windows of a text of `n_tokens`: it must fill two at least (llama.cpp's rule).
    pub fn new(n_tokens: usize, n_ctx: usize) -> Result<Self, PerplexityError> {
        if n_ctx < 4 {
            return Err(PerplexityError::ContextTooSmall(n_ctx));
        }
        let need = n_ctx.saturating_mul(2);
        if n_tokens < need {
            return Err(PerplexityError::TextTooShort {
                tokens: n_tokens,
                n_ctx,
                need,
            });
        }
        Ok(Self {
            n_ctx,
            count: n_tokens / n_ctx,
        })
    }

    /// The positions of a window whose logits are scored (each against the next token).
    pub fn scored(&self) -> Range<usize> {
        self.n_ctx / 2..self.n_ctx - 1
    }

    /// The token range of window `w` in the text.
    pub fn range(&self, w: usize) -> Range<usize> {
        w * self.n_ctx..(w + 1) * self.n_ctx
    }
}

/// What an evaluation found.
#[derive(Debug, Clone)]
pub struct Report {
    /// How the text was cut.
    pub windows: Windows,
    /// Windows per forward pass.
    pub n_seq: usize,
    /// The sums over all scored tokens.
    pub nll: NllSum,
    /// Time spent in forward passes and scoring.
    pub time: Duration,
}

/// The cache `evaluate` needs for `n_tokens` tokens in windows of `num_ctx`, passes of
/// `batch_size` tokens and the types and attention of `args`: one sequence per window
/// evaluated at once.
pub fn cache_config(
    n_tokens: usize,
    num_ctx: usize,
    batch_size: usize,
    args: &CacheArgs,
) -> Result<KvConfig, PerplexityError> {
    let windows = Windows::new(n_tokens, num_ctx)?;
    if batch_size == 0 {
        return Err(PerplexityError::EmptyBatch);
    }
    let n_seq = (batch_size / num_ctx).clamp(1, windows.count);
    let step = batch_size.min(num_ctx);
    Ok(args.config(num_ctx, n_seq, n_seq * step))
}

/// Evaluates `tokens` (the tokenized text, BOS included if the model adds it) window by
/// window, as many windows at once as `cache` has sequences, in passes of its batch size
/// (see [`cache_config`]); `bos` replaces the first token of each window when the model
/// adds BOS. `on_window` gets each window's index and the running sums, in order.
pub fn evaluate(
    model: &mut dyn Model,
    cache: &mut KvCache,
    tokens: &[TokenId],
    bos: Option<TokenId>,
    threads: usize,
    on_window: impl FnMut(usize, &NllSum),
) -> anyhow::Result<Report> {
    let no_rows = &mut |_: usize, _: &[f32], _: TokenId| Ok(());
    evaluate_rows(model, cache, tokens, bos, threads, None, on_window, no_rows)
}

/// A scored position's index in the whole evaluation, its logits and the token that
/// follows: what a KL-divergence run writes or compares.
pub type OnRow<'a> = &'a mut dyn FnMut(usize, &[f32], TokenId) -> anyhow::Result<()>;

/// [`evaluate`] over at most `max_windows` windows, also handing every scored row to
/// `on_row` (indexed `window * scored + offset`, whatever the batch shape).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_rows(
    model: &mut dyn Model,
    cache: &mut KvCache,
    tokens: &[TokenId],
    bos: Option<TokenId>,
    threads: usize,
    max_windows: Option<usize>,
    mut on_window: impl FnMut(usize, &NllSum),
    on_row: OnRow<'_>,
) -> anyhow::Result<Report> {
    let num_ctx = cache.config().num_ctx;
    let mut windows = Windows::new(tokens.len(), num_ctx)?;
    if let Some(max) = max_windows {
        windows.count = windows.count.min(max.max(1));
    }
    let n_seq = cache.config().num_parallel.min(windows.count);
    let step = (cache.config().num_batch / n_seq).clamp(1, num_ctx);
    let scored = windows.scored();
    let mut batch = Batch::new();
    let mut logits = Logits::new();
    // Per window of the group: (batch index, token to predict) of each scored position.
    let mut targets: Vec<Vec<(usize, TokenId)>> = vec![Vec::new(); n_seq];
    let mut total = NllSum::default();

    let start = Instant::now();
    for first_window in (0..windows.count).step_by(n_seq) {
        let group = first_window..(first_window + n_seq).min(windows.count);
        let mut sums = vec![NllSum::default(); group.len()];
        cache.clear();
        for pass in (0..num_ctx).step_by(step) {
            batch.clear();
            for (seq, w) in group.clone().enumerate() {
                let window = &tokens[windows.range(w)];
                targets[seq].clear();
                for pos in pass..(pass + step).min(num_ctx) {
                    let token = match bos {
                        Some(bos) if pos == 0 => bos,
                        _ => window[pos],
                    };
                    let wanted = scored.contains(&pos);
                    if wanted {
                        targets[seq].push((batch.len(), window[pos + 1]));
                    }
                    batch.push(token, i32::try_from(pos)?, seq, wanted);
                }
            }
            model.forward(&batch, cache, &mut logits)?;
            for (sum, targets) in sums.iter_mut().zip(&targets) {
                sum.merge(score(&logits, targets, threads)?);
            }
            for (w, targets) in group.clone().zip(&targets) {
                let first = w * scored.len() + pass.max(scored.start) - scored.start;
                for (i, &(index, next)) in targets.iter().enumerate() {
                    let row = logits
                        .row(index)
                        .ok_or(PerplexityError::MissingLogits(index))?;
                    on_row(first + i, row, next)?;
                }
            }
        }
        for (w, sum) in group.zip(sums) {
            total.merge(sum);
            on_window(w, &total);
        }
    }
    Ok(Report {
        windows,
        n_seq,
        nll: total,
        time: start.elapsed(),
    })
}

/// Sums the nll of each `(batch index, next token)` under `logits`, on `threads` threads.
fn score(
    logits: &Logits,
    targets: &[(usize, TokenId)],
    threads: usize,
) -> Result<NllSum, PerplexityError> {
    let score_part = |part: &[(usize, TokenId)]| {
        let mut sum = NllSum::default();
        for &(index, token) in part {
            let row = logits
                .row(index)
                .ok_or(PerplexityError::MissingLogits(index))?;
            let nll = token_nll(row, token as usize).ok_or(PerplexityError::TokenOutOfRange {
                token,
                n_vocab: row.len(),
            })?;
            sum.add(nll);
        }
        Ok(sum)
    };
    let per_thread = targets.len().div_ceil(threads.max(1)).max(1);
    let parts: Vec<Result<NllSum, PerplexityError>> = std::thread::scope(|scope| {
        let mut chunks = targets.chunks(per_thread);
        let first = chunks.next();
        let handles: Vec<_> = chunks
            .map(|part| scope.spawn(move || score_part(part)))
            .collect();
        let mut parts = vec![first.map_or(Ok(NllSum::default()), score_part)];
        parts.extend(handles.into_iter().map(|h| {
            h.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }));
        parts
    });
    let mut total = NllSum::default();
    for part in parts {
        total.merge(part?);
    }
    Ok(total)
}

/// Tokenizes the file, evaluates it and prints the perplexity.
pub fn run(args: &PerplexityArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let file = GgufFile::open(&args.model)?;
    let tokenizer = Tokenizer::from_metadata(file.metadata())?;
    let bos = if tokenizer.adds_bos() {
        let bos = tokenizer.vocab().bos();
        anyhow::ensure!(bos.is_some(), "the model adds BOS but names no BOS token");
        bos
    } else {
        None
    };
    // EOS is never appended: llama.cpp refuses models that add it.
    let tokens: Vec<TokenId> = bos
        .into_iter()
        .chain(tokenizer.encode(&text, false, false))
        .collect();
    let windows = Windows::new(tokens.len(), args.num_ctx)
        .with_context(|| format!("cannot evaluate {}", args.file.display()))?;
    let kv = cache_config(tokens.len(), args.num_ctx, args.batch, &args.cache)?;
    let options = LoadOptions {
        threads: args.threads,
        kv,
        numerics: args.cache.numerics()?,
        device: args.cache.device()?,
    };
    let file = model::prepare(file, &options)?;
    let mut model = model::load(Arc::clone(&file), &options)?;
    let mut cache = model::new_cache(model.as_ref(), kv)?;
    eprintln!("{}", describe(&cache));
    if args.num_ctx > model.train_ctx() {
        eprintln!(
            "warning: the model was trained on {} tokens of context, {} asked",
            model.train_ctx(),
            args.num_ctx
        );
    }
    eprintln!(
        "perplexity: {} tokens, {} windows of {}, {} per pass, {} threads",
        tokens.len(),
        windows.count,
        args.num_ctx,
        kv.num_parallel,
        args.threads
    );
    let shape = kld::Shape {
        n_vocab: model.n_vocab(),
        n_ctx: args.num_ctx,
        windows: windows.count.min(args.chunks.unwrap_or(usize::MAX).max(1)),
        scored: windows.scored().len(),
        fingerprint: kld::fingerprint(&tokens),
    };
    let mut base = match (&args.kl_divergence_base, args.kl_divergence) {
        (Some(path), false) => Some(kld::BaseWriter::create(path, shape)?),
        _ => None,
    };
    let mut compare = match (&args.kl_divergence_base, args.kl_divergence) {
        (Some(path), true) => Some(kld::BaseReader::open(path, shape)?),
        _ => None,
    };
    let on_row = &mut |row: usize, logits: &[f32], next: TokenId| {
        if let Some(base) = &mut base {
            base.row(row, logits, next)?;
        }
        if let Some(compare) = &mut compare {
            compare.row(row, logits, next)?;
        }
        Ok(())
    };
    let report = evaluate_rows(
        model.as_mut(),
        &mut cache,
        &tokens,
        bos,
        args.threads,
        args.chunks,
        |w, sum| {
            if let Some(estimate) = sum.estimate() {
                eprint!("[{}]{:.4},", w + 1, estimate.ppl);
            }
        },
        on_row,
    )?;
    eprintln!();
    let evaluated = report.windows.count * args.num_ctx;
    eprintln!(
        "perplexity: {} tokens scored, {evaluated} evaluated in {:.2} s ({:.1} tok/s)",
        report.nll.count(),
        report.time.as_secs_f64(),
        evaluated as f64 / report.time.as_secs_f64().max(1e-9)
    );
    let estimate = report
        .nll
        .estimate()
        .ok_or(PerplexityError::NothingScored)?;
    writeln!(out, "{estimate}")?;
    if let Some(kld) = compare.and_then(|c| c.stats.report()) {
        writeln!(out, "{kld}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
