#!/usr/bin/env python3
"""Writes tiny random models of the architectures the engine runs, as GGUF files.

No real weights of these families can be fetched here, but a model with random weights
runs through the same code as a real one: these files let the tests hold our engine to
llama.cpp's reference path on every architecture (scripts/make-synthetic-refs.sh).

  pip install -r scripts/requirements.txt
  scripts/fetch-models                     # SmolLM2, whose vocabulary the models borrow
  python3 scripts/make-synthetic-models.py [OUT_DIR]

OUT_DIR defaults to $OLLAMA_SYNTHETIC_MODELS or ~/.cache/ollamad/synthetic. Each
architecture is written in F32 and in two quantized types, Q8_0 and Q4_0, quantized by
the `gguf` package (llama.cpp's own Python writer, pinned in requirements.txt; it cannot
quantize the k-quants). As llama.cpp's converter does, matrices take the file's type and
vectors (norms, biases, RoPE factors) stay F32. The weights are drawn once per
architecture from a fixed seed, so the three files of an architecture hold the same model
and rerunning the script writes the same bytes.

Metadata keys and tensor names are those llama.cpp's converter writes for the family
(`convert_hf_to_gguf.py`, `conversion/{qwen,llama}.py`; tensor names from
`gguf.constants`): the sizes are small (hidden 256-512, three layers) but the head counts
and GQA ratios are real ones. The tokenizer is SmolLM2's BPE vocabulary and merges, read
from its GGUF file, with the pre-tokenizer of the family (`qwen2`, `llama-bpe`); Gemma 2
and Phi-3 take Gemma 3's SentencePiece vocabulary from the Gemma 3 test model instead.

  qwen2   Qwen2.5-0.5B's heads (14 query, 2 key/value, 7:1), QKV biases, NeoX RoPE,
          separate output head.
  qwen3   Qwen3-0.6B's heads (16 query, 8 key/value) with a query width (1024) wider than
          the hidden size (256), per-head Q/K RMSNorm, no biases, tied output head.
  llama   Llama 3.2's GQA ratio (4:1), Llama 3.1 RoPE scaling as `rope_freqs.weight`
          (factor 32, low/high frequency factors 1 and 4, original context 8192, computed
          as the converter does), tied output head, BOS added.
  gemma2  Gemma 2 2B's heads (8 query, 4 key/value, 256 wide), attention and final logit
          soft caps (50, 30), post-norms, every other layer sliding over a window of 32.
  phi3    Phi-4-mini's layout: fused QKV and gate-up, 3:1 GQA, 3/4 of each head rotated,
          LongRoPE (short and long factors, attn_factor) from an original context of 1024.
  qwen3moe  Qwen3-30B-A3B's routing scaled down: 4 of 16 experts of 256 per token, the
          router kept in F32 as the converter keeps it, Qwen 3's Q/K norms.

Written only when SYNTHETIC_ARCHS names them (they need another vocabulary, or are large):

  nomic-bert  nomic-embed-text's encoder (`NomicBertModel`) at small size: 12 heads of 16,
          fused QKV without biases, NeoX RoPE (base 1000) instead of position embeddings,
          SwiGLU feed-forward without biases, post-LayerNorms with biases, two token
          types, mean pooling; all-MiniLM-L6-v2's WordPiece vocabulary (its vocab.txt,
          from scripts/fetch-models), in F32 and Q8_0.
  qwen3moe-bench, qwen3-bench-active  the benchmark models below.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, GGUFWriter, LlamaFileType, MODEL_TENSOR, TENSOR_NAMES
from gguf.quants import quantize

MODELS = Path(os.environ.get("OLLAMA_TEST_MODELS", Path.home() / ".cache/ollamad/test-models"))
VOCAB_SOURCE = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = Path(os.environ.get("OLLAMA_SYNTHETIC_MODELS",
                                  Path.home() / ".cache/ollamad/synthetic"))

# The file types: (name in the file name, tensor type of the matrices, general.file_type).
TYPES = [
    ("F32", T.F32, LlamaFileType.ALL_F32),
    ("Q8_0", T.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    ("Q4_0", T.Q4_0, LlamaFileType.MOSTLY_Q4_0),
]


@dataclass
class Spec:
    """One synthetic architecture: its sizes and what its family's converter writes."""
    arch: str
    seed: int
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    context_length: int
    rope_theta: float
    rms_eps: float
    pre: str
    add_bos: bool
    tied: bool
    qkv_bias: bool = False
    qk_norm: bool = False
    # Llama 3.1's rope_scaling, written as rope_freqs.weight.
    llama3_rope: dict | None = None
    # Gemma 2: post-norms of attention and of the feed-forward network, soft caps and a
    # sliding window on every other layer.
    post_norms: bool = False
    attn_softcap: float | None = None
    final_softcap: float | None = None
    sliding_window: int | None = None
    # Phi-3: fused QKV and gate-up matrices, partial rotary (rope_dims of head_dim),
    # LongRoPE factors for contexts past orig_ctx.
    fused: bool = False
    rope_dims: int | None = None
    longrope_orig_ctx: int | None = None
    # Qwen 3 MoE: n_expert experts of n_ff_exp, n_expert_used per token.
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 0
    # "smollm2" (BPE, with `pre`) or "gemma3" (SentencePiece).
    vocab: str = "smollm2"
    # The file name's stem when not the architecture's (benchmark models).
    stem: str | None = None
    # The file types when not all of TYPES.
    types: tuple[str, ...] | None = None
    # Keys only some converters write.
    write_head_dim: bool = False
    write_rope_dim: bool = False
    write_vocab_size: bool = False
    extra: dict = field(default_factory=dict)
    # Encoders (nomic-bert): LayerNorm epsilon, token types and pooling type.
    norm_eps: float = 0.0
    n_token_types: int = 0
    pooling: gguf.PoolingType | None = None


