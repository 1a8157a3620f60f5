//! Qwen 3's mixture-of-experts models (`general.architecture = qwen3moe`, Qwen3-30B-A3B
//! and Qwen3-235B-A22B), as llama.cpp's `llama_model_qwen3moe` reads them.
//!
//! Attention is Qwen 3's ([`super::qwen`]); every feed-forward network is a mixture of
//! `expert_count` experts of `expert_feed_forward_length` (else `feed_forward_length /
//! expert_used_count`), `expert_used_count` of them per token.

use gguf::GgufFile;

use super::ArchPlan;
use super::qwen;
use crate::PlanError;
use crate::compute::MoeDims;

/// The hyper-parameters the graph needs.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperParams {
    /// Qwen 3's (`n_ff` is the dense width, which no layer uses).
    pub base: qwen::HyperParams,
    /// The routing.
    pub moe: MoeDims,
    /// Each expert's hidden width.
    pub n_ff_exp: usize,
}

impl HyperParams {
    /// Reads them from `file`'s metadata, naming the key of a missing or bad one.
    pub fn read(file: &GgufFile) -> Result<Self, PlanError> {
        let md = file.metadata();
        let base = qwen::HyperParams::read(file)?;
        let count = |suffix: &str| -> Result<usize, PlanError> {
            let key = md.arch_key(suffix)?;
            match md.arch_get_opt::<u32>(suffix)? {
                Some(n) if n > 0 => Ok(n as usize),
                Some(n) => Err(PlanError::BadHyperParameter {
                    key,
                    value: n.to_string(),
                    why: "must be positive",
                }),
                None => Err(PlanError::BadHyperParameter {
                    key,
                    value: "missing".to_owned(),
                    why: "a mixture-of-experts model must name it",
                }),
            }
        };
        let n_expert = count("expert_count")?;
        let n_expert_used = count("expert_used_count")?;
        if n_expert_used > n_expert {
            return Err(PlanError::BadHyperParameter {
                key: md.arch_key("expert_used_count")?,
                value: n_expert_used.to_string(),
                why: "must be at most expert_count",
            });
        }
        let n_ff_exp = match md.arch_get_opt::<u32>("expert_feed_forward_length")? {
            Some(n) if n > 0 => n as usize,
            _ => base.n_ff / n_expert_used,
        };
        Ok(Self {
            base,
            moe: MoeDims {
                n_expert,
                n_expert_used,
            },
            n_ff_exp,
        })
    }

    /// The buffer widths and cache layout these imply: the MLP's rows are one expert's,
    /// for the tokens routed to it.
    pub fn plan(&self) -> ArchPlan {
        let b = &self.base;
        let mut plan = ArchPlan::dense(b.n_layer, b.n_embd, self.n_ff_exp, b.attn, b.rope.n_rot);
        plan.dims.moe = Some(self.moe);
        plan
    }
}

/// The plan of a qwen3moe file, from its metadata only.
pub fn plan(file: &GgufFile) -> Result<ArchPlan, PlanError> {
    Ok(HyperParams::read(file)?.plan())
}
