//! The decoder's forward pass on a GPU: the same steps as the CPU pass
//! ([`super::decoder`]), in the same order, each a kernel of the `gpu` crate over device
//! buffers. The weights are uploaded once, in the file's blocks; the keys and values are
//! written into the cache's device rows ([`crate::kvcache::DeviceLayer`]) and attended
//! over in place; only the logits (or embeddings) of the tokens that asked for them come
//! back, to be sampled here.
//!
//! A mixture of experts routes on the CPU: the router's logits come back each layer (a
//! wait for the device), the CPU picks each token's experts exactly as its own pass does,
//! and the chosen experts run on the device, each on the rows routed to it. llama.cpp
//! routes on the device (`argsort`, `mul_mat_id`) and never waits; that is left for when
//! a mixture is measured on a GPU.
//!
//! The arithmetic is f32 with the weights dequantized inside the kernels, in the kernels'
//! order of additions: what the fast CPU numerics promise (a KL divergence within
//! llama.cpp's own fast-path figures), not the exact path's bits.

mod upload;

use std::sync::Arc;

use gpu::ops::{RopeConfig, RopeLayout as GpuRopeLayout};
use gpu::{AttentionParams, Gpu, GpuBuffer, GpuMatrix, Q8Activations};
use kernels::ops::{Rope, RopeLayout, softcap};
use plan::compute::ActivationDims;
use plan::device::{HEAD_ROWS, pass_buffer_widths, q8_width};

use super::decoder::{DecoderWeights, Gated};
use super::moe::route_batch;
use super::{Batch, Logits, ModelError, Output};
use crate::kvcache::{KvCache, Placement};
use upload::{GpuExperts, GpuFfn, GpuLinear, GpuWeights};

/// The device buffers of one pass, for up to `num_batch` tokens.
struct Buffers {
    x: GpuBuffer,
    x_kept: GpuBuffer,
    xn: GpuBuffer,
    q: GpuBuffer,
    q_normed: GpuBuffer,
    k: GpuBuffer,
    k_normed: GpuBuffer,
    v: GpuBuffer,
    attn: GpuBuffer,
    proj: GpuBuffer,
    proj_kept: GpuBuffer,
    gate: GpuBuffer,
    up: GpuBuffer,
    hidden: GpuBuffer,
    /// The input of the products on 8-bit activations ([`gpu::int_dot`]).
    q8: Q8Activations,
    experts: Option<ExpertBuffers>,
}

/// The buffers a mixture of experts adds.
struct ExpertBuffers {
    router_logits: GpuBuffer,
    inputs: GpuBuffer,
    outputs: GpuBuffer,
}

