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
from its GGUF file, with the pre-tokenizer of the family (`qwen2`, `llama-bpe`).

  qwen2   Qwen2.5-0.5B's heads (14 query, 2 key/value, 7:1), QKV biases, NeoX RoPE,
          separate output head.
  qwen3   Qwen3-0.6B's heads (16 query, 8 key/value) with a query width (1024) wider than
          the hidden size (256), per-head Q/K RMSNorm, no biases, tied output head.
  llama   Llama 3.2's GQA ratio (4:1), Llama 3.1 RoPE scaling as `rope_freqs.weight`
          (factor 32, low/high frequency factors 1 and 4, original context 8192, computed
          as the converter does), tied output head, BOS added.
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
    # Keys only some converters write.
    write_head_dim: bool = False
    write_rope_dim: bool = False
    write_vocab_size: bool = False
    extra: dict = field(default_factory=dict)


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
]


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
    out = [(name(MODEL_TENSOR.TOKEN_EMBD),
            (0.1 * rng.standard_normal((n_vocab, spec.n_embd))).astype(np.float32))]
    if spec.llama3_rope:
        out.append((name(MODEL_TENSOR.ROPE_FREQS), llama3_rope_factors(spec)))
    for il in range(spec.n_layer):
        out.append((name(MODEL_TENSOR.ATTN_NORM, il), norm(spec.n_embd)))
        for t, rows in [(MODEL_TENSOR.ATTN_Q, q_dim), (MODEL_TENSOR.ATTN_K, kv_dim),
                        (MODEL_TENSOR.ATTN_V, kv_dim)]:
            out.append((name(t, il), matrix(rows, spec.n_embd)))
            if spec.qkv_bias:
                out.append((name(t, il, "bias"), bias(rows)))
        if spec.qk_norm:
            out.append((name(MODEL_TENSOR.ATTN_Q_NORM, il), norm(spec.head_dim)))
            out.append((name(MODEL_TENSOR.ATTN_K_NORM, il), norm(spec.head_dim)))
        out.append((name(MODEL_TENSOR.ATTN_OUT, il), matrix(spec.n_embd, q_dim)))
        out.append((name(MODEL_TENSOR.FFN_NORM, il), norm(spec.n_embd)))
        out.append((name(MODEL_TENSOR.FFN_GATE, il), matrix(spec.n_ff, spec.n_embd)))
        out.append((name(MODEL_TENSOR.FFN_DOWN, il), matrix(spec.n_embd, spec.n_ff)))
        out.append((name(MODEL_TENSOR.FFN_UP, il), matrix(spec.n_ff, spec.n_embd)))
    out.append((name(MODEL_TENSOR.OUTPUT_NORM), norm(spec.n_embd)))
    if not spec.tied:
        out.append((name(MODEL_TENSOR.OUTPUT), matrix(n_vocab, spec.n_embd)))
    return out


def write(spec: Spec, vocab: dict, tensors, type_name: str, qtype: T,
          file_type: LlamaFileType, out_dir: Path) -> Path:
    path = out_dir / f"{spec.arch}-synthetic-{type_name}.gguf"
    # Written aside and renamed, so a reader never sees half a file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    w = GGUFWriter(tmp, spec.arch)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(f"Synthetic {spec.arch} {type_name}")
    w.add_block_count(spec.n_layer)
    w.add_context_length(spec.context_length)
    w.add_embedding_length(spec.n_embd)
    w.add_feed_forward_length(spec.n_ff)
    w.add_head_count(spec.n_head)
    w.add_head_count_kv(spec.n_head_kv)
    w.add_rope_freq_base(spec.rope_theta)
    w.add_layer_norm_rms_eps(spec.rms_eps)
    if spec.write_head_dim:
        w.add_key_length(spec.head_dim)
        w.add_value_length(spec.head_dim)
    w.add_file_type(file_type)
    if spec.write_vocab_size:
        w.add_vocab_size(len(vocab["tokens"]))
    if spec.write_rope_dim:
        w.add_rope_dimension_count(spec.head_dim)
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
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, data in tensors:
        if data.ndim == 2 and qtype != T.F32:
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
    vocab = read_vocab()
    only = os.environ.get("SYNTHETIC_ARCHS")
    for spec in SPECS:
        if only and spec.arch not in only.split(","):
            continue
        tensors = weights(spec, len(vocab["tokens"]))
        for type_name, qtype, file_type in TYPES:
            path = write(spec, vocab, tensors, type_name, qtype, file_type, out_dir)
            print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
