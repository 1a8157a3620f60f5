//! The pieces several architectures share: the gated feed-forward network, RMSNorm of
//! every row (token or head) in place, and RoPE over every head of a batch.

use gguf::GgufFile;
use kernels::ops::{Rope, rms_norm_in_place};

use super::ModelError;
use super::activations::touched;
use super::weights::{Cpu, Linear};

/// A gated feed-forward network: `down(act(gate(x), up(x)))`.
#[derive(Debug, Clone)]
pub struct GatedMlp {
    /// The gate projection.
    pub gate: Linear,
    /// The up projection.
    pub up: Linear,
    /// The down projection.
    pub down: Linear,
}

/// Scratch for [`GatedMlp::forward`]: two rows of the hidden width per token, the gate's
/// and the up projection's. Between networks it holds the stacked query, key and value
/// rows of a step ([`MlpScratch::staging`]).
#[derive(Debug, Default)]
pub struct MlpScratch {
    hidden: Vec<f32>,
}

impl MlpScratch {
    /// Scratch for `n` hidden values (tokens × hidden width), allocated and touched now.
    pub fn with_rows(n: usize) -> Self {
        Self {
            hidden: touched(2 * n),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.hidden.capacity() * 4
    }

    /// `len` values of the scratch for other work between networks, when it holds that
    /// many without growing.
    pub fn staging(&mut self, len: usize) -> Option<&mut [f32]> {
        if len > self.hidden.capacity() {
            return None;
        }
        if self.hidden.len() < len {
            self.hidden.resize(len, 0.0);
        }
        Some(&mut self.hidden[..len])
    }
}

impl GatedMlp {
    /// `{prefix}_gate`, `{prefix}_up`, `{prefix}_down` (e.g. `blk.0.ffn`), `n_embd` in and
    /// out, `n_ff` hidden.
    pub fn load(
        file: &GgufFile,
        prefix: &str,
        n_embd: usize,
        n_ff: usize,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            gate: Linear::load(file, &format!("{prefix}_gate"), n_embd, n_ff)?,
            up: Linear::load(file, &format!("{prefix}_up"), n_embd, n_ff)?,
            down: Linear::load(file, &format!("{prefix}_down"), n_ff, n_embd)?,
        })
    }

    /// `{prefix}_up` holding the gate's rows and then the up projection's (Phi-3's fused
    /// `gate_up_proj`), and `{prefix}_down`. Split by rows, the halves multiply as the
    /// fused matrix does, row for row.
    pub fn fused(
        file: &GgufFile,
        prefix: &str,
        n_embd: usize,
        n_ff: usize,
    ) -> Result<Self, ModelError> {
        let gate_up = Linear::load(file, &format!("{prefix}_up"), n_embd, 2 * n_ff)?;
        let [gate, up] = gate_up.split_rows([n_ff, n_ff]);
        Ok(Self {
            gate,
            up,
            down: Linear::load(file, &format!("{prefix}_down"), n_ff, n_embd)?,
        })
    }

    /// Runs `n` tokens of `x` through the network into `out`, with the gated activation
    /// `act(gate, up, out)` (SwiGLU for llama, GeGLU for Gemma). The gate and up
    /// projections run as one product when their matrices allow it.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        cpu: &mut Cpu,
        file: &GgufFile,
        act: fn(&[f32], &[f32], &mut [f32]),
        x: &[f32],
        n: usize,
        scratch: &mut MlpScratch,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let width = self.gate.rows();
        let hidden = n * width;
        scratch.hidden.resize(2 * hidden, 0.0);
        let stacked = &mut scratch.hidden[..2 * hidden];
        if !Linear::forward_stacked(&[&self.gate, &self.up], cpu, file, x, n, stacked)? {
            return self.run(Linear::forward, (cpu, file), act, x, n, scratch, out);
        }
        // Token t's gate row and up row lie side by side: the activation goes into the up
        // row, and the up rows move to the front, where `down` reads them.
        for row in stacked.chunks_exact_mut(2 * width) {
            let (gate, up) = row.split_at_mut(width);
            activation_into_up(act, width, gate, up);
        }
        for t in 0..n {
            stacked.copy_within((2 * t + 1) * width..(2 * t + 2) * width, t * width);
        }
        self.down
            .forward(cpu, file, &scratch.hidden[..hidden], n, out)
    }

    /// [`GatedMlp::forward`] for the tokens a router sent to this network, one expert of
    /// a mixture, multiplied as llama.cpp's `mul_mat_id` multiplies them
    /// ([`Linear::forward_gathered`]).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_gathered(
        &self,
        cpu: &mut Cpu,
        file: &GgufFile,
        act: fn(&[f32], &[f32], &mut [f32]),
        x: &[f32],
        n: usize,
        scratch: &mut MlpScratch,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        self.run(
            Linear::forward_gathered,
            (cpu, file),
            act,
            x,
            n,
            scratch,
            out,
        )
    }

    /// The network with its three products done by `product`, one matrix at a time.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        product: Product,
        (cpu, file): (&mut Cpu, &GgufFile),
        act: fn(&[f32], &[f32], &mut [f32]),
        x: &[f32],
        n: usize,
        scratch: &mut MlpScratch,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let hidden = n * self.gate.rows();
        scratch.hidden.resize(2 * hidden, 0.0);
        let (gate, up) = scratch.hidden[..2 * hidden].split_at_mut(hidden);
        product(&self.gate, cpu, file, x, n, gate)?;
        product(&self.up, cpu, file, x, n, up)?;
        activation_into_up(act, self.gate.rows(), gate, up);
        product(&self.down, cpu, file, up, n, out)
    }
}

/// One of [`Linear`]'s products (`forward`, `forward_gathered`).
type Product =
    fn(&Linear, &mut Cpu, &GgufFile, &[f32], usize, &mut [f32]) -> Result<(), ModelError>;

/// `up = act(gate, up)` row by row (`width` values a token) without a third buffer: done
/// in chunks through a small stack buffer, since the activations take separate input and
/// output slices. Chunks start at each row's start (a multiple of 16 into it), so SwiGLU's
/// vector groups and scalar tail fall where llama.cpp's do.
fn activation_into_up(
    act: fn(&[f32], &[f32], &mut [f32]),
    width: usize,
    gate: &[f32],
    up: &mut [f32],
) {
    const CHUNK: usize = 256;
    let mut tmp = [0.0f32; CHUNK];
    for (g_row, u_row) in gate.chunks(width).zip(up.chunks_mut(width)) {
        for (g, u) in g_row.chunks(CHUNK).zip(u_row.chunks_mut(CHUNK)) {
            let t = &mut tmp[..g.len()];
            act(g, u, t);
            u.copy_from_slice(t);
        }
    }
}

/// `x[t] = rms_norm(x[t]) * weight` for every row of `weight.len()` values (a token, or
/// one head of a token: Gemma's and Qwen 3's per-head Q/K norms).
pub fn norm_rows_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(weight.len()) {
        rms_norm_in_place(row, Some(weight), eps);
    }
}

/// RoPE on every head of every token of `x` (`dim` values per token), token `t` with the
/// `t`-th row of `cos_sin` (as `Rope::cos_sin_batch` writes it).
pub fn rotate(rope: &Rope, cos_sin: &[f32], x: &mut [f32], dim: usize) {
    let n_rot = rope.n_dims();
    for (row, cs) in x.chunks_exact_mut(dim).zip(cos_sin.chunks_exact(n_rot)) {
        rope.rotate_heads(row, cs);
    }
}
