//! The decoder's weights on the GPU: matrices uploaded once in the file's blocks (the
//! kernels dequantize them), a mixture's experts as one stack per matrix, norm weights
//! and biases as f32.

use gguf::GgufFile;
use gpu::{Gpu, GpuBuffer, GpuMatrix};

use crate::model::ModelError;
use crate::model::decoder::{Block, DecoderWeights};
use crate::model::layers::GatedMlp;
use crate::model::moe::{FeedForward, Moe};
use crate::model::weights::Linear;

/// A matrix and its bias on the device.
pub(super) struct GpuLinear {
    pub(super) w: GpuMatrix,
    pub(super) bias: Option<GpuBuffer>,
}

impl GpuLinear {
    fn upload(gpu: &Gpu, file: &GgufFile, name: &str, l: &Linear) -> Result<Self, ModelError> {
        let (bytes, ty) = l.file_bytes(file)?;
        let w = gpu.upload_matrix(name, ty, l.rows(), l.cols(), bytes)?;
        gpu.settle()?;
        let bias = match l.bias() {
            Some(b) => Some(gpu.upload_f32(&format!("{name} bias"), b)?),
            None => None,
        };
        Ok(Self { w, bias })
    }

    /// Output features.
    pub(super) fn rows(&self) -> usize {
        self.w.rows()
    }
}

/// One block's weights on the device.
pub(super) struct GpuBlock {
    pub(super) attn_norm: GpuBuffer,
    pub(super) q: GpuLinear,
    pub(super) k: GpuLinear,
    pub(super) v: GpuLinear,
    pub(super) qk_norm: Option<(GpuBuffer, GpuBuffer)>,
    pub(super) wo: GpuLinear,
    pub(super) attn_post_norm: Option<GpuBuffer>,
    pub(super) ffn_norm: GpuBuffer,
    pub(super) ffn: GpuFfn,
    pub(super) ffn_post_norm: Option<GpuBuffer>,
}

/// A block's feed-forward network on the device.
pub(super) enum GpuFfn {
    /// One network for every token.
    Dense {
        gate: GpuLinear,
        up: GpuLinear,
        down: GpuLinear,
    },
    /// A mixture of experts.
    Experts(GpuExperts),
}

/// A mixture of experts on the device: the router, and each of gate, up and down as one
/// stack of every expert's matrix ([`Gpu::upload_experts`]).
pub(super) struct GpuExperts {
    pub(super) router: GpuLinear,
    pub(super) gate: GpuMatrix,
    pub(super) up: GpuMatrix,
    pub(super) down: GpuMatrix,
    /// Experts each token is routed to.
    pub(super) n_used: usize,
}

impl GpuExperts {
    fn upload(gpu: &Gpu, file: &GgufFile, il: usize, moe: &Moe) -> Result<Self, ModelError> {
        let experts = moe.experts();
        let stack = |part: &str, pick: fn(&GatedMlp) -> &Linear| {
            let first = experts
                .first()
                .map(pick)
                .ok_or(ModelError::NotOnGpu("mixtures without experts"))?;
            let (bytes, ty) = Linear::stacked_file_bytes(file, experts.iter().map(pick))?;
            let shape = (experts.len(), first.rows(), first.cols());
            let name = format!("blk.{il}.ffn_{part}_exps");
            let w = gpu.upload_experts(&name, ty, shape, bytes)?;
            gpu.settle()?;
            Ok::<_, ModelError>(w)
        };
        Ok(Self {
            router: GpuLinear::upload(gpu, file, &format!("blk.{il}.ffn_gate_inp"), moe.router())?,
            gate: stack("gate", |m| &m.gate)?,
            up: stack("up", |m| &m.up)?,
            down: stack("down", |m| &m.down)?,
            n_used: moe.n_used(),
        })
    }
}

fn vector(gpu: &Gpu, name: String, v: &[f32]) -> Result<GpuBuffer, ModelError> {
    let buffer = gpu.upload_f32(&name, v)?;
    gpu.settle()?;
    Ok(buffer)
}

fn optional(
    gpu: &Gpu,
    name: String,
    v: Option<&Vec<f32>>,
) -> Result<Option<GpuBuffer>, ModelError> {
    v.map(|v| vector(gpu, name, v)).transpose()
}

impl GpuBlock {
    fn upload(gpu: &Gpu, file: &GgufFile, il: usize, b: &Block) -> Result<Self, ModelError> {
        let name = |part: &str| format!("blk.{il}.{part}");
        let linear = |part: &str, l: &Linear| GpuLinear::upload(gpu, file, &name(part), l);
        let qk_norm = match &b.qk_norm {
            Some((q, k)) => Some((
                vector(gpu, name("attn_q_norm"), q)?,
                vector(gpu, name("attn_k_norm"), k)?,
            )),
            None => None,
        };
        Ok(Self {
            attn_norm: vector(gpu, name("attn_norm"), &b.attn_norm)?,
            q: linear("attn_q", &b.qkv.q)?,
            k: linear("attn_k", &b.qkv.k)?,
            v: linear("attn_v", &b.qkv.v)?,
            qk_norm,
            wo: linear("attn_output", &b.wo)?,
            attn_post_norm: optional(gpu, name("post_attention_norm"), b.attn_post_norm.as_ref())?,
            ffn_norm: vector(gpu, name("ffn_norm"), &b.ffn_norm)?,
            ffn: match &b.mlp {
                FeedForward::Dense(mlp) => GpuFfn::Dense {
                    gate: linear("ffn_gate", &mlp.gate)?,
                    up: linear("ffn_up", &mlp.up)?,
                    down: linear("ffn_down", &mlp.down)?,
                },
                FeedForward::Experts(moe) => {
                    GpuFfn::Experts(GpuExperts::upload(gpu, file, il, moe)?)
                }
            },
            ffn_post_norm: optional(gpu, name("post_ffw_norm"), b.ffn_post_norm.as_ref())?,
        })
    }
}

/// Every weight of a decoder on the device.
pub(super) struct GpuWeights {
    pub(super) embd: GpuMatrix,
    pub(super) blocks: Vec<GpuBlock>,
    pub(super) output_norm: GpuBuffer,
    /// The vocabulary projection, or `None` when it is the embedding table.
    pub(super) output: Option<GpuLinear>,
}

impl GpuWeights {
    /// Uploads the weights `w` describes.
    pub(super) fn upload(gpu: &Gpu, w: &DecoderWeights) -> Result<Self, ModelError> {
        let file = &*w.file;
        let (bytes, ty) = w.embd.file_bytes(file)?;
        let (n_vocab, n_embd) = (w.embd.n_vocab(), w.recipe.n_embd);
        let embd = gpu.upload_matrix("token_embd", ty, n_vocab, n_embd, bytes)?;
        // Settled after each upload (here and in `GpuLinear::upload` and `vector`): its
        // staging memory is freed before the next buffer is made, which takes its place
        // (see `Gpu::settle`), so the device memory reserved stays the buffers' own
        // packed in order, as the estimate's `device_bytes` packs them.
        gpu.settle()?;
        let blocks = (w.blocks.iter().enumerate())
            .map(|(il, b)| GpuBlock::upload(gpu, file, il, b))
            .collect::<Result<_, _>>()?;
        let output = if w.output.same_bytes(&w.embd) {
            None
        } else {
            Some(GpuLinear::upload(gpu, file, "output", &w.output)?)
        };
        let output_norm = vector(gpu, "output_norm".to_owned(), &w.output_norm)?;
        gpu.settle()?;
        Ok(Self {
            embd,
            blocks,
            output_norm,
            output,
        })
    }
}
