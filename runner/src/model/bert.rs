//! BERT encoders: sentence-embedding models such as all-MiniLM-L6-v2, bge and e5
//! (`general.architecture = bert`) and nomic-embed-text (`nomic-bert`), as llama.cpp's
//! converter writes them and its `llama_model_bert` graph runs them.
//!
//! Per token (BERT): word embedding + token-type embedding (type 0: one segment) +
//! absolute position embedding, LayerNorm. Per layer (post-LayerNorm): Q, K, V
//! projections with biases → attention scaled by `1/sqrt(head_dim)` over every token of
//! the same sequence in the batch, both ways (no causal mask; sequences packed in one
//! batch see only themselves) → output projection + bias → residual add → LayerNorm → up
//! projection + bias → GELU (erf, as BERT computes it) → down projection + bias →
//! residual add → LayerNorm. A batch asking for [`Output::Embeddings`] gets the final
//! hidden states of the tokens that ask for output; [`super::pooling`] pools them (mean,
//! cls) and normalizes.
//!
//! nomic-bert is the same encoder with three changes: no position table, but RoPE (NeoX
//! layout, `rope.freq_base`) on the queries and keys of every layer; the three
//! projections fused in one matrix (`attn_qkv`) without biases; and a SwiGLU feed-forward
//! network, `down(silu(gate(x)) · up(x))`, without biases. Its LayerNorms keep their
//! biases. The token-type table is optional in both, as llama.cpp has it.
//!
//! The K/V cache: an encoder keeps nothing between passes, because every token attends to
//! the ones after it too, so each sequence must be evaluated whole in one batch. The plan
//! (`plan::arch::bert`) gives the cache no layers, and this model never reads or writes
//! it; a sequence whose first token in the batch is not at position 0 is refused, so an
//! input split across passes fails loudly instead of embedding halves.
//!
//! The model only embeds: a batch asking for logits is refused (there is no output head).
//! References: Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for
//! Language Understanding" (2019); Reimers and Gurevych, "Sentence-BERT" (2019); Nussbaum
//! et al., "Nomic Embed: Training a Reproducible Long Context Text Embedder" (2024).

use std::collections::BTreeMap;
use std::sync::Arc;

use gguf::GgufFile;
use kernels::ops::{Rope, RopeLayout, add_assign, layer_norm_in_place, softmax, swiglu};
use kernels::pool::ThreadPool;
use plan::arch::bert::HyperParams;
use plan::compute::matmul_scratch_bytes;

use super::activations::touched;
use super::layers::{GatedMlp, MlpScratch, rotate};
use super::weights::{Cpu, Embedding, Linear, vector};
use super::{Batch, LoadOptions, Logits, Model, ModelError, Output};
use crate::kvcache::{KvCache, KvError, KvLayout};

/// The encoder architectures this file runs.
const ENCODERS: [&str; 2] = ["bert", "nomic-bert"];

/// Whether `architecture` is an encoder that only embeds (and cannot generate text).
pub fn embeds_only(architecture: &str) -> bool {
    ENCODERS.contains(&architecture)
}

/// Rows per task of a row-wise step over `n` rows: a few tasks per thread.
fn rows_per_task(pool: &ThreadPool, n: usize) -> usize {
    n.div_ceil(pool.threads() * 4).max(1)
}

/// A LayerNorm's weight and bias.
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Norm {
    fn load(file: &GgufFile, prefix: &str, n: usize) -> Result<Self, ModelError> {
        Ok(Self {
            weight: vector(file, &format!("{prefix}.weight"), n)?,
            bias: vector(file, &format!("{prefix}.bias"), n)?,
        })
    }

    /// Normalizes every row of `x` in place, over the pool.
    fn rows(&self, pool: &ThreadPool, x: &mut [f32], eps: f32) {
        let d = self.weight.len();
        pool.for_chunks_mut(x, rows_per_task(pool, x.len() / d) * d, |_, rows| {
            for row in rows.chunks_exact_mut(d) {
                layer_norm_in_place(row, Some(&self.weight), Some(&self.bias), eps);
            }
        });
    }
}

/// How the tokens' positions enter the encoder.
enum Positions {
    /// BERT: a learned embedding per position, added to the token's.
    Absolute(Embedding),
    /// nomic-bert: RoPE on the queries and keys of every layer.
    Rotary(Rope),
}

/// An encoder block's feed-forward network.
enum Mlp {
    /// BERT: `down(GELU(up(x)))`, with biases.
    Gelu { up: Linear, down: Linear },
    /// nomic-bert: `down(silu(gate(x)) · up(x))`.
    SwiGlu(GatedMlp),
}

