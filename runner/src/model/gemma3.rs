//! Gemma 3 (the text model; `general.architecture = gemma3`).
//!
//! Per token: embedding lookup scaled by `sqrt(n_embd)`; per layer, RMSNorm → Q/K/V
//! projections → RMSNorm of each Q and K head → RoPE (NeoX layout) on Q and K → Q scaled
//! by the attention scale → grouped-query attention (causal, and limited to the last
//! `attention.sliding_window` positions on the sliding-window layers) → output projection
//! → RMSNorm → residual add → RMSNorm → GeGLU feed-forward (tanh GELU) → RMSNorm →
//! residual add; then the final RMSNorm, the output head (the embedding table unless the
//! file has `output.weight`) and, when the file asks for it, logit soft-capping. A batch
//! that asks for embeddings gets the rows after the final RMSNorm (no soft-capping).
//!
//! Five layers of six use a sliding window and RoPE base `rope.freq_base_swa` (10,000 by
//! default, unscaled); every sixth layer is global, with `rope.freq_base` and the file's
//! linear RoPE scaling. Gemma's RMSNorm multiplies by `1 + w`; llama.cpp's converter
//! stores `1 + w` in the GGUF, so the norm weights are used as stored.
//!
//! The order of operations is llama.cpp's (`src/models/gemma3.cpp`, hyper-parameters in
//! `llama_model_gemma3::load_arch_hparams`, which `plan::arch::gemma3` reads as it
//! does), so with the kernels' llama.cpp arithmetic our logits are its, bit for bit.
//! References: Gemma Team, "Gemma 3 Technical Report" (2025); google/gemma_pytorch.

use std::sync::Arc;

use gguf::GgufFile;
use kernels::ops::{Rope, RopeLayout, add_assign, geglu, scale_assign, softcap};
use plan::arch::gemma3::HyperParams;
use plan::compute::matmul_scratch_bytes;

use super::activations::Activations;
use super::attention::attention;
use super::head::{OutputHead, keep_output_rows, norm_rows, with_placement};
use super::hparams::rope;
use super::layers::{GatedMlp, norm_rows_in_place, rotate};
use super::weights::{Cpu, Embedding, Linear, vector};
use super::{Batch, LoadOptions, Logits, Model, ModelError};
use crate::kvcache::{KvCache, KvLayout};

/// One transformer block's weights.
struct Layer {
    attn_norm: Vec<f32>,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    wo: Linear,
    attn_post_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    mlp: GatedMlp,
    ffn_post_norm: Vec<f32>,
    /// A sliding-window layer (local RoPE base, windowed attention).
    sliding: bool,
}

/// A loaded Gemma 3 model.
pub struct Gemma3 {
    file: Arc<GgufFile>,
    hp: HyperParams,
    embd: Embedding,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Linear,
    /// RoPE of the sliding-window layers.
    rope_local: Rope,
    /// RoPE of the global layers.
    rope_global: Rope,
    cpu: Cpu,
    act: Activations,
    kv_layout: KvLayout,
}

/// The two rotary embeddings (NeoX layout): the sliding-window layers' and the global
/// layers'.
fn read_ropes(hp: &HyperParams) -> Result<(Rope, Rope), ModelError> {
    let head_dim = hp.attn.head_dim_k;
    Ok((
        rope(&hp.rope_local, head_dim, RopeLayout::NeoX, None)?,
        rope(&hp.rope_global, head_dim, RopeLayout::NeoX, None)?,
    ))
}

impl Gemma3 {
    /// Reads the hyper-parameters and finds every tensor; the weights stay in `file`.
    pub fn load(file: Arc<GgufFile>, options: &LoadOptions) -> Result<Self, ModelError> {
        let hp = HyperParams::read(&file)?;
        let (n_embd, a) = (hp.n_embd, hp.attn);
        let embd = Embedding::load(&file, "token_embd.weight", n_embd)?;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for (i, &sliding) in hp.sliding.iter().enumerate() {
            let p = format!("blk.{i}");
            let norm = |name: &str, len| vector(&file, &format!("{p}.{name}.weight"), len);
            layers.push(Layer {
                attn_norm: norm("attn_norm", n_embd)?,
                wq: Linear::load(&file, &format!("{p}.attn_q"), n_embd, a.q_dim())?,
                wk: Linear::load(&file, &format!("{p}.attn_k"), n_embd, a.k_dim())?,
                wv: Linear::load(&file, &format!("{p}.attn_v"), n_embd, a.v_dim())?,
                q_norm: norm("attn_q_norm", a.head_dim_k)?,
                k_norm: norm("attn_k_norm", a.head_dim_k)?,
                wo: Linear::load(&file, &format!("{p}.attn_output"), a.out_dim(), n_embd)?,
                attn_post_norm: norm("post_attention_norm", n_embd)?,
                ffn_norm: norm("ffn_norm", n_embd)?,
                mlp: GatedMlp::load(&file, &format!("{p}.ffn"), n_embd, hp.n_ff)?,
                ffn_post_norm: norm("post_ffw_norm", n_embd)?,
                sliding: sliding && hp.window.is_some(),
            });
        }
        let output_norm = vector(&file, "output_norm.weight", n_embd)?;
        let output = match file.tensor("output.weight") {
            Some(_) => Linear::load_weight(&file, "output.weight", n_embd, embd.n_vocab())?,
            None => embd.as_linear()?,
        };
        let (rope_local, rope_global) = read_ropes(&hp)?;
        let plan = hp.plan();
        let compute = options.compute();
        Ok(Self {
            hp,
            embd,
            layers,
            output_norm,
            output,
            rope_local,
            rope_global,
            cpu: Cpu::new(
                options.threads,
                matmul_scratch_bytes(&file, compute.num_batch),
            )?,
            act: Activations::new(&plan.dims, &compute),
            kv_layout: plan.kv,
            file,
        })
    }