impl Buffers {
    /// The buffers as [`plan::device::pass_buffer_widths`] sizes them, so the estimate's
    /// `device_compute_bytes` is this allocation.
    fn new(gpu: &Gpu, dims: &ActivationDims, num_batch: usize) -> Result<Self, ModelError> {
        let mut buffers = pass_buffer_widths(dims)
            .into_iter()
            .map(|(what, per_token)| gpu.zeros_f32(what, num_batch * per_token.max(1)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let mut next = || {
            buffers
                .next()
                .ok_or(ModelError::NotOnGpu("passes without their buffers"))
        };
        Ok(Self {
            x: next()?,
            x_kept: next()?,
            xn: next()?,
            q: next()?,
            q_normed: next()?,
            k: next()?,
            k_normed: next()?,
            v: next()?,
            attn: next()?,
            proj: next()?,
            proj_kept: next()?,
            gate: next()?,
            up: next()?,
            hidden: next()?,
            q8: Q8Activations::new(next()?, next()?, num_batch * q8_width(dims))?,
            experts: match dims.moe {
                Some(_) => Some(ExpertBuffers {
                    router_logits: next()?,
                    inputs: next()?,
                    outputs: next()?,
                }),
                None => None,
            },
        })
    }
}

/// A decoder's weights and buffers on one GPU.
pub(crate) struct GpuPass {
    gpu: Arc<Gpu>,
    weights: GpuWeights,
    buffers: Buffers,
    ropes: Vec<(RopeConfig, Option<Vec<f32>>)>,
    act: Gated,
    num_batch: usize,
    /// Whether the products of [`gpu::WeightType::int_dot`] types run on 8-bit
    /// activations ([`INT_DOT_ENV`]).
    int_dot: bool,
}

/// The environment variable that turns on the products on 8-bit activations: off by
/// default until a real GPU shows what they gain. On lavapipe they run the whole pass
/// 1.7x faster; against the CPU's exact path they raise the KL divergence by a fifth
/// (docs/PERFORMANCE.md, "integer dot product").
pub const INT_DOT_ENV: &str = "OLLAMA_GPU_INT_DOT";

/// [`INT_DOT_ENV`] as a Go boolean; unset or empty is off.
fn int_dot_from_env() -> Result<bool, ModelError> {
    let value = std::env::var(INT_DOT_ENV).unwrap_or_default();
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "f" | "false" => Ok(false),
        "1" | "t" | "true" => Ok(true),
        _ => Err(ModelError::Setting {
            name: INT_DOT_ENV,
            value,
            accepts: "a Go boolean: 1, t, true, 0, f or false",
        }),
    }
}

fn rope_config(rope: &Rope) -> (RopeConfig, Option<Vec<f32>>) {
    let p = rope.params();
    let layout = match rope.layout() {
        RopeLayout::Normal => GpuRopeLayout::Normal,
        RopeLayout::NeoX => GpuRopeLayout::NeoX,
    };
    let config = RopeConfig {
        n_dims: rope.n_dims(),
        head_dim: rope.head_dim(),
        layout,
        freq_base: p.freq_base,
        freq_scale: p.freq_scale,
        ext_factor: p.ext_factor,
        attn_factor: p.attn_factor,
        corr_dims: p.corr_dims,
    };
    (config, rope.freq_factors().map(<[f32]>::to_vec))
}

impl GpuPass {
    /// Uploads `w` to `gpu` and allocates the buffers of a pass of up to `num_batch`
    /// tokens.
    pub(crate) fn new(
        gpu: Arc<Gpu>,
        w: &DecoderWeights,
        dims: &ActivationDims,
        num_batch: usize,
    ) -> Result<Self, ModelError> {
        let int_dot = int_dot_from_env()?;
        let weights = GpuWeights::upload(&gpu, w)?;
        let buffers = Buffers::new(&gpu, dims, num_batch)?;
        gpu.settle()?;
        tracing::info!(
            adapter = %gpu.description(),
            allocated = gpu.allocated_bytes(),
            int_dot,
            "decoder uploaded to the GPU"
        );
        Ok(Self {
            ropes: w.ropes.iter().map(rope_config).collect(),
            act: w.recipe.act,
            weights,
            buffers,
            gpu,
            num_batch,
            int_dot,
        })
    }

    /// The device.
    pub(crate) fn gpu(&self) -> Arc<Gpu> {
        Arc::clone(&self.gpu)
    }

    /// Host memory the pass holds besides the weights (its device memory is the GPU's
    /// [`Gpu::allocated_bytes`]).
    pub(crate) fn host_bytes(&self) -> usize {
        0
    }

    /// `out = l · x` and `l`'s bias for `n` tokens ([`GpuPass::product`]).
    fn linear(
        &self,
        l: &GpuLinear,
        x: (&GpuBuffer, bool),
        n: usize,
        out: &GpuBuffer,
    ) -> Result<(), ModelError> {
        self.product(&l.w, x, n, out)?;
        if let Some(b) = &l.bias {
            self.gpu.add_assign(out, b, n * l.rows(), l.rows())?;
        }
        Ok(())
    }

    /// `out = w · x` for `n` tokens: on the activations [`GpuPass::quantize`] put in the
    /// `q8` buffer when `q8` says they are `x`'s and `w`'s type has the integer-dot
    /// kernel, else on `x` itself.
    fn product(
        &self,
        w: &GpuMatrix,
        (x, q8): (&GpuBuffer, bool),
        n: usize,
        out: &GpuBuffer,
    ) -> Result<(), ModelError> {
        if q8 && w.weight_type().int_dot() {
            self.gpu.matmul_q8(w, &self.buffers.q8, n, out)?;
        } else {
            self.gpu.matmul(w, x, n, out)?;
        }
        Ok(())
    }

