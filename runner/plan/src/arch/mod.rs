//! The architectures' hyper-parameters, read from a GGUF file's metadata into plain
//! data, and the memory plan they imply ([`ArchPlan`]: buffer widths and K/V layout).
//!
//! One file per architecture, registered by `general.architecture` in [`plan`]'s table.
//! The runner's model files read their hyper-parameters here and build the graph from
//! them; the estimate uses the plan alone.

pub mod bert;
pub mod gemma;
mod hparams;
pub mod llama;
pub mod phi3;
pub mod qwen;
pub mod qwen3moe;

use gguf::GgufFile;

use crate::PlanError;
use crate::compute::{ActivationDims, AttentionShape};
use crate::kv::KvLayout;

/// What a model's metadata says about its memory: the widths of its buffers and the
/// layout of its K/V cache. Loading uses it to allocate, the estimate to predict.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchPlan {
    /// Per-token buffer widths.
    pub dims: ActivationDims,
    /// The K/V cache layout.
    pub kv: KvLayout,
}

impl ArchPlan {
    /// The plan of a decoder whose layers share one width (`n_embd` hidden, `n_ff` in the
    /// feed-forward network) and one head layout `attn`, with one cos/sin table per
    /// rotary embedding of `n_rot` values, and layer `il` attending within `windows[il]`
    /// positions (`None`: the whole context).
    pub fn decoder(
        n_embd: usize,
        n_ff: usize,
        attn: AttentionShape,
        n_rot: Vec<usize>,
        windows: Vec<Option<usize>>,
    ) -> Self {
        Self {
            dims: ActivationDims {
                n_embd,
                n_ff,
                attn,
                n_rot,
                moe: None,
            },
            kv: KvLayout {
                k_dim: attn.k_dim(),
                v_dim: attn.v_dim(),
                head_dim_k: attn.head_dim_k,
                head_dim_v: attn.head_dim_v,
                windows,
            },
        }
    }

    /// The plan of a decoder of `n_layer` layers with one RoPE of `n_rot` values and no
    /// sliding window (llama, Qwen, Phi-3).
    pub fn dense(
        n_layer: usize,
        n_embd: usize,
        n_ff: usize,
        attn: AttentionShape,
        n_rot: usize,
    ) -> Self {
        Self::decoder(n_embd, n_ff, attn, vec![n_rot], vec![None; n_layer])
    }
}

/// A rotary embedding as the metadata describes it (the runner builds the kernel's
/// `Rope` from it, adding the layout and any frequency factors).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeSpec {
    /// Rotated values per head.
    pub n_rot: usize,
    /// Base of the frequencies.
    pub freq_base: f32,
    /// Position interpolation factor: 1 / the linear scaling factor (1 for none).
    pub freq_scale: f32,
    /// Magnitude multiplier of cos and sin (1 for none).
    pub attn_factor: f32,
}

impl RopeSpec {
    /// Plain RoPE over `n_rot` values with base `freq_base`.
    pub fn new(n_rot: usize, freq_base: f32) -> Self {
        Self {
            n_rot,
            freq_base,
            freq_scale: 1.0,
            attn_factor: 1.0,
        }
    }
}

type Planner = fn(&GgufFile) -> Result<ArchPlan, PlanError>;

/// The architectures we run, by `general.architecture`.
const ARCHITECTURES: &[(&str, Planner)] = &[
    ("llama", llama::plan),
    ("gemma2", gemma::plan),
    ("gemma3", gemma::plan),
    ("qwen2", qwen::plan),
    ("qwen3", qwen::plan),
    ("phi3", phi3::plan),
    ("qwen3moe", qwen3moe::plan),
    ("bert", bert::plan),
    ("nomic-bert", bert::plan),
];

/// The memory plan of the model in `file`, from its metadata alone.
pub fn plan(file: &GgufFile) -> Result<ArchPlan, PlanError> {
    let arch = file.metadata().architecture()?;
    let (_, planner) = ARCHITECTURES
        .iter()
        .find(|(name, _)| *name == arch)
        .ok_or_else(|| PlanError::UnknownArchitecture(arch.to_owned()))?;
    planner(file)
}
