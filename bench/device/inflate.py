#!/usr/bin/env python3
"""Rebuild a full-size GGUF v3 from a skeleton made by skeleton.py.

Same metadata (the KV section bytes verbatim), same tensor infos (names, shapes, types,
order, offsets) and same alignment as the original; each tensor's data is its real-bytes
sample tiled to full size (samples are whole quant blocks, so every block is a real one).

Needs python3 + numpy only (no `gguf` package): the GGUF writer is below.
usage: inflate.py IN.skel[.gz] OUT.gguf
"""
import gzip
import json
import struct
import sys

import numpy as np

# GGUF metadata value types -> struct format (None: string/array)
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?",
           10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def _skip_value(buf, off, vtype):
    """Return offset past one value of type vtype at off (and the value for scalars/strings)."""
    if vtype in _SCALAR:
        fmt = "<" + _SCALAR[vtype]
        return off + struct.calcsize(fmt), struct.unpack_from(fmt, buf, off)[0]
    if vtype == _STRING:
        (n,) = struct.unpack_from("<Q", buf, off)
        return off + 8 + n, bytes(buf[off + 8:off + 8 + n])
    if vtype == _ARRAY:
        etype, n = struct.unpack_from("<IQ", buf, off)
        off += 12
        if etype in _SCALAR:
            return off + n * struct.calcsize("<" + _SCALAR[etype]), None
        for _ in range(n):
            off, _v = _skip_value(buf, off, etype)
        return off, None
    raise ValueError(f"bad GGUF value type {vtype}")


def parse_kv(blob, n_kv):
    """Parse the KV section; return {key: value-or-None (arrays)} and check it is exact."""
    out, off = {}, 0
    for _ in range(n_kv):
        (klen,) = struct.unpack_from("<Q", blob, off)
        key = bytes(blob[off + 8:off + 8 + klen]).decode("utf-8")
        off += 8 + klen
        (vtype,) = struct.unpack_from("<I", blob, off)
        off, val = _skip_value(blob, off + 4, vtype)
        out[key] = val
    if off != len(blob):
        raise ValueError(f"KV section: parsed {off} of {len(blob)} bytes")
    return out


def _gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _pad(n, align):
    return (align - n % align) % align


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    opener = gzip.open if src.endswith(".gz") else open
    with opener(src, "rb") as f:
        skel = f.read()
    assert skel[:8] == b"GGSKEL01", "not a skeleton"
    (jlen,) = struct.unpack_from("<Q", skel, 8)
    head = json.loads(skel[16:16 + jlen])
    pos = 16 + jlen
    kv_blob = skel[pos:pos + head["kv_len"]]
    pos += head["kv_len"]

    kv = parse_kv(kv_blob, head["n_kv"])
    assert list(kv) == head["kv_keys"], "KV keys differ from the skeleton's list"
    align = int(kv.get("general.alignment") or 32)
    assert align == head["alignment"], (align, head["alignment"])

    tensors = head["tensors"]
    # tensor infos, offsets laid out as GGUF writers do (each aligned)
    infos, off = [], 0
    for t in tensors:
        off += _pad(off, align)
        if off != t["offset"]:
            raise ValueError(f"{t['name']}: offset {off} != original {t['offset']}")
        infos.append(_gguf_str(t["name"]) + struct.pack("<I", len(t["dims"]))
                     + struct.pack(f"<{len(t['dims'])}Q", *t["dims"])
                     + struct.pack("<IQ", t["type"], off))
        off += t["nbytes"]

    header = (b"GGUF" + struct.pack("<IQQ", head["version"], len(tensors), head["n_kv"])
              + kv_blob + b"".join(infos))
    header += b"\0" * _pad(len(header), align)

    with open(dst, "wb") as f:
        f.write(header)
        written = 0
        for t in tensors:
            p = _pad(written, align)
            if p:
                f.write(b"\0" * p)
                written += p
            sample = np.frombuffer(skel, dtype=np.uint8, count=t["sample_len"], offset=pos)
            pos += t["sample_len"]
            n = t["nbytes"]
            reps = -(-n // len(sample))
            # tile in chunks to bound memory
            chunk_reps = max(1, (64 << 20) // len(sample))
            left = n
            while left:
                k = min(reps, chunk_reps)
                data = np.tile(sample, k)[:left]
                f.write(data.tobytes())
                left -= len(data)
            written += n
    assert pos == len(skel), (pos, len(skel))
    print(f"{dst}: {len(tensors)} tensors, {head['n_kv']} kv, alignment {align}, "
          f"{len(header) + written} bytes")


if __name__ == "__main__":
    main()
