//! The decoder-only transformer every generative architecture we run is an instance of.
//!
//! Per token: embedding lookup (scaled, for Gemma); per block, a norm → the Q/K/V
//! projections (separate or one fused matrix, biases when the file has them) → an RMSNorm
//! of each query and key head (Qwen 3, Gemma) → RoPE → a query scale (Gemma) → causal
//! grouped-query attention over the cache (windowed on sliding layers) → output
//! projection → a post-norm (Gemma) → residual add; then a norm → the feed-forward
//! network → a post-norm (Gemma) → residual add. After the last block, the final norm and
//! the output head, and logit soft-capping when the file asks for it.
//!
//! An architecture's file says which of these parts its blocks have and how they are
//! named in the GGUF file ([`Block`], [`Recipe`]); this module runs them, in llama.cpp's
//! order of operations, so that with the kernels' llama.cpp arithmetic every
//! architecture's logits are llama.cpp's. The model files never see the kernels' numerics.

use std::sync::Arc;

use gguf::GgufFile;
use kernels::ops::{Rope, add_assign, geglu, scale_assign, softcap, swiglu};
use plan::ArchPlan;
use plan::compute::{AttentionShape, matmul_scratch_bytes};

use super::activations::Activations;
use super::attention::attention;
use super::gpu_pass::GpuPass;
use super::head::{OutputHead, keep_output_rows, norm_rows, with_placement};
use super::layers::{GatedMlp, norm_rows_in_place, rotate};
use super::moe::FeedForward;
use super::weights::{Cpu, Embedding, Linear, vector};
use super::{Batch, LoadOptions, Logits, Model, ModelError};
use crate::kvcache::{KvCache, KvLayout, Placement};

/// The gated activation of a feed-forward network: `act(gate, up, out)`.
pub type GatedActivation = fn(&[f32], &[f32], &mut [f32]);

/// Which gated activation a feed-forward network applies, named so that every backend
/// can pick its own kernel for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gated {
    /// `silu(gate) * up` (llama, Qwen, Phi-3).
    SwiGlu,
    /// `gelu_tanh(gate) * up` (Gemma).
    GeGlu,
}

impl Gated {
    /// The CPU kernel.
    pub fn cpu(self) -> GatedActivation {
        match self {
            Self::SwiGlu => swiglu,
            Self::GeGlu => geglu,
        }
    }
}

/// The knobs of an architecture that are not weights.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// `general.architecture`.
    pub name: &'static str,
    /// Hidden size.
    pub n_embd: usize,
    /// The norms' epsilon.
    pub eps: f32,
    /// The context length the model was trained for.
    pub train_ctx: usize,
    /// Attention's head layout and the scale on `q·k`.
    pub attn: AttentionShape,
    /// A factor on the token embeddings (Gemma: `sqrt(n_embd)`).
    pub embd_scale: Option<f32>,
    /// A factor on the queries after RoPE (Gemma, Phi-3), applied before attention.
    pub query_scale: Option<f32>,
    /// The feed-forward network's gated activation (SwiGLU, GeGLU).
    pub act: Gated,
    /// Soft-capping of the logits (`final_logit_softcapping`).
    pub final_softcap: Option<f32>,
}

impl Recipe {
    /// Llama's recipe under `name`: no embedding or query scale, SwiGLU, no soft cap
    /// (what llama, Qwen 2 and Qwen 3 share).
    pub fn llama_like(
        name: &'static str,
        n_embd: usize,
        eps: f32,
        train_ctx: usize,
        attn: AttentionShape,
    ) -> Self {
        Self {
            name,
            n_embd,
            eps,
            train_ctx,
            attn,
            embd_scale: None,
            query_scale: None,
            act: Gated::SwiGlu,
            final_softcap: None,
        }
    }
}

/// The query, key and value projections: three matrices, or rows of one fused matrix
/// (which, split by rows, multiply as the fused one does, row for row).
#[derive(Debug, Clone)]
pub struct Qkv {
    /// Queries.
    pub q: Linear,
    /// Keys.
    pub k: Linear,
    /// Values.
    pub v: Linear,
}

impl Qkv {
    /// `{prefix}.attn_q`, `attn_k`, `attn_v` (with their biases when present).
    pub fn separate(
        file: &GgufFile,
        prefix: &str,
        n_embd: usize,
        a: &AttentionShape,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            q: Linear::load(file, &format!("{prefix}.attn_q"), n_embd, a.q_dim())?,
            k: Linear::load(file, &format!("{prefix}.attn_k"), n_embd, a.k_dim())?,
            v: Linear::load(file, &format!("{prefix}.attn_v"), n_embd, a.v_dim())?,
        })
    }

    /// `{prefix}.attn_qkv`: queries, keys and values stacked by rows.
    pub fn fused(
        file: &GgufFile,
        prefix: &str,
        n_embd: usize,
        a: &AttentionShape,
    ) -> Result<Self, ModelError> {
        let (q, k, v) = (a.q_dim(), a.k_dim(), a.v_dim());
        let qkv = Linear::load(file, &format!("{prefix}.attn_qkv"), n_embd, q + k + v)?;
        let [q, k, v] = qkv.split_rows([q, k, v]);
        Ok(Self { q, k, v })
    }
}

