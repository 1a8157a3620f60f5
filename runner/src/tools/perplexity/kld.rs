//! KL divergence between two runs' token distributions over the same windows, as
//! llama.cpp's `llama-perplexity --kl-divergence-base` measures a quantization: one run
//! (the base, e.g. the exact numerics) writes every scored position's log-probabilities
//! to a file; another run (fast numerics, another K/V type) reads them back and reports
//! the mean KL divergence, its 99th percentile, how often both pick the same top token,
//! and the ratio of the two perplexities.
//!
//! The file: a header (magic, vocabulary size, window length, windows, scored positions
//! per window, a fingerprint of the evaluated token ids), then one fixed-size record per
//! scored position at `window * scored + offset`, so that runs with different batch
//! shapes write and read the same layout. A record holds the token's exact negative
//! log-likelihood, the top token, and the log-probabilities quantized to 16 bits between
//! their minimum and 0 (as llama.cpp stores them: a vocabulary of 262k at 2 bytes each).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::Context;

use super::{NllSum, token_nll};
use crate::tokenizer::TokenId;

const MAGIC: &[u8; 8] = b"OLKLD\0\0\x01";
const HEADER_BYTES: u64 = 8 + 4 * 4 + 8;
/// Bytes of a record before its quantized log-probabilities.
const RECORD_HEAD: usize = 4 + 4 + 4;

/// What both runs must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Logits per row.
    pub n_vocab: usize,
    /// Tokens per window.
    pub n_ctx: usize,
    /// Windows evaluated.
    pub windows: usize,
    /// Scored positions per window.
    pub scored: usize,
    /// FNV-1a of the evaluated token ids: the same text, tokenized the same way.
    pub fingerprint: u64,
}

impl Shape {
    fn record_bytes(&self) -> usize {
        RECORD_HEAD + 2 * self.n_vocab
    }

    fn offset(&self, row: usize) -> u64 {
        HEADER_BYTES + row as u64 * self.record_bytes() as u64
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for v in [self.n_vocab, self.n_ctx, self.windows, self.scored] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8; HEADER_BYTES as usize]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            &bytes[..8] == MAGIC,
            "not a KL-divergence base written by `ollama-runner perplexity --kl-divergence-base`"
        );
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[8 + 4 * i..12 + 4 * i]);
            u32::from_le_bytes(b) as usize
        };
        let mut f = [0u8; 8];
        f.copy_from_slice(&bytes[24..32]);
        Ok(Self {
            n_vocab: u32_at(0),
            n_ctx: u32_at(1),
            windows: u32_at(2),
            scored: u32_at(3),
            fingerprint: u64::from_le_bytes(f),
        })
    }
}

