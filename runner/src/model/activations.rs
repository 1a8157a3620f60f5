//! The per-pass buffers of a model (hidden states, projections, attention and MLP
//! scratch), sized at load for the largest batch so that a forward pass allocates
//! nothing. Their widths ([`ActivationDims`]) and the bytes they take
//! ([`plan::compute::activations_bytes`], [`ActivationDims::floats_per_token`]) are the
//! `plan` crate's, which [`crate::estimate()`] adds up in advance.

use super::attention::AttentionScratch;
use super::layers::MlpScratch;
use super::moe::MoeScratch;

pub use plan::compute::{ActivationDims, ComputeConfig};

/// The buffers themselves.
#[derive(Debug)]
pub struct Activations {
    /// Hidden states.
    pub x: Vec<f32>,
    /// Normalized hidden states.
    pub xn: Vec<f32>,
    /// Queries.
    pub q: Vec<f32>,
    /// Keys.
    pub k: Vec<f32>,
    /// Values.
    pub v: Vec<f32>,
    /// Attention outputs.
    pub attn: Vec<f32>,
    /// Output projections (attention, then MLP).
    pub proj: Vec<f32>,
    /// Cosines and sines per token, one table per RoPE.
    pub cos_sin: Vec<Vec<f32>>,
    /// The MLP's hidden rows.
    pub mlp: MlpScratch,
    /// A mixture of experts' routing and gathering buffers (empty for a dense model).
    pub moe: MoeScratch,
    /// Attention's scratch.
    pub attention: AttentionScratch,
    dims: ActivationDims,
}

/// `n` zeros written one by one: a zero the optimiser cannot see, so the allocation is
/// not turned into untouched zeroed pages and the memory is resident, as estimated.
pub(crate) fn touched(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    v.resize(n, std::hint::black_box(0.0));
    v
}

impl Activations {
    /// Buffers for `config.num_batch` tokens, allocated and touched now.
    pub fn new(dims: &ActivationDims, config: &ComputeConfig) -> Self {
        let a = &dims.attn;
        let mut s = Self {
            x: Vec::new(),
            xn: Vec::new(),
            q: Vec::new(),
            k: Vec::new(),
            v: Vec::new(),
            attn: Vec::new(),
            proj: Vec::new(),
            cos_sin: vec![Vec::new(); dims.n_rot.len()],
            mlp: MlpScratch::with_rows(config.num_batch * dims.n_ff),
            moe: MoeScratch::new(dims.moe, config.num_batch, dims.n_embd),
            attention: AttentionScratch::new(a, config),
            dims: dims.clone(),
        };
        s.resize(config.num_batch);
        s
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        let rows = [
            &self.x, &self.xn, &self.q, &self.k, &self.v, &self.attn, &self.proj,
        ];
        let rows: usize = rows.iter().map(|r| r.capacity()).sum();
        let cs: usize = self.cos_sin.iter().map(|r| r.capacity()).sum();
        (rows + cs) * 4 + self.mlp.bytes() + self.moe.bytes() + self.attention.bytes()
    }

    /// Sets every buffer's length for `n` tokens (within the allocation when `n` is at
    /// most the batch size it was made for).
    pub fn resize(&mut self, n: usize) {
        let (d, a) = (&self.dims, &self.dims.attn);
        let zero = std::hint::black_box(0.0);
        self.x.resize(n * d.n_embd, zero);
        self.xn.resize(n * d.n_embd, zero);
        self.q.resize(n * a.q_dim(), zero);
        self.k.resize(n * a.k_dim(), zero);
        self.v.resize(n * a.v_dim(), zero);
        self.attn.resize(n * a.out_dim(), zero);
        self.proj.resize(n * d.n_embd, zero);
        for (cs, &n_rot) in self.cos_sin.iter_mut().zip(&d.n_rot) {
            cs.resize(n * n_rot, zero);
        }
    }
}
