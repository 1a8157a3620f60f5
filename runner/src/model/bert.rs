//! BERT encoders (`general.architecture = bert`): sentence-embedding models such as
//! all-MiniLM-L6-v2, bge and e5, as llama.cpp's converter writes them.
//!
//! Per token: word embedding + absolute position embedding + token-type embedding (type
//! 0: one segment), LayerNorm. Per layer (post-LayerNorm): Q, K, V projections with
//! biases → attention scaled by `1/sqrt(head_dim)` over every token of the same sequence
//! in the batch, both ways (no causal mask; sequences packed in one batch see only
//! themselves) → output projection + bias → residual add → LayerNorm → up projection +
//! bias → GELU (erf, as BERT computes it) → down projection + bias → residual add →
//! LayerNorm. A batch asking for [`Output::Embeddings`] gets the final hidden states of
//! the tokens that ask for output; [`super::pooling`] pools them (mean, cls) and
//! normalizes.
//!
//! The K/V cache: an encoder keeps nothing between passes, because every token attends to
//! the ones after it too, so each sequence must be evaluated whole in one batch. The plan
//! (`plan::arch::bert`) gives the cache no layers, and this model never reads or writes
//! it; a sequence whose first token in the batch is not at position 0 is refused, so an
//! input split across passes fails loudly instead of embedding halves.
//!
//! The model only embeds: a batch asking for logits is refused (there is no output head).
//! References: Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for
//! Language Understanding" (2019); Reimers and Gurevych, "Sentence-BERT" (2019).

use std::collections::BTreeMap;
use std::sync::Arc;

use gguf::GgufFile;
use kernels::ops::{add_assign, layer_norm_in_place, softmax};
use kernels::pool::ThreadPool;
use plan::arch::bert::HyperParams;
use plan::compute::matmul_scratch_bytes;

use super::activations::touched;
use super::weights::{Cpu, Embedding, Linear, vector};
use super::{Batch, LoadOptions, Logits, Model, ModelError, Output};
use crate::kvcache::{KvCache, KvError, KvLayout};

/// Whether `architecture` is an encoder that only embeds (and cannot generate text).
pub fn embeds_only(architecture: &str) -> bool {
    architecture == "bert"
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

/// One encoder block's weights.
struct Layer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
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
    /// The feed-forward rows before and after GELU, `[n, n_ff]`.
    up: Vec<f32>,
    act: Vec<f32>,
}

impl Buffers {
    fn new(hp: &HyperParams, num_batch: usize) -> Self {
        let (d, f) = (num_batch * hp.n_embd, num_batch * hp.n_ff);
        Self {
            x: touched(d),
            proj: touched(d),
            q: touched(d),
            k: touched(d),
            v: touched(d),
            attn: touched(d),
            up: touched(f),
            act: touched(f),
        }
    }

    fn bytes(&self) -> usize {
        let all = [
            &self.x, &self.proj, &self.q, &self.k, &self.v, &self.attn, &self.up, &self.act,
        ];
        all.iter().map(|b| b.capacity() * 4).sum()
    }

    fn resize(&mut self, n: usize, hp: &HyperParams) {
        let (d, f) = (n * hp.n_embd, n * hp.n_ff);
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
        self.up.resize(f, 0.0);
        self.act.resize(f, 0.0);
    }
}

/// A loaded BERT encoder.
pub struct Bert {
    file: Arc<GgufFile>,
    hp: HyperParams,
    embd: Embedding,
    positions: Embedding,
    token_types: Embedding,
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
        let (d, f) = (hp.n_embd, hp.n_ff);
        let embd = Embedding::load(&file, "token_embd.weight", d)?;
        let positions = Embedding::load(&file, "position_embd.weight", d)?;
        let token_types = Embedding::load(&file, "token_types.weight", d)?;
        let embd_norm = Norm::load(&file, "token_embd_norm", d)?;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let p = format!("blk.{i}");
            layers.push(Layer {
                wq: Linear::load(&file, &format!("{p}.attn_q"), d, d)?,
                wk: Linear::load(&file, &format!("{p}.attn_k"), d, d)?,
                wv: Linear::load(&file, &format!("{p}.attn_v"), d, d)?,
                wo: Linear::load(&file, &format!("{p}.attn_output"), d, d)?,
                attn_norm: Norm::load(&file, &format!("{p}.attn_output_norm"), d)?,
                up: Linear::load(&file, &format!("{p}.ffn_up"), d, f)?,
                down: Linear::load(&file, &format!("{p}.ffn_down"), f, d)?,
                out_norm: Norm::load(&file, &format!("{p}.layer_output_norm"), d)?,
            });
        }
        let compute = options.compute();
        Ok(Self {
            buf: Buffers::new(&hp, compute.num_batch),
            kv_layout: hp.plan().kv,
            cpu: Cpu::new(
                options.threads,
                matmul_scratch_bytes(&file, compute.num_batch),
                options.numerics,
            )?,
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
        "bert"
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
            return Err(ModelError::MissingTensor(
                "output.weight: bert is an encoder; it gives embeddings, not logits".into(),
            ));
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

        for (t, row) in b.x.chunks_exact_mut(d).enumerate() {
            self.embd.lookup(file, batch.tokens()[t], row)?;
            let pos = batch.positions()[t] as u32;
            self.positions.lookup(file, pos, &mut b.proj[..d])?;
            add_assign(row, &b.proj[..d]);
            self.token_types.lookup(file, 0, &mut b.proj[..d])?;
            add_assign(row, &b.proj[..d]);
        }
        self.embd_norm.rows(cpu.pool(), &mut b.x, hp.eps);

        for layer in &self.layers {
            if batch.interrupted() {
                return Err(ModelError::Interrupted);
            }
            layer.wq.forward(cpu, file, &b.x, n, &mut b.q)?;
            layer.wk.forward(cpu, file, &b.x, n, &mut b.k)?;
            layer.wv.forward(cpu, file, &b.x, n, &mut b.v)?;
            attend(cpu.pool(), hp, &members, b);
            layer.wo.forward(cpu, file, &b.attn, n, &mut b.proj)?;
            add_assign(&mut b.x, &b.proj);
            layer.attn_norm.rows(cpu.pool(), &mut b.x, hp.eps);

            layer.up.forward(cpu, file, &b.x, n, &mut b.up)?;
            cpu.gelu_erf(&b.up, &mut b.act, rows_per_task(cpu.pool(), n) * hp.n_ff);
            layer.down.forward(cpu, file, &b.act, n, &mut b.proj)?;
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
