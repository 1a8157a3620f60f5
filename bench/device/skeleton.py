#!/usr/bin/env python3
"""Make a small "skeleton" of a GGUF file: every metadata key/value (the KV section's
bytes verbatim), every tensor info (name, shape, type) and, per tensor, a sample of its
real bytes (the first SAMPLE bytes, rounded down to whole quant blocks).

Skeleton layout (little-endian):
    b"GGSKEL01"  u64 json_len  json(utf-8)  kv_blob  samples...
json: {"version", "n_kv", "alignment", "kv_keys", "kv_len",
       "tensors": [{"name", "dims" (GGUF order, ne0 first), "type", "type_name",
                    "nbytes", "offset" (original, relative to data start), "sample_len"}]}
Samples follow kv_blob in tensor order.

Uses the `gguf` package (0.19.0 here); inflate.py needs only python3 + numpy.

usage: skeleton.py IN.gguf OUT.skel[.gz] [--sample 16384]   (.gz: gzip-compressed)
"""
import argparse
import gzip
import json
import struct

import gguf
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--sample", type=int, default=16384)
    a = ap.parse_args()

    r = gguf.GGUFReader(a.src)
    raw = np.memmap(a.src, dtype=np.uint8, mode="r")
    version = int(struct.unpack_from("<I", raw, 4)[0])
    assert bytes(raw[:4]) == b"GGUF" and version == 3, "GGUF v3 only"
    n_tensors, n_kv = struct.unpack_from("<QQ", raw, 8)
    kv_start = 24
    kv_end = r.tensors[0].field.offset if r.tensors else r.data_offset
    kv_keys = [f.name for f in r.fields.values() if not f.name.startswith("GGUF.")]
    assert len(kv_keys) == n_kv, (len(kv_keys), n_kv)
    assert len(r.tensors) == n_tensors

    tensors = []
    samples = []
    for t in r.tensors:
        qt = t.tensor_type
        bsz, tsz = gguf.GGML_QUANT_SIZES[qt]
        nbytes = int(t.n_bytes)
        assert nbytes % tsz == 0
        n = min(nbytes, max(tsz, (a.sample // tsz) * tsz))
        start = int(t.data_offset)  # absolute file offset
        samples.append(bytes(raw[start:start + n]))
        tensors.append({
            "name": t.name,
            "dims": [int(d) for d in t.shape],  # GGUF order (ne0 first)
            "type": int(qt),
            "type_name": qt.name,
            "nbytes": nbytes,
            "offset": int(t.data_offset) - r.data_offset,
            "sample_len": n,
        })

    head = {
        "version": version,
        "n_kv": int(n_kv),
        "alignment": int(r.alignment),
        "kv_keys": kv_keys,
        "kv_len": kv_end - kv_start,
        "tensors": tensors,
        "source": a.src.rsplit("/", 1)[-1],
    }
    js = json.dumps(head, separators=(",", ":")).encode()
    opener = (lambda p, m: gzip.GzipFile(p, m, compresslevel=9, mtime=0)) if a.dst.endswith(".gz") else open
    with opener(a.dst, "wb") as f:
        f.write(b"GGSKEL01")
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        f.write(bytes(raw[kv_start:kv_end]))
        for s in samples:
            f.write(s)
    tot = sum(t["nbytes"] for t in tensors)
    print(f"{a.dst}: {n_kv} kv ({kv_end - kv_start} B), {n_tensors} tensors "
          f"({tot} B data, {sum(map(len, samples))} B sampled)")


if __name__ == "__main__":
    main()