/// FNV-1a over the token ids: enough to tell two texts or tokenizations apart.
pub fn fingerprint(tokens: &[TokenId]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in tokens.iter().flat_map(|t| t.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// `logits`' log-softmax (f64 sums, as [`token_nll`]) and the index of the largest.
fn log_softmax(logits: &[f32]) -> (Vec<f64>, usize) {
    let (mut argmax, mut max) = (0, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if l > max {
            (argmax, max) = (i, l);
        }
    }
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let lse = sum.ln();
    let out = logits.iter().map(|&l| f64::from(l - max) - lse).collect();
    (out, argmax)
}

/// Writes the base run's records.
pub struct BaseWriter {
    file: File,
    shape: Shape,
    record: Vec<u8>,
}

impl BaseWriter {
    /// Creates `path` for a run of `shape`.
    pub fn create(path: &Path, shape: Shape) -> anyhow::Result<Self> {
        let mut file = File::create(path)
            .with_context(|| format!("cannot create the KL-divergence base {}", path.display()))?;
        file.write_all(&shape.encode())?;
        file.set_len(shape.offset(shape.windows * shape.scored))?;
        Ok(Self {
            file,
            shape,
            record: Vec::with_capacity(shape.record_bytes()),
        })
    }

    /// Records scored position `row` with its `logits` and the `next` token.
    pub fn row(&mut self, row: usize, logits: &[f32], next: TokenId) -> anyhow::Result<()> {
        anyhow::ensure!(
            logits.len() == self.shape.n_vocab,
            "a row of {} logits",
            logits.len()
        );
        let (logp, argmax) = log_softmax(logits);
        let nll = -logp
            .get(next as usize)
            .with_context(|| format!("token {next} is outside the vocabulary"))?;
        let min = logp.iter().copied().fold(0.0f64, f64::min).max(-1e4);
        let scale = -min / f64::from(u16::MAX);
        self.record.clear();
        self.record.extend_from_slice(&(nll as f32).to_le_bytes());
        self.record
            .extend_from_slice(&(argmax as u32).to_le_bytes());
        self.record.extend_from_slice(&(min as f32).to_le_bytes());
        for &lp in &logp {
            let q = if scale > 0.0 {
                ((lp.max(min) - min) / scale).round()
            } else {
                0.0
            };
            self.record.extend_from_slice(&(q as u16).to_le_bytes());
        }
        self.file.seek(SeekFrom::Start(self.shape.offset(row)))?;
        self.file.write_all(&self.record)?;
        Ok(())
    }
}

/// The comparison's running figures.
#[derive(Debug, Default)]
pub struct KldStats {
    klds: Vec<f64>,
    /// Per position, this run's negative log-likelihood less the base's.
    nll_diffs: Vec<f64>,
    same_top: usize,
    base: NllSum,
    ours: NllSum,
}

/// What a comparison found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KldReport {
    /// Positions compared.
    pub count: usize,
    /// Mean KL divergence (base ‖ this run), nats.
    pub mean: f64,
    /// Its standard error.
    pub mean_error: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The largest.
    pub max: f64,
    /// Share of positions where both runs' most likely token is the same.
    pub same_top: f64,
    /// The base run's perplexity.
    pub base_ppl: f64,
    /// This run's perplexity.
    pub ppl: f64,
    /// The standard error of `ppl / base_ppl`: the two runs score the same positions, so
    /// it comes from the spread of the per-position differences of their log-likelihoods
    /// (as llama.cpp's `Mean PPL(Q)/PPL(base)` uncertainty does).
    pub ratio_error: f64,
}

impl KldStats {
    /// The figures, or `None` before any position.
    pub fn report(&self) -> Option<KldReport> {
        let n = self.klds.len();
        if n == 0 {
            return None;
        }
        let mean = self.klds.iter().sum::<f64>() / n as f64;
        let var = self.klds.iter().map(|k| (k - mean).powi(2)).sum::<f64>() / n as f64;
        let mut sorted = self.klds.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = sorted[((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1];
        let (base_ppl, ppl) = (self.base.estimate()?.ppl, self.ours.estimate()?.ppl);
        let d_mean = self.nll_diffs.iter().sum::<f64>() / n as f64;
        let d_var = self
            .nll_diffs
            .iter()
            .map(|d| (d - d_mean).powi(2))
            .sum::<f64>();
        let ln_ratio_error = if n > 1 {
            (d_var / (n - 1) as f64 / n as f64).sqrt()
        } else {
            0.0
        };
        Some(KldReport {
            count: n,
            mean,
            mean_error: if n > 1 {
                (var / (n - 1) as f64).sqrt()
            } else {
                0.0
            },
            p99,
            max: sorted[n - 1],
            same_top: self.same_top as f64 / n as f64,
            base_ppl,
            ppl,
            ratio_error: ppl / base_ppl * ln_ratio_error,
        })
    }
}

impl std::fmt::Display for KldReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "KLD positions: {}", self.count)?;
        writeln!(f, "Mean KLD: {:.6} +/- {:.6}", self.mean, self.mean_error)?;
        writeln!(f, "99th percentile KLD: {:.6}", self.p99)?;
        writeln!(f, "Maximum KLD: {:.6}", self.max)?;
        writeln!(f, "Same top token: {:.2}%", 100.0 * self.same_top)?;
        writeln!(f, "PPL(base) = {:.4}, PPL = {:.4}", self.base_ppl, self.ppl)?;
        write!(
            f,
            "PPL ratio: {:.6} +/- {:.6}",
            self.ppl / self.base_ppl,
            self.ratio_error
        )
    }
}

/// Reads the base run's records and compares this run's rows with them.
pub struct BaseReader {
    file: File,
    shape: Shape,
    record: Vec<u8>,
    logp: Vec<f64>,
    /// The figures so far.
    pub stats: KldStats,
}

impl BaseReader {
    /// Opens `path` and checks that it was written for the same evaluation as `shape`.
    pub fn open(path: &Path, shape: Shape) -> anyhow::Result<Self> {
        let mut file = File::open(path)
            .with_context(|| format!("cannot open the KL-divergence base {}", path.display()))?;
        let mut header = [0u8; HEADER_BYTES as usize];
        file.read_exact(&mut header).with_context(|| {
            format!("{} is too short to be a KL-divergence base", path.display())
        })?;
        let base = Shape::decode(&header)?;
        anyhow::ensure!(
            base == shape,
            "{} was written for another evaluation ({base:?}); this run is {shape:?}: use the \
             same model vocabulary, text, --num-ctx and --chunks",
            path.display()
        );
        let len = file.metadata()?.len();
        anyhow::ensure!(
            len >= shape.offset(shape.windows * shape.scored),
            "{} is truncated: {len} bytes",
            path.display()
        );
        Ok(Self {
            file,
            shape,
            record: vec![0; shape.record_bytes()],
            logp: Vec::with_capacity(shape.n_vocab),
            stats: KldStats::default(),
        })
    }