    /// Quantizes the `n` rows of `width` values of `x` to 8 bits when one of `users`
    /// multiplies them with the integer-dot kernel; says whether it did, for
    /// [`GpuPass::linear`].
    fn quantize(
        &self,
        x: &GpuBuffer,
        n: usize,
        width: usize,
        users: &[&GpuMatrix],
    ) -> Result<bool, ModelError> {
        let wanted = self.int_dot
            && width.is_multiple_of(32)
            && users
                .iter()
                .any(|w| w.weight_type().int_dot() && w.cols() == width);
        if wanted {
            self.gpu.quantize_q8(x, n * width, &self.buffers.q8)?;
        }
        Ok(wanted)
    }

    /// The pass over `batch`, whose cells in `cache` are `placement`.
    pub(crate) fn run(
        &mut self,
        w: &DecoderWeights,
        batch: &Batch,
        cache: &mut KvCache,
        placement: &Placement,
        out: &mut Logits,
    ) -> Result<(), ModelError> {
        let n = batch.len();
        if n > self.num_batch {
            return Err(crate::kvcache::KvError::BatchTooLarge {
                len: n,
                num_batch: self.num_batch,
            }
            .into());
        }
        let (gpu, b, r) = (&*self.gpu, &self.buffers, &w.recipe);
        let (d, a) = (r.n_embd, &r.attn);
        gpu.get_rows(&self.weights.embd, batch.tokens(), &b.x)?;
        if let Some(f) = r.embd_scale {
            gpu.scale_assign(&b.x, n * d, f)?;
        }
        let seqs: Vec<u32> = batch.seqs().iter().map(|&s| s as u32).collect();
        let positions = batch.positions();
        // Each table's cells (uploaded) and the batch's cells in it, made once for every
        // layer that reads it.
        let mut tables: Vec<Option<(gpu::CellTable, Vec<u32>)>> = Vec::new();

        let n_layer = self.weights.blocks.len();
        let mut x = &b.x;
        let mut rows = n;
        for (il, gb) in self.weights.blocks.iter().enumerate() {
            if batch.interrupted() {
                return Err(ModelError::Interrupted);
            }
            let block = &w.blocks[il];
            gpu.rms_norm(x, &gb.attn_norm, &b.xn, n, d, r.eps)?;
            let q8 = self.quantize(&b.xn, n, d, &[&gb.q.w, &gb.k.w, &gb.v.w])?;
            self.linear(&gb.q, (&b.xn, q8), n, &b.q)?;
            self.linear(&gb.k, (&b.xn, q8), n, &b.k)?;
            self.linear(&gb.v, (&b.xn, q8), n, &b.v)?;
            let (mut q, mut k) = (&b.q, &b.k);
            if let Some((q_norm, k_norm)) = &gb.qk_norm {
                gpu.rms_norm(q, q_norm, &b.q_normed, n * a.n_head, a.head_dim_k, r.eps)?;
                gpu.rms_norm(k, k_norm, &b.k_normed, n * a.n_head_kv, a.head_dim_k, r.eps)?;
                (q, k) = (&b.q_normed, &b.k_normed);
            }
            let (rope, factors) = &self.ropes[block.rope];
            gpu.rope(q, a.n_head, positions, rope, factors.as_deref())?;
            gpu.rope(k, a.n_head_kv, positions, rope, factors.as_deref())?;
            if let Some(f) = r.query_scale {
                gpu.scale_assign(q, n * a.q_dim(), f)?;
            }

            let view = cache.device_layer(il).ok_or_else(|| {
                ModelError::Kv(crate::kvcache::KvError::Device(
                    "the cache is not on the model's GPU; make it with model::new_cache".to_owned(),
                ))
            })?;
            if tables.len() <= view.table {
                tables.resize_with(view.table + 1, || None);
            }
            let (table, cells) = match &mut tables[view.table] {
                Some(t) => t,
                slot => {
                    let cells = placement.cells(view.table).iter().map(|&c| c as u32);
                    let table = gpu.upload_cells(view.pos, view.seqs)?;
                    slot.insert((table, cells.collect()))
                }
            };
            gpu.store_kv_rows(k, cells, a.k_dim(), view.k_type, view.k)?;
            gpu.store_kv_rows(&b.v, cells, a.v_dim(), view.v_type, view.v)?;
            let params = AttentionParams {
                n_head: a.n_head,
                n_head_kv: a.n_head_kv,
                head_dim_k: a.head_dim_k,
                head_dim_v: a.head_dim_v,
                scale: a.scale,
                softcap: a.softcap,
                window: view.window,
                k_type: view.k_type,
                v_type: view.v_type,
            };
            let n_cells = placement.active(view.table);
            gpu.flash_attention(
                q, view.k, view.v, table, n_cells, positions, &seqs, &params, &b.attn,
            )?;
            let q8 = self.quantize(&b.attn, n, a.out_dim(), &[&gb.wo.w])?;
            self.linear(&gb.wo, (&b.attn, q8), n, &b.proj)?;

            let mut proj = &b.proj;
            // The last layer goes on with the rows that give output only.
            if il + 1 == n_layer {
                let kept: Vec<u32> = (0..n)
                    .filter(|&t| batch.wants_logits()[t])
                    .map(|t| t as u32)
                    .collect();
                if kept.len() < n {
                    gpu.copy_rows(x, &kept, d, &b.x_kept)?;
                    gpu.copy_rows(proj, &kept, d, &b.proj_kept)?;
                    (x, proj) = (&b.x_kept, &b.proj_kept);
                }
                rows = kept.len();
            }
            if rows == 0 {
                break;
            }
            self.residual(x, proj, gb.attn_post_norm.as_ref(), rows * d, d, r.eps)?;

            gpu.rms_norm(x, &gb.ffn_norm, &b.xn, rows, d, r.eps)?;
            match &gb.ffn {
                GpuFfn::Dense { gate, up, down } => {
                    let q8 = self.quantize(&b.xn, rows, d, &[&gate.w, &up.w])?;
                    self.linear(gate, (&b.xn, q8), rows, &b.gate)?;
                    self.linear(up, (&b.xn, q8), rows, &b.up)?;
                    let n_ff = gate.rows();
                    self.glu(rows * n_ff)?;
                    let q8 = self.quantize(&b.hidden, rows, n_ff, &[&down.w])?;
                    self.linear(down, (&b.hidden, q8), rows, &b.proj)?;
                }
                GpuFfn::Experts(experts) => self.experts(experts, rows, d)?,
            }
            self.residual(x, &b.proj, gb.ffn_post_norm.as_ref(), rows * d, d, r.eps)?;
        }
        self.head(w, batch, x, rows, out)
    }

