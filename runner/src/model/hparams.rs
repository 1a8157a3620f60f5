//! From the hyper-parameters the `plan` crate reads (plain data, shared with the
//! supervisor's estimate) to the kernels' objects they configure.

use kernels::ops::{Rope, RopeLayout, RopeParams};
use plan::RopeSpec;

use super::ModelError;

/// The rotary embedding `spec` describes over heads of `head_dim` values in `layout`,
/// with per-pair frequency `factors` when the file has them.
pub(crate) fn rope(
    spec: &RopeSpec,
    head_dim: usize,
    layout: RopeLayout,
    factors: Option<&[f32]>,
) -> Result<Rope, ModelError> {
    let params = RopeParams {
        freq_scale: spec.freq_scale,
        attn_factor: spec.attn_factor,
        ..RopeParams::new(spec.freq_base)
    };
    Ok(Rope::new(spec.n_rot, head_dim, layout, params, factors)?)
}