SPECS = [
    Spec(arch="qwen2", seed=2002, n_layer=3, n_embd=448, n_ff=1216, n_head=14, n_head_kv=2,
         head_dim=32, context_length=32768, rope_theta=1_000_000.0, rms_eps=1e-6,
         pre="qwen2", add_bos=False, tied=False, qkv_bias=True),
    Spec(arch="qwen3", seed=3003, n_layer=3, n_embd=256, n_ff=768, n_head=16, n_head_kv=8,
         head_dim=64, context_length=40960, rope_theta=1_000_000.0, rms_eps=1e-6,
         pre="qwen2", add_bos=False, tied=True, qk_norm=True, write_head_dim=True),
    Spec(arch="llama", seed=3001, n_layer=3, n_embd=512, n_ff=1536, n_head=8, n_head_kv=2,
         head_dim=64, context_length=131072, rope_theta=500_000.0, rms_eps=1e-5,
         pre="llama-bpe", add_bos=True, tied=True, write_rope_dim=True, write_vocab_size=True,
         llama3_rope=dict(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192)),
    # Gemma 2 2B's head layout (8 query heads, 4 key/value, 256 wide), its soft caps (50 on
    # attention, 30 on the logits), post-norms, every other layer sliding: the window is
    # 32 here (4096 in the real model) so that a 100-token prompt crosses it.
    Spec(arch="gemma2", seed=2202, n_layer=3, n_embd=256, n_ff=640, n_head=8, n_head_kv=4,
         head_dim=256, context_length=8192, rope_theta=10_000.0, rms_eps=1e-6,
         pre="default", add_bos=True, tied=True, write_head_dim=True, post_norms=True,
         attn_softcap=50.0, final_softcap=30.0, sliding_window=32, vocab="gemma3"),
    # Phi-4-mini's layout (3:1 GQA, 128k context by LongRoPE from a shorter original one,
    # 3/4 of each head rotated) at small size: head 64, 48 rotated dimensions, original
    # context 1024 (so the 2048-token reference context takes the long factors), fused
    # QKV and gate-up. The sliding window of 2047 is written as Phi-3-mini's converter
    # writes it; llama.cpp ignores it for phi3.
    Spec(arch="phi3", seed=3303, n_layer=3, n_embd=384, n_ff=1024, n_head=6, n_head_kv=2,
         head_dim=64, context_length=32768, rope_theta=10_000.0, rms_eps=1e-5,
         pre="default", add_bos=True, tied=True, fused=True, rope_dims=48,
         longrope_orig_ctx=1024, sliding_window=2047, vocab="gemma3"),
    # Qwen3-30B-A3B's routing (8 of 128 experts) scaled down: 4 of 16 experts of 256,
    # Qwen 3's per-head Q/K norms, 8:1 GQA.
    Spec(arch="qwen3moe", seed=3330, n_layer=3, n_embd=256, n_ff=768, n_head=16,
         n_head_kv=2, head_dim=64, context_length=40960, rope_theta=1_000_000.0,
         rms_eps=1e-6, pre="qwen2", add_bos=False, tied=False, qk_norm=True,
         write_head_dim=True, n_expert=16, n_expert_used=4, n_ff_exp=256),
]