    /// `hidden = act(gate) · up` over `len` values.
    fn glu(&self, len: usize) -> Result<(), ModelError> {
        let b = &self.buffers;
        match self.act {
            Gated::SwiGlu => self.gpu.swiglu(&b.gate, &b.up, &b.hidden, len)?,
            Gated::GeGlu => self.gpu.geglu(&b.gate, &b.up, &b.hidden, len)?,
        }
        Ok(())
    }

    /// The mixture of experts over the `rows` normalized rows in `xn`, mixed into `proj`:
    /// the router's logits come back to the CPU, which picks each token's experts and
    /// weights as the CPU pass does ([`route_batch`]); each chosen expert then runs on the
    /// rows routed to it, its outputs are put in (token, slot) order, and each token's
    /// slots are added with their weights in the router's order.
    fn experts(&self, e: &GpuExperts, rows: usize, d: usize) -> Result<(), ModelError> {
        let (gpu, b) = (&*self.gpu, &self.buffers);
        let eb = b
            .experts
            .as_ref()
            .ok_or(ModelError::NotOnGpu("experts without their buffers"))?;
        let (n_expert, k) = (e.router.rows(), e.n_used);
        self.linear(&e.router, (&b.xn, false), rows, &eb.router_logits)?;
        let mut logits = gpu.read_f32(&eb.router_logits)?;
        let (mut chosen, mut weights) = (vec![0u32; rows * k], vec![0f32; rows * k]);
        let mut by_expert = vec![0u32; rows * k];
        route_batch(
            &mut logits[..rows * n_expert],
            (n_expert, k),
            (&mut chosen, &mut weights),
            &mut by_expert,
        );
        for group in by_expert.chunk_by(|&a, &c| chosen[a as usize] == chosen[c as usize]) {
            let (expert, m) = (chosen[group[0] as usize] as usize, group.len());
            let tokens: Vec<u32> = group.iter().map(|&i| i / k as u32).collect();
            gpu.copy_rows(&b.xn, &tokens, d, &eb.inputs)?;
            gpu.matmul_expert(&e.gate, expert, &eb.inputs, m, &b.gate)?;
            gpu.matmul_expert(&e.up, expert, &eb.inputs, m, &b.up)?;
            self.glu(m * e.gate.expert_rows())?;
            gpu.matmul_expert(&e.down, expert, &b.hidden, m, &b.proj)?;
            gpu.scatter_rows(&b.proj, group, d, &eb.outputs)?;
        }
        gpu.combine_experts(&eb.outputs, &weights, k, d, &b.proj)?;
        Ok(())
    }