    /// [`Gemma3::load`], boxed for the architecture table.
    pub fn load_boxed(
        file: Arc<GgufFile>,
        options: &LoadOptions,
    ) -> Result<Box<dyn Model>, ModelError> {
        Ok(Box::new(Self::load(file, options)?))
    }
}

impl Model for Gemma3 {
    fn architecture(&self) -> &'static str {
        "gemma3"
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
        let (layers, local, global) = (&self.layers, &self.rope_local, &self.rope_global);
        let rope_of = |il: usize| if layers[il].sliding { local } else { global };
        with_placement(
            cache,
            &self.kv_layout,
            batch,
            rope_of,
            |cache, placement| {
                let n = batch.len();
                let (hp, file, s, cpu) = (&self.hp, &*self.file, &mut self.act, &mut self.cpu);
                let (d, a) = (hp.n_embd, &hp.attn);
                let (local, global) = (&self.rope_local, &self.rope_global);
                s.resize(n);

                for (&token, row) in batch.tokens().iter().zip(s.x.chunks_exact_mut(d)) {
                    self.embd.lookup(file, token, row)?;
                }
                scale_assign(&mut s.x, (d as f32).sqrt());
                local.cos_sin_batch(batch.positions(), &mut s.cos_sin[0]);
                global.cos_sin_batch(batch.positions(), &mut s.cos_sin[1]);

                let n_layer = self.layers.len();
                for (il, layer) in self.layers.iter().enumerate() {
                    if batch.interrupted() {
                        return Err(ModelError::Interrupted);
                    }
                    norm_rows(&s.x, &layer.attn_norm, hp.eps, &mut s.xn);
                    layer.wq.forward(cpu, file, &s.xn, n, &mut s.q)?;
                    layer.wk.forward(cpu, file, &s.xn, n, &mut s.k)?;
                    layer.wv.forward(cpu, file, &s.xn, n, &mut s.v)?;
                    let (rope, cos_sin) = if layer.sliding {
                        (local, &s.cos_sin[0])
                    } else {
                        (global, &s.cos_sin[1])
                    };
                    norm_rows_in_place(&mut s.q, &layer.q_norm, hp.eps);
                    rotate(rope, cos_sin, &mut s.q, a.q_dim());
                    norm_rows_in_place(&mut s.k, &layer.k_norm, hp.eps);
                    rotate(rope, cos_sin, &mut s.k, a.k_dim());
                    scale_assign(&mut s.q, hp.query_scale);
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
                    norm_rows_in_place(&mut s.proj[..rows], &layer.attn_post_norm, hp.eps);
                    add_assign(&mut s.x[..rows], &s.proj[..rows]);

                    norm_rows(&s.x[..rows], &layer.ffn_norm, hp.eps, &mut s.xn[..rows]);
                    layer.mlp.forward(
                        cpu,
                        file,
                        geglu,
                        &s.xn[..rows],
                        n,
                        &mut s.mlp,
                        &mut s.proj[..rows],
                    )?;
                    norm_rows_in_place(&mut s.proj[..rows], &layer.ffn_post_norm, hp.eps);
                    add_assign(&mut s.x[..rows], &s.proj[..rows]);
                }

                let head = OutputHead {
                    norm: &self.output_norm,
                    eps: hp.eps,
                    output: &self.output,
                };
                let logits = head.run(cpu, file, batch, &s.x, &mut s.xn, out)?;
                if let (Some(logits), Some(cap)) = (logits, hp.softcap) {
                    softcap(logits, cap);
                }
                Ok(())
            },
        )
    }
}