# Benchmark models, written only when SYNTHETIC_ARCHS names them (by stem): a Qwen 3 MoE
# whose total size is 8x its active size (12 layers of 128 experts of 256, 8 used, hidden
# 1024), and a dense Qwen 3 of the same active size (its network is as wide as the 8 chosen
# experts together), for decode speed against active parameters (docs/PERFORMANCE.md).
BENCH_SPECS = [
    Spec(arch="qwen3moe", stem="qwen3moe-bench", seed=4440, n_layer=12, n_embd=1024,
         n_ff=2048, n_head=16, n_head_kv=2, head_dim=64, context_length=40960,
         rope_theta=1_000_000.0, rms_eps=1e-6, pre="qwen2", add_bos=False, tied=True,
         qk_norm=True, write_head_dim=True, n_expert=128, n_expert_used=8, n_ff_exp=256,
         types=("Q4_0",)),
    Spec(arch="qwen3", stem="qwen3-bench-active", seed=4441, n_layer=12, n_embd=1024,
         n_ff=2048, n_head=16, n_head_kv=2, head_dim=64, context_length=40960,
         rope_theta=1_000_000.0, rms_eps=1e-6, pre="qwen2", add_bos=False, tied=True,
         qk_norm=True, write_head_dim=True, types=("Q4_0",)),
]

# Encoders, written only when SYNTHETIC_ARCHS names them: nomic-embed-text-v1.5's layout
# (NomicBertModel: 12 heads, rotary base 1000, context 2048, LayerNorm epsilon 1e-12) at
# hidden 192, three layers.
ENCODER_SPECS = [
    Spec(arch="nomic-bert", seed=5005, n_layer=3, n_embd=192, n_ff=512, n_head=12,
         n_head_kv=12, head_dim=16, context_length=2048, rope_theta=1000.0, rms_eps=0.0,
         pre="default", add_bos=True, tied=True, vocab="wordpiece", types=("F32", "Q8_0"),
         norm_eps=1e-12, n_token_types=2, pooling=gguf.PoolingType.MEAN),
]

# all-MiniLM-L6-v2's WordPiece vocabulary, for the encoders.
WORDPIECE_SOURCE = MODELS / "all-MiniLM-L6-v2" / "vocab.txt"

# Gemma 3's SentencePiece vocabulary, for the families whose own tokenizer is one.
GEMMA3_SOURCE = MODELS / "gemma-3-270m-q4_k_m.gguf"

# Tensors the converter keeps in F32 whatever the file type (the router).
# Tensors the converter keeps in F32 whatever the file type (the router, BERT's token
# types).
KEEP_F32 = ("ffn_gate_inp.weight", "token_types.weight")


def llama3_rope_factors(spec: Spec) -> np.ndarray:
    """The converter's `LlamaModel.generate_extra_tensors` for rope_type llama3."""
    p = spec.llama3_rope
    dim, base = spec.head_dim, spec.rope_theta
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    low_wavelen = p["original_max_position_embeddings"] / p["low_freq_factor"]
    high_wavelen = p["original_max_position_embeddings"] / p["high_freq_factor"]
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(p["factor"])
        else:
            smooth = ((p["original_max_position_embeddings"] / wavelen - p["low_freq_factor"])
                      / (p["high_freq_factor"] - p["low_freq_factor"]))
            factors.append(1 / ((1 - smooth) / p["factor"] + smooth))
    return np.array(factors, dtype=np.float32)


