#!/usr/bin/env python3
"""Write a few small GGUF files, made by the `gguf` PyPI package (an independent writer),
into DIR as seeds for the gguf_parse fuzz target: every metadata type, nested arrays,
several tensor types, and a non-default alignment."""

import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter


def write(path: Path, alignment: int | None, n_tensors: int) -> None:
    w = GGUFWriter(str(path), "llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("llama.block_count", 2)
    w.add_int32("t.i32", -5)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_bool("t.bool", True)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_uint64("t.u64", 2**40)
    w.add_int64("t.i64", -(2**40))
    w.add_float64("t.f64", 0.5)
    w.add_array("tokenizer.ggml.tokens", ["a", "b", "<s>"])
    w.add_array("tokenizer.ggml.scores", [0.0, -1.0, -2.0])
    w.add_array("t.nested", [[1, 2], ["x"], [[0.5]]])
    rng = np.random.default_rng(n_tensors)
    shapes = [
        ("token_embd.weight", (2, 32), GGMLQuantizationType.Q8_0, 34),
        ("norm.weight", (8,), GGMLQuantizationType.F32, None),
        ("blk.0.w", (1, 256), GGMLQuantizationType.Q4_K, 144),
        ("blk.1.w", (3, 4), GGMLQuantizationType.F16, None),
    ]
    for name, shape, ty, block_bytes in shapes[:n_tensors]:
        if block_bytes is None:
            dtype = np.float32 if ty == GGMLQuantizationType.F32 else np.float16
            w.add_tensor(name, rng.standard_normal(shape).astype(dtype))
        else:
            blocks = int(np.prod(shape)) // (256 if ty == GGMLQuantizationType.Q4_K else 32)
            raw = rng.integers(0, 256, size=(shape[0], blocks // shape[0] * block_bytes), dtype=np.uint8)
            w.add_tensor(name, raw, raw_dtype=ty)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    write(out / "all-types.gguf", None, 4)
    write(out / "align-64.gguf", 64, 2)
    write(out / "no-tensors.gguf", None, 0)


if __name__ == "__main__":
    main()
