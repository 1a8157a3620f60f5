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
//! `llama_model_gemma3::load_arch_hparams`), so with the kernels'
//! llama.cpp arithmetic our logits are its, bit for bit.
//! References: Gemma Team, "Gemma 3 Technical Report" (2025); google/gemma_pytorch.

use std::sync::Arc;

use gguf::{GgufFile, MetadataArray, MetadataValue};
use kernels::ops::{
    Rope, RopeLayout, RopeParams, add_assign, geglu, rms_norm_in_place, scale_assign, softcap,
};

use super::activations::{ActivationDims, Activations};
use super::attention::{AttentionShape, attention};
use super::head::{OutputHead, norm_rows, with_placement};
use super::hparams::{attention_shape, widths};
use super::layers::GatedMlp;
use super::weights::{Cpu, Embedding, Linear, matmul_scratch_bytes, vector};
use super::{ArchPlan, Batch, LoadOptions, Logits, Model, ModelError};
use crate::kvcache::{KvCache, KvLayout};

/// llama.cpp's sliding-window pattern for Gemma 3 when the file names none: of every six
/// layers, the first five slide and the sixth is global.
const DEFAULT_SWA_PATTERN: u32 = 6;
/// llama.cpp's RoPE base for the sliding-window layers when the file names none.
const DEFAULT_FREQ_BASE_SWA: f32 = 10_000.0;
/// Gemma 3 27B is the one size whose query scale comes from `n_embd / n_head` rather
/// than the head size; llama.cpp recognises it by its layer count.
const LAYERS_27B: usize = 62;

/// The hyper-parameters the graph needs.
#[derive(Debug, Clone)]
struct HyperParams {
    n_embd: usize,
    n_ff: usize,
    eps: f32,
    /// Attention with `scale` 1: the queries are scaled beforehand, as in llama.cpp.
    attn: AttentionShape,
    /// The factor applied to the queries after RoPE (`f_attention_scale`).
    query_scale: f32,
    /// `attention.sliding_window`, `None` when absent or 0 (no layer slides).
    window: Option<usize>,
    /// `final_logit_softcapping`, `None` when absent or 0.
    softcap: Option<f32>,
    train_ctx: usize,
}

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

impl HyperParams {
    fn read(file: &GgufFile, n_layer: usize) -> Result<Self, ModelError> {
        let md = file.metadata();
        let (n_embd, n_ff) = widths(file)?;
        let attn = attention_shape(file, 1.0)?;
        let (n_head, head_dim_k, head_dim_v) = (attn.n_head, attn.head_dim_k, attn.head_dim_v);
        for (suffix, full) in [
            ("attention.key_length_swa", head_dim_k),
            ("attention.value_length_swa", head_dim_v),
        ] {
            if let Some(swa) = md.arch_get_opt::<u32>(suffix)?
                && swa as usize != full
            {
                return Err(ModelError::BadHyperParameter {
                    key: md.arch_key(suffix)?,
                    value: swa.to_string(),
                    why: "sliding-window layers with their own head size are not implemented",
                });
            }
        }
        let query_scale = if n_layer == LAYERS_27B {
            1.0 / ((n_embd / n_head) as f32).sqrt()
        } else {
            1.0 / (head_dim_k as f32).sqrt()
        };
        let softcap = md
            .arch_get_opt::<f32>("final_logit_softcapping")?
            .filter(|&c| c != 0.0);
        Ok(Self {
            n_embd,
            n_ff,
            eps: md.rms_norm_epsilon()?,
            attn,
            query_scale,
            window: md.sliding_window()?.filter(|&w| w > 0).map(|w| w as usize),
            softcap,
            train_ctx: md.context_length()? as usize,
        })
    }
}

/// Which layers use the sliding window, as llama.cpp's `load_swa_pattern(ml, 6)`:
/// `attention.sliding_window_pattern` as one flag per layer, or as a period `p` (layer
/// `il` slides when `il % p < p - 1`; 0 makes every layer slide), 6 when absent.
fn sliding_layers(file: &GgufFile, n_layer: usize) -> Result<Vec<bool>, ModelError> {
    let md = file.metadata();
    let key = md.arch_key("attention.sliding_window_pattern")?;
    let bad = |value: String, why| ModelError::BadHyperParameter {
        key: key.clone(),
        value,
        why,
    };
    let flags: Vec<bool> = match md.get(&key) {
        None => return Ok(period_pattern(DEFAULT_SWA_PATTERN, n_layer)),
        Some(MetadataValue::Array(array)) => match array {
            MetadataArray::Bool(v) => v.clone(),
            MetadataArray::U32(v) => v.iter().map(|&f| f != 0).collect(),
            MetadataArray::I32(v) => v.iter().map(|&f| f != 0).collect(),
            _ => {
                let what = format!("an array of {:?}", array.element_type());
                return Err(bad(what, "must be flags or a period"));
            }
        },
        Some(_) => return Ok(period_pattern(md.get_u32(&key)?, n_layer)),
    };
    if flags.len() != n_layer {
        return Err(bad(
            format!("{} flags", flags.len()),
            "must hold one flag per layer",
        ));
    }
    Ok(flags)
}

/// llama.cpp's `set_swa_pattern(period, dense_first = false)`.
fn period_pattern(period: u32, n_layer: usize) -> Vec<bool> {
    let p = period as usize;
    (0..n_layer).map(|il| p == 0 || il % p < p - 1).collect()
}

