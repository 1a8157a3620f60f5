//! The mixture-of-experts feed-forward network (Qwen 3 MoE): a router picks, for each
//! token, the `k` experts with the highest softmax probability, renormalises their
//! probabilities to sum to 1, runs the token through those experts' SwiGLU networks only,
//! and adds their outputs weighted by those probabilities.
//!
//! The tokens of a batch are grouped by expert, so each chosen expert's matrices are read
//! once per pass and the experts no token chose are not read at all: decode reads the
//! weights of `k` experts a layer, not of all of them. The arithmetic is llama.cpp's
//! `build_moe_ffn` with softmax gating and normalised weights: the router's product as
//! `mul_mat`, the softmax as `soft_max`, the choice as a descending `argsort`, the weights'
//! sum in `f64` (`sum_rows`), clamped below at 2^-14, each weight divided by it, the
//! experts' products as `mul_mat_id` (always `vec_dot`), each output multiplied by its
//! weight and the `k` outputs added in the router's order.
//! References: Shazeer et al., "Outrageously Large Neural Networks: The Sparsely-Gated
//! Mixture-of-Experts Layer" (2017); Qwen Team, "Qwen3 Technical Report" (2025).

use gguf::GgufFile;
use kernels::ops::softmax;
use plan::compute::MoeDims;

use super::ModelError;
use super::activations::touched;
use super::layers::{GatedMlp, MlpScratch};
use super::weights::{Cpu, Linear};

/// The smallest sum of the chosen weights that llama.cpp divides by (the smallest normal
/// f16, 2^-14).
const MIN_WEIGHT_SUM: f32 = 1.0 / 16384.0;

/// One layer's experts and router.
#[derive(Debug, Clone)]
pub struct Moe {
    router: Linear,
    experts: Vec<GatedMlp>,
    n_used: usize,
}

/// A feed-forward network: one dense network, or a mixture of experts.
#[derive(Debug, Clone)]
pub enum FeedForward {
    /// Every token through the same network.
    Dense(GatedMlp),
    /// Every token through the experts the router picks.
    Experts(Moe),
}

/// The buffers of [`Moe::forward`], for up to `n` tokens.
#[derive(Debug, Default)]
pub struct MoeScratch {
    logits: Vec<f32>,
    chosen: Vec<u32>,
    by_expert: Vec<u32>,
    weights: Vec<f32>,
    gathered: Vec<f32>,
    expert_out: Vec<f32>,
    outputs: Vec<f32>,
}

impl MoeScratch {
    /// Buffers for `n` tokens of `n_embd` values routed by `moe`, allocated and touched.
    pub fn new(moe: Option<MoeDims>, n: usize, n_embd: usize) -> Self {
        let Some(m) = moe else {
            return Self::default();
        };
        let k = m.n_expert_used;
        Self {
            logits: touched(n * m.n_expert),
            chosen: vec![std::hint::black_box(0); n * k],
            by_expert: vec![std::hint::black_box(0); n * k],
            weights: touched(n * k),
            gathered: touched(n * n_embd),
            expert_out: touched(n * n_embd),
            outputs: touched(n * k * n_embd),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let f = [
            &self.logits,
            &self.weights,
            &self.gathered,
            &self.expert_out,
            &self.outputs,
        ];
        let ids = self.chosen.capacity() + self.by_expert.capacity();
        (f.iter().map(|v| v.capacity()).sum::<usize>() + ids) * 4
    }
}

impl Moe {
    /// `{prefix}_gate_inp` (the router, `n_embd` → `n_expert`) and the experts
    /// `{prefix}_{gate,up,down}_exps`, `k = dims.n_expert_used` of them per token.
    pub fn load(
        file: &GgufFile,
        prefix: &str,
        n_embd: usize,
        n_ff_exp: usize,
        dims: MoeDims,
    ) -> Result<Self, ModelError> {
        let e = dims.n_expert;
        let experts = |name: &str, cols, rows| {
            Linear::load_experts(file, &format!("{prefix}_{name}_exps.weight"), cols, rows, e)
        };
        let (gate, up) = (
            experts("gate", n_embd, n_ff_exp)?,
            experts("up", n_embd, n_ff_exp)?,
        );
        let down = experts("down", n_ff_exp, n_embd)?;
        Ok(Self {
            router: Linear::load_weight(file, &format!("{prefix}_gate_inp.weight"), n_embd, e)?,
            experts: (gate.into_iter().zip(up).zip(down))
                .map(|((gate, up), down)| GatedMlp { gate, up, down })
                .collect(),
            n_used: dims.n_expert_used,
        })
    }

    /// The router (`n_embd` → one logit per expert).
    pub fn router(&self) -> &Linear {
        &self.router
    }

    /// Every expert, in the file's order.
    pub fn experts(&self) -> &[GatedMlp] {
        &self.experts
    }

    /// Experts each token is routed to.
    pub fn n_used(&self) -> usize {
        self.n_used
    }