/// One encoder block's weights.
struct Layer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    attn_norm: Norm,
    mlp: Mlp,
    out_norm: Norm,
}

impl Layer {
    /// Block `i`: BERT's separate projections, or nomic-bert's fused `attn_qkv` cut into
    /// its query, key and value rows (llama.cpp takes either in both).
    fn load(file: &GgufFile, i: usize, hp: &HyperParams) -> Result<Self, ModelError> {
        let (d, f) = (hp.n_embd, hp.n_ff);
        let p = format!("blk.{i}");
        let fused = format!("{p}.attn_qkv.weight");
        let separate = file.tensor(&format!("{p}.attn_q.weight")).is_some();
        let [wq, wk, wv] = if file.tensor(&fused).is_some() {
            Linear::load(file, &format!("{p}.attn_qkv"), d, 3 * d)?.split_rows([d, d, d])
        } else if hp.rope.is_some() && !separate {
            // nomic-bert's converter writes the fused matrix: name it, not the others.
            return Err(ModelError::MissingTensor(format!(
                "{fused} (or {p}.attn_q, attn_k and attn_v)"
            )));
        } else {
            [
                Linear::load(file, &format!("{p}.attn_q"), d, d)?,
                Linear::load(file, &format!("{p}.attn_k"), d, d)?,
                Linear::load(file, &format!("{p}.attn_v"), d, d)?,
            ]
        };
        let mlp = match hp.rope {
            Some(_) => Mlp::SwiGlu(GatedMlp::load(file, &format!("{p}.ffn"), d, f)?),
            None => Mlp::Gelu {
                up: Linear::load(file, &format!("{p}.ffn_up"), d, f)?,
                down: Linear::load(file, &format!("{p}.ffn_down"), f, d)?,
            },
        };
        Ok(Self {
            wq,
            wk,
            wv,
            wo: Linear::load(file, &format!("{p}.attn_output"), d, d)?,
            attn_norm: Norm::load(file, &format!("{p}.attn_output_norm"), d)?,
            mlp,
            out_norm: Norm::load(file, &format!("{p}.layer_output_norm"), d)?,
        })
    }
}

/// The per-pass buffers, sized for `num_batch` tokens at load.
struct Buffers {
    /// Hidden states, `[n, n_embd]`.
    x: Vec<f32>,
    /// Projections back to the hidden size, `[n, n_embd]`.
    proj: Vec<f32>,
    /// Queries, keys, values, attention outputs, each `[n, n_embd]`.
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    /// The feed-forward rows before and after GELU, `[n, n_ff]` (BERT; empty for
    /// nomic-bert).
    up: Vec<f32>,
    act: Vec<f32>,
    /// The gate and up rows of SwiGLU, `[n, 2 * n_ff]` (nomic-bert; empty for BERT).
    mlp: MlpScratch,
    /// RoPE's cos/sin table per token, `[n, n_rot]` (nomic-bert; empty for BERT).
    cos_sin: Vec<f32>,
}

impl Buffers {
    fn new(hp: &HyperParams, num_batch: usize) -> Self {
        let (d, f) = (num_batch * hp.n_embd, num_batch * hp.n_ff);
        let rotary = hp.rope.is_some();
        let gelu = if rotary { 0 } else { f };
        Self {
            x: touched(d),
            proj: touched(d),
            q: touched(d),
            k: touched(d),
            v: touched(d),
            attn: touched(d),
            up: touched(gelu),
            act: touched(gelu),
            mlp: MlpScratch::with_rows(if rotary { f } else { 0 }),
            cos_sin: touched(hp.rope.map_or(0, |r| num_batch * r.n_rot)),
        }
    }

    fn bytes(&self) -> usize {
        let all = [
            &self.x,
            &self.proj,
            &self.q,
            &self.k,
            &self.v,
            &self.attn,
            &self.up,
            &self.act,
            &self.cos_sin,
        ];
        all.iter().map(|b| b.capacity() * 4).sum::<usize>() + self.mlp.bytes()
    }

    fn resize(&mut self, n: usize, hp: &HyperParams) {
        let (d, f) = (n * hp.n_embd, n * hp.n_ff);
        if let Some(r) = hp.rope {
            self.cos_sin.resize(n * r.n_rot, 0.0);
        } else {
            self.up.resize(f, 0.0);
            self.act.resize(f, 0.0);
        }
        for b in [
            &mut self.x,
            &mut self.proj,
            &mut self.q,
            &mut self.k,
            &mut self.v,
            &mut self.attn,
        ] {
            b.resize(d, 0.0);
        }
    }
}

