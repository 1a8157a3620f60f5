//! The architectures' hyper-parameters, read from a GGUF file's metadata into plain
//! data, and the memory plan they imply ([`ArchPlan`]: buffer widths and K/V layout).
//!
//! One file per architecture, registered by `general.architecture` in [`plan`]'s table.
//! The runner's model files read their hyper-parameters here and build the graph from
//! them; the estimate uses the plan alone.

pub mod bert;
pub mod gemma3;
mod hparams;
pub mod llama;
pub mod qwen;

use gguf::GgufFile;

use crate::PlanError;
use crate::compute::ActivationDims;
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
    ("gemma3", gemma3::plan),
    ("qwen2", qwen::plan),
    ("qwen3", qwen::plan),
    ("bert", bert::plan),
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