    /// Routes `n` tokens of `x` and writes the weighted sum of their experts' outputs
    /// into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        cpu: &mut Cpu,
        file: &GgufFile,
        act: fn(&[f32], &[f32], &mut [f32]),
        x: &[f32],
        n: usize,
        (mlp, s): (&mut MlpScratch, &mut MoeScratch),
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let (n_expert, k) = (self.experts.len(), self.n_used);
        let d = x.len() / n.max(1);
        let logits = &mut s.logits[..n * n_expert];
        self.router.forward(cpu, file, x, n, logits)?;
        let (chosen, weights) = (&mut s.chosen[..n * k], &mut s.weights[..n * k]);
        let by_expert = &mut s.by_expert[..n * k];
        route_batch(logits, (n_expert, k), (chosen, weights), by_expert);

        let outputs = &mut s.outputs[..n * k * d];
        for group in by_expert.chunk_by(|&a, &b| chosen[a as usize] == chosen[b as usize]) {
            let (e, m) = (chosen[group[0] as usize] as usize, group.len());
            for (row, &i) in s.gathered.chunks_exact_mut(d).zip(group) {
                let t = i as usize / k;
                row.copy_from_slice(&x[t * d..(t + 1) * d]);
            }
            let (xg, y) = (&s.gathered[..m * d], &mut s.expert_out[..m * d]);
            self.experts[e].forward_gathered(cpu, file, act, xg, m, mlp, y)?;
            for (row, &i) in y.chunks_exact(d).zip(group) {
                let (i, w) = (i as usize, weights[i as usize]);
                for (o, &v) in outputs[i * d..(i + 1) * d].iter_mut().zip(row) {
                    *o = v * w;
                }
            }
        }
        for (o, slots) in out[..n * d]
            .chunks_exact_mut(d)
            .zip(outputs.chunks_exact(k * d))
        {
            o.copy_from_slice(&slots[..d]);
            for slot in slots.chunks_exact(d).skip(1) {
                kernels::ops::add_assign(o, slot);
            }
        }
        Ok(())
    }
}

/// The routing of a batch: each token's row of `n_expert` router logits in `logits`
/// (turned into probabilities in place) gives its `k` experts in `chosen` and their
/// weights in `weights` ([`route`]), and `by_expert` receives the (token, slot) indices
/// `token · k + slot` grouped by expert, in token order within each: both the CPU pass
/// and the GPU pass run each chosen expert once, on its group.
pub(crate) fn route_batch(
    logits: &mut [f32],
    (n_expert, k): (usize, usize),
    (chosen, weights): (&mut [u32], &mut [f32]),
    by_expert: &mut [u32],
) {
    for ((probs, ids), w) in logits
        .chunks_exact_mut(n_expert)
        .zip(chosen.chunks_exact_mut(k))
        .zip(weights.chunks_exact_mut(k))
    {
        route(probs, ids, w);
    }
    for (slot, i) in by_expert.iter_mut().zip(0u32..) {
        *slot = i;
    }
    by_expert.sort_unstable_by_key(|&i| (chosen[i as usize], i));
}

/// One token's routing: `probs` (the router's logits, turned into probabilities in
/// place), the ids of the `ids.len()` most probable experts in descending order, and
/// their normalised weights.
fn route(probs: &mut [f32], ids: &mut [u32], weights: &mut [f32]) {
    softmax(probs);
    // Descending by probability (llama.cpp's argsort); on a tie, which random weights
    // never give, the lower id first.
    for j in 0..ids.len() {
        let taken = &ids[..j];
        let best = (0..probs.len() as u32)
            .filter(|id| !taken.contains(id))
            .fold(None, |best: Option<u32>, id| match best {
                Some(b) if probs[b as usize] >= probs[id as usize] => Some(b),
                _ => Some(id),
            });
        ids[j] = best.unwrap_or(0);
    }
    let mut sum = 0.0f64;
    for (w, &id) in weights.iter_mut().zip(ids.iter()) {
        *w = probs[id as usize];
        sum += f64::from(*w);
    }
    let sum = (sum as f32).max(MIN_WEIGHT_SUM);
    for w in weights.iter_mut() {
        *w /= sum;
    }
}

impl FeedForward {
    /// Runs `n` tokens of `x` through the network into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        cpu: &mut Cpu,
        file: &GgufFile,
        act: fn(&[f32], &[f32], &mut [f32]),
        x: &[f32],
        n: usize,
        scratch: (&mut MlpScratch, &mut MoeScratch),
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        match self {
            Self::Dense(mlp) => mlp.forward(cpu, file, act, x, n, scratch.0, out),
            Self::Experts(moe) => moe.forward(cpu, file, act, x, n, scratch, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_picks_the_most_probable_and_normalises() {
        let mut logits = [0.5f32, 3.0, -1.0, 2.0, 2.5, 0.0];
        let (mut ids, mut w) = ([0u32; 3], [0f32; 3]);
        route(&mut logits, &mut ids, &mut w);
        assert_eq!(ids, [1, 4, 3]);
        let sum: f32 = w.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6, "{w:?}");
        assert!(w[0] > w[1] && w[1] > w[2]);
        // exp(3) / (exp(3) + exp(2.5) + exp(2))
        let e = |v: f64| v.exp();
        let want = e(3.0) / (e(3.0) + e(2.5) + e(2.0));
        assert!((f64::from(w[0]) - want).abs() < 1e-6);
    }
}