def read_gemma_vocab() -> dict:
    """Gemma 3's tokenizer fields, every `tokenizer.*` key of its file, as they are."""
    if not GEMMA3_SOURCE.exists():
        sys.exit(f"{GEMMA3_SOURCE} is missing: run scripts/fetch-models first")
    r = GGUFReader(GEMMA3_SOURCE)
    return {k: (f.contents(), f.types) for k, f in r.fields.items()
            if k.startswith("tokenizer.")}


def read_vocab() -> dict:
    """SmolLM2's tokenizer fields."""
    if not VOCAB_SOURCE.exists():
        sys.exit(f"{VOCAB_SOURCE} is missing: run scripts/fetch-models first")
    r = GGUFReader(VOCAB_SOURCE)

    def get(key):
        return r.fields[key].contents()

    return {
        "tokens": get("tokenizer.ggml.tokens"),
        "token_type": get("tokenizer.ggml.token_type"),
        "merges": get("tokenizer.ggml.merges"),
        "bos": get("tokenizer.ggml.bos_token_id"),
        "eos": get("tokenizer.ggml.eos_token_id"),
        "unk": get("tokenizer.ggml.unknown_token_id"),
        "pad": get("tokenizer.ggml.padding_token_id"),
        "chat_template": get("tokenizer.chat_template"),
    }


def read_wordpiece_vocab() -> dict:
    """MiniLM's WordPiece tokens in llama.cpp's phantom-space form, as its converter
    writes them (`BertModel.set_vocab`): a control token (`[CLS]`, bracketed but not
    `[unusedN]`) as it is, a continuation `##ing` as `ing`, a word-initial `play` as
    `\u2581play`."""
    if not WORDPIECE_SOURCE.exists():
        sys.exit(f"{WORDPIECE_SOURCE} is missing: run scripts/fetch-models first")
    raw = WORDPIECE_SOURCE.read_text(encoding="utf-8").split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    tokens, types = [], []
    for t in raw:
        control = len(t) > 2 and t.startswith("[") and t.endswith("]") \
            and not t.startswith("[unused")
        types.append(gguf.TokenType.CONTROL if control else gguf.TokenType.NORMAL)
        tokens.append(t if control else t[2:] if t.startswith("##") else "\u2581" + t)
    index = {t: i for i, t in enumerate(raw)}
    return {"tokens": tokens, "token_type": types, "cls": index["[CLS]"],
            "sep": index["[SEP]"], "pad": index["[PAD]"], "unk": index["[UNK]"],
            "mask": index["[MASK]"]}


def encoder_weights(spec: Spec, n_vocab: int) -> list[tuple[str, np.ndarray]]:
    """Every tensor of a nomic-bert encoder, with llama.cpp's names, as
    `NomicBertModel` converts them: no biases but the LayerNorms'."""
    rng = np.random.default_rng(spec.seed)

    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols)) / math.sqrt(cols)).astype(np.float32)

    def norm(prefix):
        return [(f"{prefix}.weight", (1.0 + 0.1 * rng.standard_normal(spec.n_embd)).astype(np.float32)),
                (f"{prefix}.bias", (0.1 * rng.standard_normal(spec.n_embd)).astype(np.float32))]

    def name(t, bid=None):
        return (TENSOR_NAMES[t].format(bid=bid) if bid is not None else TENSOR_NAMES[t]) + ".weight"

    d = spec.n_embd
    out = [(name(MODEL_TENSOR.TOKEN_EMBD), rng.standard_normal((n_vocab, d)).astype(np.float32)),
           (name(MODEL_TENSOR.TOKEN_TYPES),
            (0.5 * rng.standard_normal((spec.n_token_types, d))).astype(np.float32))]
    out += norm(TENSOR_NAMES[MODEL_TENSOR.TOKEN_EMBD_NORM])
    for il in range(spec.n_layer):
        out.append((name(MODEL_TENSOR.ATTN_QKV, il), matrix(3 * d, d)))
        out.append((name(MODEL_TENSOR.ATTN_OUT, il), matrix(d, d)))
        out += norm(TENSOR_NAMES[MODEL_TENSOR.ATTN_OUT_NORM].format(bid=il))
        out.append((name(MODEL_TENSOR.FFN_UP, il), matrix(spec.n_ff, d)))
        out.append((name(MODEL_TENSOR.FFN_GATE, il), matrix(spec.n_ff, d)))
        out.append((name(MODEL_TENSOR.FFN_DOWN, il), matrix(d, spec.n_ff)))
        out += norm(TENSOR_NAMES[MODEL_TENSOR.LAYER_OUT_NORM].format(bid=il))
    return out


