//! Qwen 2 and Qwen 2.5 (`general.architecture = qwen2`).
//!
//! Llama's block with biases on the Q, K and V projections and RoPE in the NeoX layout
//! (the two halves of each head rotate together). Per token: embedding lookup; per
//! layer, RMSNorm → Q/K/V projections plus their biases → RoPE on Q and K → causal
//! grouped-query attention scaled by `1/sqrt(head_dim)` → output projection → residual
//! add → RMSNorm → SwiGLU feed-forward → residual add; then the final RMSNorm and the
//! output head (`output.weight` and its bias when the file has them, else the embedding
//! table). A batch that asks for embeddings gets the rows after the final RMSNorm.
//!
//! The order of operations is llama.cpp's (`src/models/qwen2.cpp`), so with the kernels'
//! llama.cpp arithmetic our logits are its. The hyper-parameters are read by
//! `plan::arch::qwen`, which the supervisor's estimate shares.
//! References: Qwen Team, "Qwen2 Technical Report" (2024), "Qwen2.5 Technical Report"
//! (2024).

use std::sync::Arc;

use gguf::GgufFile;
use kernels::ops::{Rope, RopeLayout, add_assign, swiglu};
use plan::arch::qwen::HyperParams;
use plan::compute::matmul_scratch_bytes;

use super::activations::Activations;
use super::attention::attention;
use super::head::{OutputHead, keep_output_rows, norm_rows, with_placement};
use super::hparams::rope;
use super::layers::{GatedMlp, rotate};
use super::weights::{Cpu, Embedding, Linear, vector};
use super::{Batch, LoadOptions, Logits, Model, ModelError};
use crate::kvcache::{KvCache, KvLayout};

/// One transformer block's weights.
struct Layer {
    attn_norm: Vec<f32>,
    /// The Q, K and V projections, each with its bias (`attn_{q,k,v}.bias`).
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: Vec<f32>,
    mlp: GatedMlp,
}

/// A loaded Qwen 2 model.
pub struct Qwen2 {
    file: Arc<GgufFile>,
    hp: HyperParams,
    embd: Embedding,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Linear,
    rope: Rope,
    cpu: Cpu,
    act: Activations,
    kv_layout: KvLayout,
}

impl Qwen2 {
    /// Reads the hyper-parameters and finds every tensor; the weights stay in `file`.
    pub fn load(file: Arc<GgufFile>, options: &LoadOptions) -> Result<Self, ModelError> {
        let hp = HyperParams::read(&file)?;
        let (n_embd, a) = (hp.n_embd, hp.attn);
        let embd = Embedding::load(&file, "token_embd.weight", n_embd)?;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let p = format!("blk.{i}");
            layers.push(Layer {
                attn_norm: vector(&file, &format!("{p}.attn_norm.weight"), n_embd)?,
                wq: Linear::load(&file, &format!("{p}.attn_q"), n_embd, a.q_dim())?,
                wk: Linear::load(&file, &format!("{p}.attn_k"), n_embd, a.k_dim())?,
                wv: Linear::load(&file, &format!("{p}.attn_v"), n_embd, a.v_dim())?,
                wo: Linear::load(&file, &format!("{p}.attn_output"), a.out_dim(), n_embd)?,
                ffn_norm: vector(&file, &format!("{p}.ffn_norm.weight"), n_embd)?,
                mlp: GatedMlp::load(&file, &format!("{p}.ffn"), n_embd, hp.n_ff)?,
            });
        }
        let output_norm = vector(&file, "output_norm.weight", n_embd)?;
        let output = match file.tensor("output.weight") {
            Some(_) => Linear::load(&file, "output", n_embd, embd.n_vocab())?,
            None => embd.as_linear()?,
        };
        let rope = rope(&hp.rope, a.head_dim_k, RopeLayout::NeoX, None)?;
        let plan = hp.plan();
        let compute = options.compute();
        Ok(Self {
            hp,
            embd,
            layers,
            output_norm,
            output,
            rope,
            cpu: Cpu::new(
                options.threads,
                matmul_scratch_bytes(&file, compute.num_batch),
            )?,
            act: Activations::new(&plan.dims, &compute),
            kv_layout: plan.kv,
            file,
        })
    }

    /// [`Qwen2::load`], boxed for the architecture table.
    pub fn load_boxed(
        file: Arc<GgufFile>,
        options: &LoadOptions,
    ) -> Result<Box<dyn Model>, ModelError> {
        Ok(Box::new(Self::load(file, options)?))
    }
}

impl Model for Qwen2 {
    fn architecture(&self) -> &'static str {
        "qwen2"
    }

    fn n_vocab(&self) -> usize {
        self.embd.n_vocab()
    }

    fn n_embd(&self) -> usize {
        self.hp.n_embd
    }

    fn train_ctx(&self) -> usize {
        self.hp.train_ctx
    }

    fn kv_layout(&self) -> KvLayout {
        self.kv_layout.clone()
    }

    fn scratch_bytes(&self) -> usize {
        self.act.bytes() + self.cpu.scratch_bytes()
    }

    fn forward(
        &mut self,
        batch: &Batch,
        cache: &mut KvCache,
        out: &mut Logits,
    ) -> Result<(), ModelError> {
        let rope = &self.rope;
        with_placement(
            cache,
            &self.kv_layout,
            batch,
            |_| rope,
            |cache, placement| {
                let n = batch.len();
                let (hp, file, s, cpu) = (&self.hp, &*self.file, &mut self.act, &mut self.cpu);
                let (d, a) = (hp.n_embd, &hp.attn);
                s.resize(n);

                for (&token, row) in batch.tokens().iter().zip(s.x.chunks_exact_mut(d)) {
                    self.embd.lookup(file, token, row)?;
                }
                rope.cos_sin_batch(batch.positions(), &mut s.cos_sin[0]);

                let n_layer = self.layers.len();
                for (il, layer) in self.layers.iter().enumerate() {
                    if batch.interrupted() {
                        return Err(ModelError::Interrupted);
                    }
                    norm_rows(&s.x, &layer.attn_norm, hp.eps, &mut s.xn);
                    layer.wq.forward(cpu, file, &s.xn, n, &mut s.q)?;
                    layer.wk.forward(cpu, file, &s.xn, n, &mut s.k)?;
                    layer.wv.forward(cpu, file, &s.xn, n, &mut s.v)?;
                    rotate(rope, &s.cos_sin[0], &mut s.q, a.q_dim());
                    rotate(rope, &s.cos_sin[0], &mut s.k, a.k_dim());
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
                    layer.wo.forward(cpu, file, &s.attn, n, &mut s.proj)?;
                    // The last layer goes on with the rows that give output only.
                    let n = if il + 1 == n_layer {
                        keep_output_rows(batch, d, &mut s.x, &mut s.proj)
                    } else {
                        n
                    };
                    let rows = n * d;
                    add_assign(&mut s.x[..rows], &s.proj[..rows]);

                    norm_rows(&s.x[..rows], &layer.ffn_norm, hp.eps, &mut s.xn[..rows]);
                    layer.mlp.forward(
                        cpu,
                        file,
                        swiglu,
                        &s.xn[..rows],
                        n,
                        &mut s.mlp,
                        &mut s.proj[..rows],
                    )?;
                    add_assign(&mut s.x[..rows], &s.proj[..rows]);
                }

                let head = OutputHead {
                    norm: &self.output_norm,
                    eps: hp.eps,
                    output: &self.output,
                };
                head.run(cpu, file, batch, &s.x, &mut s.xn, out)?;
                Ok(())
            },
        )
    }
}