/// A loaded BERT encoder (or nomic-bert).
pub struct Bert {
    file: Arc<GgufFile>,
    architecture: &'static str,
    hp: HyperParams,
    embd: Embedding,
    positions: Positions,
    token_types: Option<Embedding>,
    embd_norm: Norm,
    layers: Vec<Layer>,
    cpu: Cpu,
    buf: Buffers,
    kv_layout: KvLayout,
}

impl Bert {
    /// Reads the hyper-parameters and finds every tensor; the weights stay in `file`.
    pub fn load(file: Arc<GgufFile>, options: &LoadOptions) -> Result<Self, ModelError> {
        let hp = HyperParams::read(&file)?;
        let arch = file.metadata().architecture()?;
        let architecture = ENCODERS
            .into_iter()
            .find(|&name| name == arch)
            .ok_or_else(|| plan::PlanError::UnknownArchitecture(arch.to_owned()))?;
        let d = hp.n_embd;
        let embd = Embedding::load(&file, "token_embd.weight", d)?;
        let positions = match &hp.rope {
            Some(spec) => Positions::Rotary(super::hparams::rope(
                spec,
                hp.attn.head_dim_k,
                RopeLayout::NeoX,
                None,
            )?),
            None => Positions::Absolute(Embedding::load(&file, "position_embd.weight", d)?),
        };
        let token_types = match file.tensor("token_types.weight") {
            Some(_) => Some(Embedding::load(&file, "token_types.weight", d)?),
            None => None,
        };
        let embd_norm = Norm::load(&file, "token_embd_norm", d)?;
        let layers = (0..hp.n_layer)
            .map(|i| Layer::load(&file, i, &hp))
            .collect::<Result<Vec<_>, _>>()?;
        let compute = options.compute();
        Ok(Self {
            buf: Buffers::new(&hp, compute.num_batch),
            kv_layout: hp.plan().kv,
            cpu: Cpu::new(
                options.threads,
                matmul_scratch_bytes(&file, compute.num_batch),
                options.numerics,
            )?,
            architecture,
            hp,
            embd,
            positions,
            token_types,
            embd_norm,
            layers,
            file,
        })
    }

    /// [`Bert::load`], boxed for the architecture table.
    pub fn load_boxed(
        file: Arc<GgufFile>,
        options: &LoadOptions,
    ) -> Result<Box<dyn Model>, ModelError> {
        Ok(Box::new(Self::load(file, options)?))
    }
}

/// The batch indices of each sequence's tokens, checked to be the whole sequence: its
/// positions 0, 1, 2, ... in batch order, within the position table.
fn sequences(batch: &Batch, train_ctx: usize) -> Result<BTreeMap<usize, Vec<usize>>, KvError> {
    let mut seqs: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, (&seq, &pos)) in batch.seqs().iter().zip(batch.positions()).enumerate() {
        let members = seqs.entry(seq).or_default();
        let next = members.len();
        if pos != next as i32 {
            return Err(KvError::BadPosition {
                seq,
                pos: i64::from(pos),
                next: next as i64,
            });
        }
        if next >= train_ctx {
            return Err(KvError::ContextFull {
                seq,
                pos: i64::from(pos),
                num_ctx: train_ctx,
            });
        }
        members.push(i);
    }
    Ok(seqs)
}

