//! The hyper-parameters of BERT encoders (`general.architecture = bert`, and
//! `nomic-bert`: nomic-embed-text), as llama.cpp's converter writes them:
//! `{arch}.{block_count, embedding_length, feed_forward_length, context_length,
//! attention.head_count, attention.layer_norm_epsilon}`, and for nomic-bert the rotary
//! embedding that replaces BERT's position table (`rope.freq_base`; the whole head unless
//! `rope.dimension_count` says otherwise, NeoX layout, as llama.cpp's `llama_model_bert`
//! graph applies it).
//!
//! An encoder attends within the batch only: every token of a sequence sees every other,
//! so a sequence is evaluated whole, in one pass, and nothing is kept between passes.
//! The plan therefore gives the K/V cache no layers (it holds only cell metadata), and
//! the activations are sized for the batch as for any model.

use gguf::GgufFile;

use super::hparams::{layers, positive, rope, widths};
use super::{ArchPlan, RopeSpec};
use crate::PlanError;
use crate::compute::{ActivationDims, AttentionShape};
use crate::kv::KvLayout;

/// The hyper-parameters the encoder needs.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperParams {
    /// Layers.
    pub n_layer: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Feed-forward hidden size.
    pub n_ff: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// Attention heads (as many key/value heads), `1/sqrt(head_dim)` on `q·k`.
    pub attn: AttentionShape,
    /// Positions the position-embedding table holds (nomic-bert: the context it was
    /// trained for): the longest input.
    pub train_ctx: usize,
    /// nomic-bert's rotary embedding of queries and keys; `None` for BERT, which adds
    /// absolute position embeddings instead.
    pub rope: Option<RopeSpec>,
}

impl HyperParams {
    /// Reads them from `file`'s metadata, naming the key of a missing or bad one.
    pub fn read(file: &GgufFile) -> Result<Self, PlanError> {
        let md = file.metadata();
        let (n_embd, n_ff) = widths(file)?;
        let n_head = positive(md.arch_key("attention.head_count")?, md.head_count()?)?;
        if !n_embd.is_multiple_of(n_head) {
            return Err(PlanError::BadHyperParameter {
                key: md.arch_key("attention.head_count")?,
                value: n_head.to_string(),
                why: "must divide embedding_length",
            });
        }
        let head_dim = n_embd / n_head;
        if md.arch_get_opt::<bool>("attention.causal")? == Some(true) {
            return Err(PlanError::BadHyperParameter {
                key: md.arch_key("attention.causal")?,
                value: "true".into(),
                why: "a bert encoder attends both ways",
            });
        }
        let rope = match md.architecture()? {
            "nomic-bert" => Some(rope(file, head_dim)?),
            _ => None,
        };
        Ok(Self {
            n_layer: layers(file)?,
            n_embd,
            n_ff,
            eps: md.arch_f32("attention.layer_norm_epsilon")?,
            attn: AttentionShape {
                n_head,
                n_head_kv: n_head,
                head_dim_k: head_dim,
                head_dim_v: head_dim,
                scale: 1.0 / (head_dim as f32).sqrt(),
                softcap: None,
            },
            train_ctx: positive(md.arch_key("context_length")?, md.context_length()?)?,
            rope,
        })
    }

    /// The buffer widths and the (empty) cache layout.
    pub fn plan(&self) -> ArchPlan {
        let a = self.attn;
        ArchPlan {
            dims: ActivationDims {
                n_embd: self.n_embd,
                n_ff: self.n_ff,
                attn: a,
                n_rot: self.rope.iter().map(|r| r.n_rot).collect(),
                moe: None,
            },
            kv: KvLayout {
                k_dim: a.k_dim(),
                v_dim: a.v_dim(),
                head_dim_k: a.head_dim_k,
                head_dim_v: a.head_dim_v,
                windows: Vec::new(),
            },
        }
    }
}

/// The plan of a bert file, from its metadata only.
pub fn plan(file: &GgufFile) -> Result<ArchPlan, PlanError> {
    Ok(HyperParams::read(file)?.plan())
}

#[cfg(test)]
mod tests {
    use gguf::GgufWriter;

    use super::*;

    fn bert(extra: &[(&str, bool)]) -> GgufFile {
        let mut w = GgufWriter::new();
        w.set("general.architecture", "bert")
            .set("bert.block_count", 6u32)
            .set("bert.context_length", 512u32)
            .set("bert.embedding_length", 384u32)
            .set("bert.feed_forward_length", 1536u32)
            .set("bert.attention.head_count", 12u32)
            .set("bert.attention.layer_norm_epsilon", 1e-12f32);
        for &(key, value) in extra {
            w.set(key, value);
        }
        GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()
    }

    #[test]
    fn minilm_shape_is_planned_without_cache_layers() {
        let hp = HyperParams::read(&bert(&[])).unwrap();
        assert_eq!(
            (hp.n_layer, hp.n_embd, hp.n_ff, hp.train_ctx),
            (6, 384, 1536, 512)
        );
        assert_eq!((hp.attn.n_head, hp.attn.head_dim_k), (12, 32));
        assert_eq!(hp.eps, 1e-12);
        let plan = crate::arch::plan(&bert(&[])).unwrap();
        assert!(plan.kv.windows.is_empty());
        assert_eq!(plan, hp.plan());
    }

    #[test]
    fn nomic_bert_rotates_the_whole_head_at_its_base() {
        let mut w = GgufWriter::new();
        w.set("general.architecture", "nomic-bert")
            .set("nomic-bert.block_count", 12u32)
            .set("nomic-bert.context_length", 2048u32)
            .set("nomic-bert.embedding_length", 768u32)
            .set("nomic-bert.feed_forward_length", 3072u32)
            .set("nomic-bert.attention.head_count", 12u32)
            .set("nomic-bert.attention.layer_norm_epsilon", 1e-12f32)
            .set("nomic-bert.rope.freq_base", 1000f32);
        let file = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
        let hp = HyperParams::read(&file).unwrap();
        assert_eq!(hp.rope, Some(RopeSpec::new(64, 1000.0)));
        assert_eq!(hp.train_ctx, 2048);
        assert_eq!(crate::arch::plan(&file).unwrap().dims.n_rot, vec![64]);
        assert_eq!(HyperParams::read(&bert(&[])).unwrap().rope, None);
    }

    #[test]
    fn a_causal_bert_is_refused_by_name() {
        let err = HyperParams::read(&bert(&[("bert.attention.causal", true)])).unwrap_err();
        assert!(err.to_string().contains("bert.attention.causal"), "{err}");
    }
}