impl Qkv {
    /// Query, key and value values of a token, together.
    pub fn width(&self) -> usize {
        self.q.rows() + self.k.rows() + self.v.rows()
    }

    /// The queries, keys and values of `n` tokens of `x`: in one product when the three
    /// matrices can share one and `staging` holds [`Qkv::width`] values a token (a decode
    /// step of a small model pays for each product's dispatch), else one at a time.
    pub fn forward(
        &self,
        (cpu, file): (&mut Cpu, &GgufFile),
        x: &[f32],
        n: usize,
        staging: Option<&mut [f32]>,
        (q, k, v): (&mut [f32], &mut [f32], &mut [f32]),
    ) -> Result<(), ModelError> {
        let linears = [&self.q, &self.k, &self.v];
        if let Some(stacked) = staging
            && Linear::forward_stacked(&linears, cpu, file, x, n, stacked)?
        {
            let (outs, width) = ([q, k, v], self.width());
            let mut first = 0;
            for (l, out) in linears.iter().zip(outs) {
                let rows = l.rows();
                for (row, o) in stacked.chunks_exact(width).zip(out.chunks_exact_mut(rows)) {
                    o.copy_from_slice(&row[first..first + rows]);
                }
                first += rows;
            }
            return Ok(());
        }
        self.q.forward(cpu, file, x, n, q)?;
        self.k.forward(cpu, file, x, n, k)?;
        self.v.forward(cpu, file, x, n, v)
    }
}

/// One transformer block's weights.
#[derive(Debug, Clone)]
pub struct Block {
    /// The norm before attention.
    pub attn_norm: Vec<f32>,
    /// The input projections.
    pub qkv: Qkv,
    /// RMSNorm weights of one query head and one key head (`head_dim` values each).
    pub qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    /// The output projection.
    pub wo: Linear,
    /// The norm of attention's output, before the residual add (Gemma).
    pub attn_post_norm: Option<Vec<f32>>,
    /// The norm before the feed-forward network.
    pub ffn_norm: Vec<f32>,
    /// The feed-forward network.
    pub mlp: FeedForward,
    /// The norm of the network's output, before the residual add (Gemma).
    pub ffn_post_norm: Option<Vec<f32>>,
    /// Which of the model's rotary embeddings this block uses.
    pub rope: usize,
}

impl Block {
    /// The block llama's layout names: `blk.{i}.attn_norm`, `attn_{q,k,v}`,
    /// `attn_output`, `ffn_norm` and `ffn_{gate,up,down}`; the optional parts are
    /// added by the architecture with the builder methods below.
    pub fn standard(
        file: &GgufFile,
        i: usize,
        n_embd: usize,
        n_ff: usize,
        a: &AttentionShape,
    ) -> Result<Self, ModelError> {
        let p = format!("blk.{i}");
        let qkv = Qkv::separate(file, &p, n_embd, a)?;
        let mlp = FeedForward::Dense(GatedMlp::load(file, &format!("{p}.ffn"), n_embd, n_ff)?);
        Self::with_projections(file, i, n_embd, a, qkv, mlp)
    }

    /// A block of llama's layout whose input projections and network the architecture
    /// loaded itself (fused ones, say): the norms and `attn_output` are found here.
    pub fn with_projections(
        file: &GgufFile,
        i: usize,
        n_embd: usize,
        a: &AttentionShape,
        qkv: Qkv,
        mlp: FeedForward,
    ) -> Result<Self, ModelError> {
        let p = format!("blk.{i}");
        Ok(Self {
            attn_norm: vector(file, &format!("{p}.attn_norm.weight"), n_embd)?,
            qkv,
            qk_norm: None,
            wo: Linear::load(file, &format!("{p}.attn_output"), a.out_dim(), n_embd)?,
            attn_post_norm: None,
            ffn_norm: vector(file, &format!("{p}.ffn_norm.weight"), n_embd)?,
            mlp,
            ffn_post_norm: None,
            rope: 0,
        })
    }

    /// Adds the per-head query and key RMSNorms `blk.{i}.attn_{q,k}_norm`.
    pub fn with_qk_norm(
        mut self,
        file: &GgufFile,
        i: usize,
        head_dim: usize,
    ) -> Result<Self, ModelError> {
        let norm = |n: &str| vector(file, &format!("blk.{i}.{n}.weight"), head_dim);
        self.qk_norm = Some((norm("attn_q_norm")?, norm("attn_k_norm")?));
        Ok(self)
    }