def add_wordpiece_vocab(w: GGUFWriter, spec: Spec, vocab: dict) -> None:
    """The WordPiece fields as llama.cpp's `BertModel.set_vocab` writes them."""
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")
    w.add_token_list(vocab["tokens"])
    w.add_token_types(vocab["token_type"])
    w.add_token_type_count(spec.n_token_types)
    w.add_bos_token_id(vocab["cls"])
    w.add_eos_token_id(vocab["sep"])
    w.add_unk_token_id(vocab["unk"])
    w.add_sep_token_id(vocab["sep"])
    w.add_pad_token_id(vocab["pad"])
    w.add_mask_token_id(vocab["mask"])
    w.add_add_bos_token(True)
    w.add_add_eos_token(True)


def weights(spec: Spec, n_vocab: int) -> list[tuple[str, np.ndarray]]:
    """Every tensor of the model, f32, numpy shape (rows, cols) = ggml dims [cols, rows].

    Matrices are N(0, 1/fan_in) so activations keep their scale through the layers;
    norm weights are near 1 and biases small, so every term matters in the output. The
    embeddings are N(0, 0.01): small beside what the layers add, or a tied output head
    would find each token's own embedding in the final state and repeat it forever.
    """
    rng = np.random.default_rng(spec.seed)

    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols)) / math.sqrt(cols)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    def bias(n):
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    def name(t, bid=None, suffix="weight"):
        base = TENSOR_NAMES[t].format(bid=bid) if bid is not None else TENSOR_NAMES[t]
        return f"{base}.{suffix}"

    q_dim, kv_dim = spec.n_head * spec.head_dim, spec.n_head_kv * spec.head_dim
    # Gemma scales the embeddings by sqrt(n_embd) on the way in.
    embd_std = 0.1 / math.sqrt(spec.n_embd) if spec.arch.startswith("gemma") else 0.1
    out = [(name(MODEL_TENSOR.TOKEN_EMBD),
            (embd_std * rng.standard_normal((n_vocab, spec.n_embd))).astype(np.float32))]
    if spec.llama3_rope:
        out.append((name(MODEL_TENSOR.ROPE_FREQS), llama3_rope_factors(spec)))
    if spec.longrope_orig_ctx:
        # LongRoPE's per-pair factors: near 1 for the short context, growing with the
        # wavelength for the long one (as in Phi-3's config.json).
        n = spec.rope_dims // 2
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        long = (1.0 + 15.0 * ramp ** 2 + 0.05 * rng.random(n)).astype(np.float32)
        short = (1.0 + 0.05 * rng.random(n)).astype(np.float32)
        out.append((name(MODEL_TENSOR.ROPE_FACTORS_LONG), long))
        out.append((name(MODEL_TENSOR.ROPE_FACTORS_SHORT), short))
    for il in range(spec.n_layer):
        out.append((name(MODEL_TENSOR.ATTN_NORM, il), norm(spec.n_embd)))
        qkv = [(MODEL_TENSOR.ATTN_Q, q_dim), (MODEL_TENSOR.ATTN_K, kv_dim),
               (MODEL_TENSOR.ATTN_V, kv_dim)]
        if spec.fused:
            out.append((name(MODEL_TENSOR.ATTN_QKV, il), matrix(q_dim + 2 * kv_dim, spec.n_embd)))
        else:
            for t, rows in qkv:
                out.append((name(t, il), matrix(rows, spec.n_embd)))
                if spec.qkv_bias:
                    out.append((name(t, il, "bias"), bias(rows)))
        if spec.qk_norm:
            out.append((name(MODEL_TENSOR.ATTN_Q_NORM, il), norm(spec.head_dim)))
            out.append((name(MODEL_TENSOR.ATTN_K_NORM, il), norm(spec.head_dim)))
        out.append((name(MODEL_TENSOR.ATTN_OUT, il), matrix(spec.n_embd, q_dim)))
        if spec.post_norms:
            out.append((name(MODEL_TENSOR.ATTN_POST_NORM, il), norm(spec.n_embd)))
        out.append((name(MODEL_TENSOR.FFN_NORM, il), norm(spec.n_embd)))
        if spec.n_expert:
            e, f = spec.n_expert, spec.n_ff_exp
            # The router's logits spread over a few units, so the choice of experts
            # varies from token to token.
            out.append((name(MODEL_TENSOR.FFN_GATE_INP, il), 4.0 * matrix(e, spec.n_embd)))
            experts = lambda rows, cols: np.stack([matrix(rows, cols) for _ in range(e)])
            out.append((name(MODEL_TENSOR.FFN_GATE_EXP, il), experts(f, spec.n_embd)))
            out.append((name(MODEL_TENSOR.FFN_DOWN_EXP, il), experts(spec.n_embd, f)))
            out.append((name(MODEL_TENSOR.FFN_UP_EXP, il), experts(f, spec.n_embd)))
        elif spec.fused:
            # Gate rows first, then up rows, as Phi-3's gate_up_proj.
            out.append((name(MODEL_TENSOR.FFN_DOWN, il), matrix(spec.n_embd, spec.n_ff)))
            out.append((name(MODEL_TENSOR.FFN_UP, il), matrix(2 * spec.n_ff, spec.n_embd)))
        else:
            out.append((name(MODEL_TENSOR.FFN_GATE, il), matrix(spec.n_ff, spec.n_embd)))
            out.append((name(MODEL_TENSOR.FFN_DOWN, il), matrix(spec.n_embd, spec.n_ff)))
            out.append((name(MODEL_TENSOR.FFN_UP, il), matrix(spec.n_ff, spec.n_embd)))
        if spec.post_norms:
            out.append((name(MODEL_TENSOR.FFN_POST_NORM, il), norm(spec.n_embd)))
    out.append((name(MODEL_TENSOR.OUTPUT_NORM), norm(spec.n_embd)))
    if not spec.tied:
        out.append((name(MODEL_TENSOR.OUTPUT), matrix(n_vocab, spec.n_embd)))
    return out