impl Model for Bert {
    fn architecture(&self) -> &'static str {
        self.architecture
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
        self.buf.bytes() + self.cpu.scratch_bytes()
    }

    fn forward(
        &mut self,
        batch: &Batch,
        cache: &mut KvCache,
        out: &mut Logits,
    ) -> Result<(), ModelError> {
        if batch.output() != Output::Embeddings {
            return Err(ModelError::MissingTensor(format!(
                "output.weight: {} is an encoder; it gives embeddings, not logits",
                self.architecture
            )));
        }
        if cache.layout() != &self.kv_layout {
            return Err(KvError::LayoutMismatch.into());
        }
        let (hp, file, cpu) = (&self.hp, &*self.file, &mut self.cpu);
        let seqs = sequences(batch, hp.train_ctx)?;
        let (n, d) = (batch.len(), hp.n_embd);
        // The batch indices of each token's sequence, token by token.
        let mut members: Vec<&[usize]> = vec![&[]; n];
        for seq in seqs.values() {
            for &i in seq {
                members[i] = seq;
            }
        }
        let b = &mut self.buf;
        b.resize(n, hp);

        // The token's embedding, plus type 0's, plus (BERT) its position's: llama.cpp's
        // order of additions.
        for (t, row) in b.x.chunks_exact_mut(d).enumerate() {
            self.embd.lookup(file, batch.tokens()[t], row)?;
            if let Some(types) = &self.token_types {
                types.lookup(file, 0, &mut b.proj[..d])?;
                add_assign(row, &b.proj[..d]);
            }
            if let Positions::Absolute(positions) = &self.positions {
                let pos = batch.positions()[t] as u32;
                positions.lookup(file, pos, &mut b.proj[..d])?;
                add_assign(row, &b.proj[..d]);
            }
        }
        self.embd_norm.rows(cpu.pool(), &mut b.x, hp.eps);
        let rope = match &self.positions {
            Positions::Rotary(rope) => {
                rope.cos_sin_batch(batch.positions(), &mut b.cos_sin);
                Some(rope)
            }
            Positions::Absolute(_) => None,
        };

        for layer in &self.layers {
            if batch.interrupted() {
                return Err(ModelError::Interrupted);
            }
            layer.wq.forward(cpu, file, &b.x, n, &mut b.q)?;
            layer.wk.forward(cpu, file, &b.x, n, &mut b.k)?;
            layer.wv.forward(cpu, file, &b.x, n, &mut b.v)?;
            if let Some(rope) = rope {
                rotate(rope, &b.cos_sin, &mut b.q, d);
                rotate(rope, &b.cos_sin, &mut b.k, d);
            }
            attend(cpu.pool(), hp, &members, b);
            layer.wo.forward(cpu, file, &b.attn, n, &mut b.proj)?;
            add_assign(&mut b.x, &b.proj);
            layer.attn_norm.rows(cpu.pool(), &mut b.x, hp.eps);

            match &layer.mlp {
                Mlp::Gelu { up, down } => {
                    up.forward(cpu, file, &b.x, n, &mut b.up)?;
                    cpu.gelu_erf(&b.up, &mut b.act, rows_per_task(cpu.pool(), n) * hp.n_ff);
                    down.forward(cpu, file, &b.act, n, &mut b.proj)?;
                }
                Mlp::SwiGlu(mlp) => {
                    mlp.forward(cpu, file, swiglu, &b.x, n, &mut b.mlp, &mut b.proj)?;
                }
            }
            add_assign(&mut b.x, &b.proj);
            layer.out_norm.rows(cpu.pool(), &mut b.x, hp.eps);
        }

        let wanted = (batch.wants_logits().iter().enumerate()).filter_map(|(i, &w)| w.then_some(i));
        let rows: Vec<usize> = wanted.collect();
        let dst = out.prepare_output(Output::Embeddings, d, rows.iter().copied());
        for (o, &t) in dst.chunks_exact_mut(d).zip(&rows) {
            o.copy_from_slice(&b.x[t * d..(t + 1) * d]);
        }
        Ok(())
    }
}

/// `attn[i] = softmax(q[i]·k[j] * scale over j) · v[j]`, head by head, where `j` runs
/// over the tokens of `i`'s sequence (`members[i]`); tokens are shared out over the pool.
fn attend(pool: &ThreadPool, hp: &HyperParams, members: &[&[usize]], b: &mut Buffers) {
    let a = &hp.attn;
    let (d, hd) = (hp.n_embd, a.head_dim_k);
    let (q, k, v) = (&b.q, &b.k, &b.v);
    let chunk = rows_per_task(pool, members.len()) * d;
    pool.for_chunks_mut(&mut b.attn, chunk, |start, rows| {
        let mut scores = Vec::new();
        for (r, o) in rows.chunks_exact_mut(d).enumerate() {
            let i = start / d + r;
            let members = members[i];
            scores.resize(members.len(), 0.0);
            for h in 0..a.n_head {
                let head = h * hd..(h + 1) * hd;
                let q = &q[i * d..][head.clone()];
                for (s, &j) in scores.iter_mut().zip(members) {
                    let k = &k[j * d..][head.clone()];
                    *s = q.iter().zip(k).map(|(x, y)| x * y).sum::<f32>() * a.scale;
                }
                softmax(&mut scores);
                let o = &mut o[head.clone()];
                o.fill(0.0);
                for (&s, &j) in scores.iter().zip(members) {
                    let v = &v[j * d..][head.clone()];
                    for (o, &v) in o.iter_mut().zip(v) {
                        *o += s * v;
                    }
                }
            }
        }
    });
}