/// The two rotary embeddings, NeoX layout over `rope.dimension_count` dimensions (the
/// whole head by default): the sliding-window layers' with base `rope.freq_base_swa`
/// and no scaling, and the global layers' with base `rope.freq_base` and linear scaling
/// by `rope.scaling.factor`. `rope.scaling.attn_factor` scales both, as in llama.cpp.
fn read_ropes(file: &GgufFile, head_dim: usize) -> Result<(Rope, Rope), ModelError> {
    let md = file.metadata();
    let n_rot = match md.rope_dimension_count()? {
        Some(n) => n as usize,
        None => head_dim,
    };
    let n_rot_swa = match md.arch_get_opt::<u32>("rope.dimension_count_swa")? {
        Some(n) => n as usize,
        None => n_rot,
    };
    match md.arch_get_opt::<&str>("rope.scaling.type")? {
        None | Some("none") | Some("linear") => {}
        Some(other) => {
            return Err(ModelError::BadHyperParameter {
                key: md.arch_key("rope.scaling.type")?,
                value: other.to_owned(),
                why: "only linear RoPE scaling is implemented",
            });
        }
    }
    let attn_factor = md
        .arch_get_opt::<f32>("rope.scaling.attn_factor")?
        .unwrap_or(1.0);
    let mut global = RopeParams::new(md.rope_freq_base()?);
    global.attn_factor = attn_factor;
    if let Some(factor) = md.arch_get_opt::<f32>("rope.scaling.factor")?
        && factor != 0.0
    {
        global.freq_scale = 1.0 / factor;
    }
    let base_swa = md
        .arch_get_opt::<f32>("rope.freq_base_swa")?
        .unwrap_or(DEFAULT_FREQ_BASE_SWA);
    let mut local = RopeParams::new(base_swa);
    local.attn_factor = attn_factor;
    Ok((
        Rope::new(n_rot_swa, head_dim, RopeLayout::NeoX, local, None)?,
        Rope::new(n_rot, head_dim, RopeLayout::NeoX, global, None)?,
    ))
}

impl Gemma3 {
    /// Reads the hyper-parameters and finds every tensor; the weights stay in `file`.
    pub fn load(file: Arc<GgufFile>, options: &LoadOptions) -> Result<Self, ModelError> {
        let n_layer = file.metadata().block_count()? as usize;
        let hp = HyperParams::read(&file, n_layer)?;
        let sliding = sliding_layers(&file, n_layer)?;
        let (n_embd, a) = (hp.n_embd, hp.attn);
        let embd = Embedding::load(&file, "token_embd.weight", n_embd)?;
        let mut layers = Vec::with_capacity(n_layer);
        for (i, &sliding) in sliding.iter().enumerate() {
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
        let (rope_local, rope_global) = read_ropes(&file, a.head_dim_k)?;
        let plan = Self::plan(&file)?;
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

    /// The buffer widths and cache layout `file` implies, read from its metadata only.
    pub fn plan(file: &GgufFile) -> Result<ArchPlan, ModelError> {
        let n_layer = file.metadata().block_count()? as usize;
        let hp = HyperParams::read(file, n_layer)?;
        let sliding = sliding_layers(file, n_layer)?;
        let (local, global) = read_ropes(file, hp.attn.head_dim_k)?;
        let a = hp.attn;
        Ok(ArchPlan {
            dims: ActivationDims {
                n_embd: hp.n_embd,
                n_ff: hp.n_ff,
                attn: a,
                n_rot: vec![local.n_dims(), global.n_dims()],
            },
            kv: KvLayout {
                k_dim: a.k_dim(),
                v_dim: a.v_dim(),
                head_dim_k: a.head_dim_k,
                head_dim_v: a.head_dim_v,
                windows: sliding
                    .iter()
                    .map(|&s| if s { hp.window } else { None })
                    .collect(),
            },
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

/// `x[t] = rms_norm(x[t]) * weight` for every row (a token, or one head of a token).
fn norm_rows_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(weight.len()) {
        rms_norm_in_place(row, Some(weight), eps);
    }
}

/// RoPE on every head of every token of `x` (`dim` values per token).
fn rotate(rope: &Rope, cos_sin: &[f32], x: &mut [f32], dim: usize) {
    let n_rot = rope.n_dims();
    for (row, cs) in x.chunks_exact_mut(dim).zip(cos_sin.chunks_exact(n_rot)) {
        rope.rotate_heads(row, cs);
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

                for (il, layer) in self.layers.iter().enumerate() {
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
                    norm_rows_in_place(&mut s.proj, &layer.attn_post_norm, hp.eps);
                    add_assign(&mut s.x, &s.proj);

                    norm_rows(&s.x, &layer.ffn_norm, hp.eps, &mut s.xn);
                    layer
                        .mlp
                        .forward(cpu, file, geglu, &s.xn, n, &mut s.mlp, &mut s.proj)?;
                    norm_rows_in_place(&mut s.proj, &layer.ffn_post_norm, hp.eps);
                    add_assign(&mut s.x, &s.proj);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sixth_layer_is_global_by_default() {
        let pattern = period_pattern(DEFAULT_SWA_PATTERN, 18);
        let global: Vec<usize> = (0..18).filter(|&il| !pattern[il]).collect();
        assert_eq!(global, vec![5, 11, 17]);
        assert!(period_pattern(0, 4).iter().all(|&s| s));
        assert_eq!(period_pattern(1, 3), vec![false; 3]);
    }
}