def vocab_size(vocab: dict) -> int:
    return len(vocab["tokens"]) if "tokens" in vocab else len(vocab["tokenizer.ggml.tokens"][0])


def add_bpe_vocab(w: GGUFWriter, spec: Spec, vocab: dict) -> None:
    """SmolLM2's BPE vocabulary with the family's pre-tokenizer."""
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(spec.pre)
    w.add_token_list(vocab["tokens"])
    w.add_token_types(vocab["token_type"])
    w.add_token_merges(vocab["merges"])
    w.add_bos_token_id(vocab["bos"])
    w.add_eos_token_id(vocab["eos"])
    w.add_unk_token_id(vocab["unk"])
    w.add_pad_token_id(vocab["pad"])
    w.add_add_bos_token(spec.add_bos)
    w.add_chat_template(vocab["chat_template"])


def add_gemma_vocab(w: GGUFWriter, vocab: dict) -> None:
    """Gemma 3's SentencePiece fields, copied key for key, and SmolLM2's chat template
    (Gemma 3's file carries none; the template only shapes chat prompts)."""
    for key, (value, types) in vocab.items():
        if key == "tokenizer.chat_template":
            continue
        if types[0] == gguf.GGUFValueType.ARRAY:
            w.add_array(key, value)
        else:
            w.add_key_value(key, value, types[0])
    w.add_chat_template(read_vocab()["chat_template"])