    /// `x += post_norm(proj)` (or `x += proj` without a post-norm) over `len` values of
    /// rows of `d`.
    fn residual(
        &self,
        x: &GpuBuffer,
        proj: &GpuBuffer,
        post_norm: Option<&GpuBuffer>,
        len: usize,
        d: usize,
        eps: f32,
    ) -> Result<(), ModelError> {
        let gpu = &*self.gpu;
        match post_norm {
            Some(wn) => {
                gpu.rms_norm(proj, wn, &self.buffers.xn, len / d, d, eps)?;
                gpu.add_assign(x, &self.buffers.xn, len, len)?;
            }
            None => gpu.add_assign(x, proj, len, len)?,
        }
        Ok(())
    }

    /// The final norm of the `m` kept rows of `x`, then the vocabulary projection (or,
    /// for embeddings, the normalized rows), read back into `out`.
    fn head(
        &self,
        w: &DecoderWeights,
        batch: &Batch,
        x: &GpuBuffer,
        m: usize,
        out: &mut Logits,
    ) -> Result<(), ModelError> {
        let (gpu, b, r) = (&*self.gpu, &self.buffers, &w.recipe);
        let d = r.n_embd;
        let wanted: Vec<usize> = (0..batch.len())
            .filter(|&t| batch.wants_logits()[t])
            .collect();
        if m > 0 {
            gpu.rms_norm(x, &self.weights.output_norm, &b.xn, m, d, r.eps)?;
        }
        if batch.output() == Output::Embeddings {
            let rows = out.prepare_output(Output::Embeddings, d, wanted.into_iter());
            if m > 0 {
                let normed = gpu.read_f32(&b.xn)?;
                rows.copy_from_slice(&normed[..m * d]);
            }
            return Ok(());
        }
        let output: &GpuMatrix = match &self.weights.output {
            Some(l) => &l.w,
            None => &self.weights.embd,
        };
        let n_vocab = output.rows();
        let logits = out.prepare(n_vocab, wanted.into_iter());
        for (chunk, dst) in logits.chunks_mut(HEAD_ROWS * n_vocab).enumerate() {
            let rows = dst.len() / n_vocab;
            let first = chunk * HEAD_ROWS;
            let input = if first == 0 {
                None
            } else {
                let ids: Vec<u32> = (first..first + rows).map(|t| t as u32).collect();
                gpu.copy_rows(&b.xn, &ids, d, &b.x_kept)?;
                Some(&b.x_kept)
            };
            let result = gpu.zeros_f32("logits", rows * n_vocab)?;
            let input = input.unwrap_or(&b.xn);
            let q8 = self.quantize(input, rows, d, &[output])?;
            self.product(output, (input, q8), rows, &result)?;
            if let Some(bias) = self.weights.output.as_ref().and_then(|l| l.bias.as_ref()) {
                gpu.add_assign(&result, bias, rows * n_vocab, n_vocab)?;
            }
            dst.copy_from_slice(&gpu.read_f32(&result)?);
        }
        if let Some(cap) = r.final_softcap {
            softcap(logits, cap);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_estimate_packs_buffers_into_the_blocks_the_device_was_opened_with() {
        assert_eq!(
            gpu::SUBALLOCATION_BLOCK_BYTES,
            plan::device::ALLOCATOR_BLOCK_BYTES as u64
        );
    }
}
