#!/usr/bin/env python3
"""Writes the reference files that kernels/tests/it/ checks our quantization against.

The references come from the `gguf` PyPI package (gguf-py, llama.cpp's own Python
implementation of the GGML block formats), an implementation independent of ours:

  pip install -r scripts/requirements.txt
  scripts/fetch-models                # the two real models
  python3 scripts/make-quant-refs.py  # writes kernels/tests/data/*.qref

Three kinds of case:
  dequant-<type>-<model>   raw blocks from the first rows of a real tensor of a real model
                           (GGUFReader), with gguf-py's `dequantize` of them
  dequant-<type>-random    random blocks with sane f16 scales (fixed seed), for the types
                           the two models do not carry, and gguf-py's `dequantize`
  quant-<type>-<pattern>   f32 rows (awkward values, fixed seed) with gguf-py's `quantize`
                           bytes, for every type gguf-py can quantize

File format (`.qref`, little-endian), one case per file:
  magic      4 bytes  b"QREF"
  version    u32      1
  ggml_type  u32      the GGML type id (as in a GGUF tensor record)
  kind       u32      0: dequantization (bytes are the input, values the expected output)
                      1: quantization (values are the input, bytes the expected output)
  n_values   u32      number of f32 values
  n_bytes    u32      number of block bytes
  name_len   u32      length of the provenance text
  name       bytes    UTF-8 provenance (model file and tensor, or generator and seed)
  bytes      n_bytes  the blocks
  values     f32 x n_values
The test treats the set of files listed in kernels/tests/it/refs.rs as required, so a
missing file fails the test rather than skipping it.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "kernels" / "tests" / "data"
MODELS = Path(os.environ.get("OLLAMA_TEST_MODELS", Path.home() / ".cache/ollamad/test-models"))
SMOLLM = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA = "gemma-3-270m-q4_k_m.gguf"
SEED = 20240531

# (model, tensor, type, rows): the first `rows` rows of a tensor of each type each model uses.
REAL = [
    (SMOLLM, "blk.0.ffn_down.weight", T.Q4_1, 2),
    (SMOLLM, "token_embd.weight", T.Q8_0, 4),
    (SMOLLM, "blk.0.attn_norm.weight", T.F32, 1),
    (GEMMA, "blk.0.attn_output.weight", T.Q4_K, 8),
    (GEMMA, "blk.0.ffn_down.weight", T.Q6_K, 4),
    (GEMMA, "blk.0.attn_q.weight", T.Q5_0, 3),
    (GEMMA, "blk.0.attn_v.weight", T.Q8_0, 3),
    (GEMMA, "output_norm.weight", T.F32, 1),
]

# Types with random blocks, and the byte offsets of their f16 scale fields in one block.
RANDOM = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
    T.IQ4_NL: [0],
}

QUANTIZABLE = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.F16, T.BF16]


def write_case(name: str, qtype: T, kind: int, values: np.ndarray, blocks: np.ndarray, origin: str) -> None:
    values = np.ascontiguousarray(values, dtype="<f4").ravel()
    raw = np.ascontiguousarray(blocks).view(np.uint8).ravel().tobytes()
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    assert values.size % block_size == 0 and len(raw) == values.size // block_size * type_size, name
    text = origin.encode()
    header = b"QREF" + struct.pack("<6I", 1, int(qtype), kind, values.size, len(raw), len(text))
    (OUT / f"{name}.qref").write_bytes(header + text + raw + values.tobytes())


def sane_f16(rng: np.random.Generator, n: int) -> np.ndarray:
    """Finite f16 scales of either sign over many binades, a few zeros and subnormals."""
    mag = np.exp2(rng.uniform(-20, 4, n)).astype(np.float16)
    sign = np.where(rng.random(n) < 0.3, -1, 1).astype(np.float16)
    out = mag * sign
    out[rng.random(n) < 0.05] = 0
    return out


def real_cases() -> None:
    readers = {}
    for model, tensor, qtype, rows in REAL:
        if model not in readers:
            path = MODELS / model
            if not path.exists():
                sys.exit(f"make-quant-refs: {path} is missing; run scripts/fetch-models first")
            readers[model] = GGUFReader(path)
        found = [t for t in readers[model].tensors if t.name == tensor]
        assert found and found[0].tensor_type == qtype, (model, tensor)
        data = found[0].data
        data = data.reshape(1, -1) if data.ndim == 1 else data
        raw = np.ascontiguousarray(data[:rows])
        values = dequantize(raw, qtype)
        short = "smollm2" if model == SMOLLM else "gemma3"
        write_case(f"dequant-{qtype.name}-{short}", qtype, 0, values, raw, f"{model} {tensor} rows 0..{rows}")


def random_cases(rng: np.random.Generator) -> None:
    for qtype, scale_offsets in RANDOM.items():
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        n_blocks = 16 if block_size == 256 else 64
        raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
        for off in scale_offsets:
            raw[:, off:off + 2] = sane_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
        write_case(f"dequant-{qtype.name}-random", qtype, 0, dequantize(raw, qtype), raw,
                   f"random blocks, seed {SEED}")

    # Float types: every class of value but NaN (NaN payloads are not part of the contract).
    bits = rng.integers(0, 1 << 16, size=4096, dtype=np.uint16)
    for qtype, nan in [(T.F16, lambda b: (b & 0x7C00) == 0x7C00), (T.BF16, lambda b: (b & 0x7F80) == 0x7F80)]:
        chosen = bits[~nan(bits)][:2048].copy()
        inf = 0x7C00 if qtype == T.F16 else 0x7F80
        chosen[:6] = [0x0000, 0x8000, 0x0001, 0x8001, inf, inf | 0x8000]
        write_case(f"dequant-{qtype.name}-random", qtype, 0, dequantize(chosen.view(np.uint8), qtype),
                   chosen, f"random bits (no NaN), seed {SEED}")


def awkward_rows(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Rows of 32-value blocks that stress the rounding rules, by name."""
    b = 32
    rows = {}
    rows["normal"] = rng.normal(0, 1, 8 * b)
    rows["zeros"] = np.zeros(2 * b)
    rows["constant"] = np.concatenate([np.full(b, 0.7), np.full(b, -3.25), np.full(b, 1e-3)])
    # Ties: blocks whose extremes make the scale a power of two, so that x * id lands
    # exactly on halves (Q8_0's roundf) or x * id + 8.5 / 16.5 / 0.5 on integers (the
    # truncating 4- and 5-bit quantizers).
    ties = []
    for top, unit in [(127, 1), (-127, 1), (254, 2), (8, 1), (-8, 1), (16, 2), (-16, 1), (32, 2)]:
        k = rng.integers(-abs(top) // unit, abs(top) // unit, b)
        blk = ((k + 0.5) * unit).clip(-abs(top) + 0.5, abs(top) - 0.5)
        blk[3] = top
        ties.append(blk)
    for lo, hi, unit in [(0, 15, 1), (0, 31, 1), (0, 30, 2), (-8, 7, 1), (-16, 15, 1)]:
        blk = (rng.integers(lo // unit, hi // unit, b) + 0.5) * unit
        blk = blk.clip(lo + 0.5, hi - 0.5)
        blk[[2, 7]] = [lo, hi]
        ties.append(blk)
    rows["ties"] = np.concatenate(ties)
    # The signed maximum: equal magnitudes of both signs (the first wins), negative extremes.
    sign = np.tile(rng.normal(0, 1, b), 3)
    sign[[0, 40, 70]] = 5.0
    sign[[10, 33, 90]] = -5.0
    rows["signed-max"] = sign
    rows["large"] = rng.normal(0, 1, 4 * b) * np.repeat([1e3, 3e4, 6e4, 1e6], b)
    rows["small"] = rng.normal(0, 1, 4 * b) * np.repeat([1e-4, 1e-6, 1e-8, 1e-12], b)
    rows["positive"] = rng.uniform(0.5, 2.0, 4 * b)
    spike = np.zeros(4 * b)
    spike[[5, 37, 70, 127]] = [3.0, -0.001, 1e5, -7.0]
    rows["spike"] = spike
    mags = np.exp(rng.uniform(np.log(1e-3), np.log(1e3), 8 * b))
    rows["log-uniform"] = mags * np.where(rng.random(8 * b) < 0.5, -1, 1)
    return {k: v.astype(np.float32) for k, v in rows.items()}


def float_rows() -> np.ndarray:
    """Values whose F16 and BF16 rounding is delicate: ties, subnormals, overflow."""
    f16_ties = [1 + 2**-11, 1 + 3 * 2**-11, -(1 + 2**-11), 2**-24, 2**-25, 3 * 2**-25, 65504, 65519, 65520, 1e5]
    bf16_ties = np.array([0x3F808000, 0x3F818000, 0x3F808001, 0x7F7F8000, 0x00008000, 0x80018000], dtype=np.uint32)
    extra = [0.0, -0.0, np.inf, -np.inf, 1e-45, 3.4e38]
    return np.concatenate([np.array(f16_ties + extra, dtype=np.float32), bf16_ties.view(np.float32)])


def quant_cases(rng: np.random.Generator) -> None:
    rows = awkward_rows(rng)
    for model, tensor, _ in [(GEMMA, "output_norm.weight", None)]:
        data = [t for t in GGUFReader(MODELS / model).tensors if t.name == tensor][0].data
        rows["gemma3-norm"] = np.asarray(data, dtype=np.float32)
    for qtype in QUANTIZABLE:
        for name, row in rows.items():
            if qtype in (T.F16, T.BF16) and name in ("zeros", "constant"):
                continue
            write_case(f"quant-{qtype.name}-{name}", qtype, 1, row, quantize(row, qtype),
                       f"{name} row, seed {SEED}")
        if qtype in (T.F16, T.BF16):
            row = float_rows()
            write_case(f"quant-{qtype.name}-rounding", qtype, 1, row, quantize(row, qtype), "rounding edge cases")


def main() -> None:
    # Overflow to f16 infinity is intended (the "large" rows); numpy warns about it.
    np.seterr(over="ignore")
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.qref"):
        old.unlink()
    rng = np.random.default_rng(SEED)
    real_cases()
    random_cases(rng)
    quant_cases(rng)
    total = sum(p.stat().st_size for p in OUT.glob("*.qref"))
    print(f"make-quant-refs: {len(list(OUT.glob('*.qref')))} files, {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