def write(spec: Spec, vocab: dict, tensors, type_name: str, qtype: T,
          file_type: LlamaFileType, out_dir: Path) -> Path:
    path = out_dir / f"{spec.stem or spec.arch}-synthetic-{type_name}.gguf"
    # Written aside and renamed, so a reader never sees half a file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    w = GGUFWriter(tmp, spec.arch)
    w.add_type(gguf.GGUFType.MODEL)
    # Not "phi3": llama.cpp gives Phi-3's own special tokens extra attributes when the
    # name says phi3, and Gemma 3's vocabulary has none of them.
    w.add_name(f"Synthetic {spec.arch.replace('phi3', 'phi')} {type_name}")
    w.add_block_count(spec.n_layer)
    w.add_context_length(spec.context_length)
    w.add_embedding_length(spec.n_embd)
    w.add_feed_forward_length(spec.n_ff)
    w.add_head_count(spec.n_head)
    if spec.pooling is None:
        w.add_head_count_kv(spec.n_head_kv)
    w.add_rope_freq_base(spec.rope_theta)
    if spec.pooling is None:
        w.add_layer_norm_rms_eps(spec.rms_eps)
    else:
        # BertModel.set_gguf_parameters: no head_count_kv, LayerNorm, both ways, pooled.
        w.add_layer_norm_eps(spec.norm_eps)
        w.add_causal_attention(False)
        w.add_pooling_type(spec.pooling)
    if spec.write_head_dim:
        w.add_key_length(spec.head_dim)
        w.add_value_length(spec.head_dim)
    w.add_file_type(file_type)
    if spec.write_vocab_size:
        w.add_vocab_size(vocab_size(vocab))
    if spec.write_rope_dim:
        w.add_rope_dimension_count(spec.head_dim)
    if spec.rope_dims:
        w.add_rope_dimension_count(spec.rope_dims)
    if spec.attn_softcap:
        w.add_attn_logit_softcapping(spec.attn_softcap)
    if spec.final_softcap:
        w.add_final_logit_softcapping(spec.final_softcap)
    if spec.sliding_window is not None:
        w.add_sliding_window(spec.sliding_window)
    if spec.longrope_orig_ctx:
        # Phi3MiniModel: attn_factor for "longrope" scaling.
        scale = spec.context_length / spec.longrope_orig_ctx
        w.add_rope_scaling_orig_ctx_len(spec.longrope_orig_ctx)
        w.add_rope_scaling_attn_factors(
            math.sqrt(1 + math.log(scale) / math.log(spec.longrope_orig_ctx)))
    if spec.n_expert:
        w.add_expert_count(spec.n_expert)
        w.add_expert_used_count(spec.n_expert_used)
        w.add_expert_feed_forward_length(spec.n_ff_exp)
    if spec.vocab == "gemma3":
        add_gemma_vocab(w, vocab)
    elif spec.vocab == "wordpiece":
        add_wordpiece_vocab(w, spec, vocab)
    else:
        add_bpe_vocab(w, spec, vocab)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, data in tensors:
        if data.ndim >= 2 and qtype != T.F32 and not name.endswith(KEEP_F32):
            w.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)
    return path


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    only = os.environ.get("SYNTHETIC_ARCHS")
    asked = only.replace(",", " ").split() if only else []
    on_request = [s for s in BENCH_SPECS + ENCODER_SPECS if (s.stem or s.arch) in asked]
    for spec in SPECS + on_request:
        if only and (spec.stem or spec.arch) not in asked:
            continue
        if spec.vocab == "wordpiece":
            vocab = read_wordpiece_vocab()
            tensors = encoder_weights(spec, vocab_size(vocab))
        else:
            vocab = read_gemma_vocab() if spec.vocab == "gemma3" else read_vocab()
            tensors = weights(spec, vocab_size(vocab))
        for type_name, qtype, file_type in TYPES:
            if spec.types and type_name not in spec.types:
                continue
            path = write(spec, vocab, tensors, type_name, qtype, file_type, out_dir)
            print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