    /// Adds the post-norms of attention and of the feed-forward network, named
    /// `blk.{i}.{attn}` and `blk.{i}.{ffn}`.
    pub fn with_post_norms(
        mut self,
        file: &GgufFile,
        i: usize,
        n_embd: usize,
        (attn, ffn): (&str, &str),
    ) -> Result<Self, ModelError> {
        let norm = |n: &str| vector(file, &format!("blk.{i}.{n}.weight"), n_embd);
        self.attn_post_norm = Some(norm(attn)?);
        self.ffn_post_norm = Some(norm(ffn)?);
        Ok(self)
    }

    /// Uses the model's rotary embedding number `rope`.
    pub fn with_rope(mut self, rope: usize) -> Self {
        self.rope = rope;
        self
    }
}

/// A loaded decoder: its weights and where its forward pass runs.
pub struct Decoder {
    weights: DecoderWeights,
    exec: Exec,
}

/// The backend of a decoder's forward pass: the one place that knows where it runs.
#[expect(
    clippy::large_enum_variant,
    reason = "one per loaded model, made once and never moved on a hot path"
)]
enum Exec {
    /// The CPU engine, in the numerics the options chose, and its buffers.
    Cpu { cpu: Cpu, act: Activations },
    /// A GPU: the weights uploaded, the device buffers of a pass.
    Gpu(Box<GpuPass>),
}

/// What a forward pass reads and never changes.
pub(crate) struct DecoderWeights {
    pub(crate) recipe: Recipe,
    pub(crate) file: Arc<GgufFile>,
    pub(crate) embd: Embedding,
    pub(crate) blocks: Vec<Block>,
    pub(crate) output_norm: Vec<f32>,
    pub(crate) output: Linear,
    pub(crate) ropes: Vec<Rope>,
    pub(crate) kv_layout: KvLayout,
}

/// What an architecture's loader hands to [`Decoder::new`].
pub struct Parts {
    /// The blocks, in order.
    pub blocks: Vec<Block>,
    /// The rotary embeddings the blocks refer to by index ([`Block::rope`]).
    pub ropes: Vec<Rope>,
    /// The buffer widths and the cache layout.
    pub plan: ArchPlan,
}

impl Decoder {
    /// The model in `file` made of `parts`: the embeddings (`token_embd.weight`), the
    /// final norm (`output_norm.weight`) and the output head (`output.weight` and its
    /// bias when present, else the embeddings) are found here, and the buffers sized.
    pub fn new(
        file: Arc<GgufFile>,
        options: &LoadOptions,
        recipe: Recipe,
        parts: Parts,
    ) -> Result<Self, ModelError> {
        let n_embd = recipe.n_embd;
        let embd = Embedding::load(&file, "token_embd.weight", n_embd)?;
        let output_norm = vector(&file, "output_norm.weight", n_embd)?;
        let output = match file.tensor("output.weight") {
            Some(_) => Linear::load(&file, "output", n_embd, embd.n_vocab())?,
            None => embd.as_linear()?,
        };
        debug_assert!(parts.blocks.iter().all(|b| b.rope < parts.ropes.len()));
        let compute = options.compute();
        let weights = DecoderWeights {
            embd,
            blocks: parts.blocks,
            output_norm,
            output,
            ropes: parts.ropes,
            kv_layout: parts.plan.kv,
            recipe,
            file,
        };
        let exec = match &options.device {
            Some(gpu) => Exec::Gpu(Box::new(GpuPass::new(
                std::sync::Arc::clone(gpu),
                &weights,
                &parts.plan.dims,
                compute.num_batch,
            )?)),
            None => Exec::Cpu {
                cpu: Cpu::new(
                    options.threads,
                    matmul_scratch_bytes(&weights.file, compute.num_batch),
                    options.numerics,
                )?,
                act: Activations::new(&parts.plan.dims, &compute),
            },
        };
        Ok(Self { weights, exec })
    }
}