    /// Compares scored position `row` (this run's `logits`, the `next` token) with the
    /// base's record of it.
    pub fn row(&mut self, row: usize, logits: &[f32], next: TokenId) -> anyhow::Result<()> {
        anyhow::ensure!(
            logits.len() == self.shape.n_vocab,
            "a row of {} logits",
            logits.len()
        );
        self.file.seek(SeekFrom::Start(self.shape.offset(row)))?;
        self.file.read_exact(&mut self.record)?;
        let f32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&self.record[i..i + 4]);
            b
        };
        let base_nll = f64::from(f32::from_le_bytes(f32_at(0)));
        let base_top = u32::from_le_bytes(f32_at(4)) as usize;
        let min = f64::from(f32::from_le_bytes(f32_at(8)));
        let scale = -min / f64::from(u16::MAX);
        let (logq, top) = log_softmax(logits);
        self.logp.clear();
        self.logp.extend(
            self.record[RECORD_HEAD..]
                .chunks_exact(2)
                .map(|pair| min + scale * f64::from(u16::from_le_bytes([pair[0], pair[1]]))),
        );
        // Renormalised: the rounding of each log-probability would otherwise add its
        // mean error to every divergence (about 4e-5 on SmolLM2 against itself).
        let lse = self.logp.iter().map(|lp| lp.exp()).sum::<f64>().ln();
        let kld: f64 = self
            .logp
            .iter()
            .zip(&logq)
            .map(|(&lp, &lq)| (lp - lse).exp() * (lp - lse - lq))
            .sum();
        let nll = token_nll(logits, next as usize)
            .with_context(|| format!("token {next} is outside the vocabulary"))?;
        // Quantization can make a near-zero divergence slightly negative.
        self.stats.klds.push(kld.max(0.0));
        self.stats.same_top += usize::from(top == base_top);
        self.stats.base.add(base_nll);
        self.stats.ours.add(nll);
        self.stats.nll_diffs.push(nll - base_nll);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n_vocab: usize, rows: usize) -> Shape {
        Shape {
            n_vocab,
            n_ctx: 8,
            windows: 1,
            scored: rows,
            fingerprint: fingerprint(&[1, 2, 3]),
        }
    }

    fn kld_exact(p: &[f32], q: &[f32]) -> f64 {
        let (lp, _) = log_softmax(p);
        let (lq, _) = log_softmax(q);
        lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum()
    }

    #[test]
    fn a_run_against_itself_diverges_by_nothing_and_agrees_on_every_top_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.kld");
        let rows: Vec<Vec<f32>> = (0..5)
            .map(|r| {
                (0..300)
                    .map(|i| ((i * 7 + r * 13) % 31) as f32 * 0.3 - 4.0)
                    .collect()
            })
            .collect();
        let mut writer = BaseWriter::create(&path, shape(300, 5)).unwrap();
        // Out of order, as several windows in one pass would write them.
        for r in [3, 0, 4, 1, 2] {
            writer.row(r, &rows[r], 7).unwrap();
        }
        drop(writer);
        let mut reader = BaseReader::open(&path, shape(300, 5)).unwrap();
        for (r, row) in rows.iter().enumerate() {
            reader.row(r, row, 7).unwrap();
        }
        let report = reader.stats.report().unwrap();
        assert!(report.mean < 1e-6, "{report:?}");
        assert_eq!(report.same_top, 1.0);
        assert!((report.ppl / report.base_ppl - 1.0).abs() < 1e-6);
    }

    #[test]
    fn the_divergence_of_a_changed_distribution_is_the_exact_one_within_quantization() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.kld");
        let p: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 * 0.05).collect();
        let q: Vec<f32> = p
            .iter()
            .enumerate()
            .map(|(i, v)| v + (i % 7) as f32 * 0.1)
            .collect();
        let mut writer = BaseWriter::create(&path, shape(1000, 1)).unwrap();
        writer.row(0, &p, 3).unwrap();
        drop(writer);
        let mut reader = BaseReader::open(&path, shape(1000, 1)).unwrap();
        reader.row(0, &q, 3).unwrap();
        let report = reader.stats.report().unwrap();
        let exact = kld_exact(&p, &q);
        assert!(exact > 0.01, "{exact}");
        assert!(
            (report.mean - exact).abs() < 1e-3 * exact.max(1.0),
            "{report:?} vs {exact}"
        );
    }

    #[test]
    fn another_evaluation_or_a_foreign_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.kld");
        BaseWriter::create(&path, shape(10, 2)).unwrap();
        let other = Shape {
            fingerprint: 1,
            ..shape(10, 2)
        };
        let error = BaseReader::open(&path, other).err().unwrap().to_string();
        assert!(error.contains("another evaluation"), "{error}");
        std::fs::write(&path, b"not a base file at all, just text").unwrap();
        let error = BaseReader::open(&path, shape(10, 2))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("not a KL-divergence base"), "{error}");
        std::fs::write(&path, b"short").unwrap();
        assert!(BaseReader::open(&path, shape(10, 2)).is_err());
    }
}
