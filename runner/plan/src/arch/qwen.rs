//! The hyper-parameters Qwen 2 and Qwen 3 share (`general.architecture = qwen2`, `qwen3`),
//! as llama.cpp's `llama_model::load_hparams` and `llama_model_qwen{2,3}` read them.
//!
//! Both scale `q·k` by `1/sqrt(head_dim)` whatever the file says, rotate the whole head
//! (llama.cpp asserts `rope.dimension_count` equals the head size, and the key and value
//! heads the same size), and have no sliding window. Qwen 3's query width
//! (`head_count × key_length`) may differ from the hidden size; Qwen 2's is the hidden size.

use gguf::GgufFile;

use super::hparams::{equal_heads, layers, rope, widths};
use super::{ArchPlan, RopeSpec};
use crate::PlanError;
use crate::compute::AttentionShape;

/// The hyper-parameters the graph needs.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperParams {
    /// Layers.
    pub n_layer: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Feed-forward hidden size.
    pub n_ff: usize,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// Attention heads, with `1/sqrt(head_dim)` on `q·k`.
    pub attn: AttentionShape,
    /// The context length the model was trained for.
    pub train_ctx: usize,
    /// The rotary embedding (NeoX layout), over the whole head.
    pub rope: RopeSpec,
}

impl HyperParams {
    /// Reads them from `file`'s metadata, naming the key of a missing or bad one.
    pub fn read(file: &GgufFile) -> Result<Self, PlanError> {
        let md = file.metadata();
        let (n_embd, n_ff) = widths(file)?;
        let probe = equal_heads(file, 1.0)?;
        let head_dim = probe.head_dim_k;
        let attn = AttentionShape {
            scale: 1.0 / (head_dim as f32).sqrt(),
            ..probe
        };
        let rope = rope(file, head_dim)?;
        if rope.n_rot != head_dim {
            return Err(PlanError::BadHyperParameter {
                key: md.arch_key("rope.dimension_count")?,
                value: rope.n_rot.to_string(),
                why: "must equal the head size (the whole head is rotated)",
            });
        }
        Ok(Self {
            n_layer: layers(file)?,
            n_embd,
            n_ff,
            eps: md.rms_norm_epsilon()?,
            attn,
            train_ctx: md.context_length()? as usize,
            rope,
        })
    }

    /// The buffer widths and cache layout these imply.
    pub fn plan(&self) -> ArchPlan {
        ArchPlan::dense(
            self.n_layer,
            self.n_embd,
            self.n_ff,
            self.attn,
            self.rope.n_rot,
        )
    }
}

/// The plan of a qwen2 or qwen3 file, from its metadata only.
pub fn plan(file: &GgufFile) -> Result<ArchPlan, PlanError> {
    Ok(HyperParams::read(file)?.plan())
}

#[cfg(test)]
mod tests {
    use gguf::GgufWriter;

    use super::*;

    /// A qwen3 header: 256 wide, 16 query heads over 8 K/V heads of 64 (a query width of
    /// 1024, four times the hidden size), with `extra` keys set last.
    fn qwen3(extra: &[(&str, u32)]) -> GgufFile {
        let mut w = GgufWriter::new();
        w.set("general.architecture", "qwen3")
            .set("qwen3.block_count", 3u32)
            .set("qwen3.context_length", 40960u32)
            .set("qwen3.embedding_length", 256u32)
            .set("qwen3.feed_forward_length", 768u32)
            .set("qwen3.attention.head_count", 16u32)
            .set("qwen3.attention.head_count_kv", 8u32)
            .set("qwen3.attention.key_length", 64u32)
            .set("qwen3.attention.value_length", 64u32)
            .set("qwen3.rope.freq_base", 1e6f32)
            .set("qwen3.attention.layer_norm_rms_epsilon", 1e-6f32);
        for &(key, value) in extra {
            w.set(key, value);
        }
        GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()
    }

    #[test]
    fn heads_wider_than_the_hidden_size_are_planned() {
        let hp = HyperParams::read(&qwen3(&[])).unwrap();
        assert_eq!((hp.n_layer, hp.n_embd, hp.n_ff), (3, 256, 768));
        assert_eq!(
            (hp.attn.q_dim(), hp.attn.k_dim(), hp.attn.out_dim()),
            (1024, 512, 1024)
        );
        assert_eq!(hp.attn.scale, 0.125);
        assert_eq!((hp.rope.n_rot, hp.rope.freq_base), (64, 1e6));
        let plan = hp.plan();
        assert_eq!((plan.kv.k_dim, plan.kv.v_dim), (512, 512));
        assert_eq!(plan.kv.windows, vec![None; 3]);
        assert_eq!(crate::arch::plan(&qwen3(&[])).unwrap(), plan);
    }

    #[test]
    fn partial_rotary_and_uneven_heads_are_refused_by_name() {
        let err = HyperParams::read(&qwen3(&[("qwen3.rope.dimension_count", 32)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metadata key 'qwen3.rope.dimension_count' is 32: must equal the head size \
             (the whole head is rotated)"
        );
        let err = HyperParams::read(&qwen3(&[("qwen3.attention.value_length", 32)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metadata key 'qwen3.attention.value_length' is 32: must equal attention.key_length"
        );
    }
}