impl DecoderWeights {
    /// The pass itself, with the batch's cells placed.
    fn run(
        &self,
        (cpu, s): (&mut Cpu, &mut Activations),
        batch: &Batch,
        cache: &mut KvCache,
        placement: &Placement,
        out: &mut Logits,
    ) -> Result<(), ModelError> {
        let n = batch.len();
        let (r, file) = (&self.recipe, &*self.file);
        let (d, a) = (r.n_embd, &r.attn);
        s.resize(n);

        for (&token, row) in batch.tokens().iter().zip(s.x.chunks_exact_mut(d)) {
            self.embd.lookup(file, token, row)?;
        }
        if let Some(f) = r.embd_scale {
            scale_assign(&mut s.x, f);
        }
        for (rope, cs) in self.ropes.iter().zip(s.cos_sin.iter_mut()) {
            rope.cos_sin_batch(batch.positions(), cs);
        }

        let n_layer = self.blocks.len();
        for (il, b) in self.blocks.iter().enumerate() {
            if batch.interrupted() {
                return Err(ModelError::Interrupted);
            }
            norm_rows(&s.x, &b.attn_norm, r.eps, &mut s.xn);
            let staging = s.mlp.staging(n * b.qkv.width());
            let qkv = (&mut s.q[..], &mut s.k[..], &mut s.v[..]);
            b.qkv.forward((cpu, file), &s.xn, n, staging, qkv)?;
            let (rope, cos_sin) = (&self.ropes[b.rope], &s.cos_sin[b.rope]);
            if let Some((q_norm, _)) = &b.qk_norm {
                norm_rows_in_place(&mut s.q, q_norm, r.eps);
            }
            rotate(rope, cos_sin, &mut s.q, a.q_dim());
            if let Some((_, k_norm)) = &b.qk_norm {
                norm_rows_in_place(&mut s.k, k_norm, r.eps);
            }
            rotate(rope, cos_sin, &mut s.k, a.k_dim());
            if let Some(f) = r.query_scale {
                scale_assign(&mut s.q, f);
            }
            let isa = cpu.isa();
            attention(
                cpu.pool(),
                isa,
                a,
                cache,
                il,
                placement,
                batch,
                &mut s.q,
                &mut s.k,
                &mut s.v,
                &mut s.attention,
                &mut s.attn,
            )?;
            b.wo.forward(cpu, file, &s.attn, n, &mut s.proj)?;
            // The last layer goes on with the rows that give output only.
            let n = if il + 1 == n_layer {
                keep_output_rows(batch, d, &mut s.x, &mut s.proj)
            } else {
                n
            };
            let rows = n * d;
            if let Some(w) = &b.attn_post_norm {
                norm_rows_in_place(&mut s.proj[..rows], w, r.eps);
            }
            add_assign(&mut s.x[..rows], &s.proj[..rows]);

            norm_rows(&s.x[..rows], &b.ffn_norm, r.eps, &mut s.xn[..rows]);
            let (x, proj) = (&s.xn[..rows], &mut s.proj[..rows]);
            let scratch = (&mut s.mlp, &mut s.moe);
            b.mlp.forward(cpu, file, r.act.cpu(), x, n, scratch, proj)?;
            if let Some(w) = &b.ffn_post_norm {
                norm_rows_in_place(&mut s.proj[..rows], w, r.eps);
            }
            add_assign(&mut s.x[..rows], &s.proj[..rows]);
        }

        let head = OutputHead {
            norm: &self.output_norm,
            eps: r.eps,
            output: &self.output,
        };
        let logits = head.run(cpu, file, batch, &s.x, &mut s.xn, out)?;
        if let (Some(logits), Some(cap)) = (logits, r.final_softcap) {
            softcap(logits, cap);
        }
        Ok(())
    }
}

impl Model for Decoder {
    fn architecture(&self) -> &'static str {
        self.weights.recipe.name
    }

    fn n_vocab(&self) -> usize {
        self.weights.embd.n_vocab()
    }

    fn n_embd(&self) -> usize {
        self.weights.recipe.n_embd
    }

    fn train_ctx(&self) -> usize {
        self.weights.recipe.train_ctx
    }

    fn kv_layout(&self) -> KvLayout {
        self.weights.kv_layout.clone()
    }

    fn scratch_bytes(&self) -> usize {
        match &self.exec {
            Exec::Cpu { cpu, act } => act.bytes() + cpu.scratch_bytes(),
            Exec::Gpu(pass) => pass.host_bytes(),
        }
    }

    fn device(&self) -> Option<Arc<gpu::Gpu>> {
        match &self.exec {
            Exec::Cpu { .. } => None,
            Exec::Gpu(pass) => Some(pass.gpu()),
        }
    }

    fn forward(
        &mut self,
        batch: &Batch,
        cache: &mut KvCache,
        out: &mut Logits,
    ) -> Result<(), ModelError> {
        let w = &self.weights;
        let rope_of = |il: usize| &w.ropes[w.blocks[il].rope];
        match &mut self.exec {
            Exec::Cpu { cpu, act } => cpu.interruptible(batch.interrupt(), |cpu| {
                with_placement(cache, &w.kv_layout, batch, rope_of, |cache, placement| {
                    w.run((cpu, act), batch, cache, placement, out)
                })
            }),
            Exec::Gpu(pass) => {
                with_placement(cache, &w.kv_layout, batch, rope_of, |cache, placement| {
                    pass.run(w, batch, cache, placement, out)
                })
            }
        }
    }
}
