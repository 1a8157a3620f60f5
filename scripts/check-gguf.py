#!/usr/bin/env python3
"""Read a GGUF file with the `gguf` PyPI package (llama.cpp's own Python reader) and print
what it sees as one JSON object, so tests can compare it with this project's reader:

  {"version", "alignment", "data_offset",
   "metadata": [{"key", "type", "element_type", "value"}, ...]   (file order),
   "tensors": [{"name", "type", "type_id", "shape", "n_elements", "n_bytes",
                "offset", "data"?}, ...]}

Types are GGUF value type ids (4 = u32, 8 = string, 9 = array, ...). "shape" is in ggml
order (ne0 first). "value" is null for nested arrays, whose contents the package does
not decode. With --data, each tensor's bytes are included as hex (for small files only).

Usage: scripts/check-gguf.py [--data] FILE
"""

import json
import sys

try:
    from gguf import GGUFReader, GGUFValueType
except ImportError:
    sys.exit(
        "check-gguf.py: the Python `gguf` package is missing: "
        "pip install -r scripts/requirements.txt"
    )


def field_json(field):
    types = [int(t) for t in field.types]
    main = field.types[0]
    element = None
    value = None
    if main == GGUFValueType.ARRAY:
        element = types[1] if len(types) > 1 else None
        nested = element == int(GGUFValueType.ARRAY)
        value = None if nested else field.contents()
        if element is None:
            value = []
    else:
        value = field.contents()
    return {"key": field.name, "type": int(main), "element_type": element, "value": value}


def main() -> None:
    args = sys.argv[1:]
    with_data = "--data" in args
    files = [a for a in args if a != "--data"]
    if len(files) != 1:
        sys.exit("usage: check-gguf.py [--data] FILE")
    reader = GGUFReader(files[0], "r")
    metadata = [
        field_json(field)
        for name, field in reader.fields.items()
        if not name.startswith("GGUF.")
    ]
    tensors = []
    for tensor in reader.tensors:
        entry = {
            "name": tensor.name,
            "type": tensor.tensor_type.name,
            "type_id": int(tensor.tensor_type),
            "shape": [int(d) for d in tensor.shape],
            "n_elements": int(tensor.n_elements),
            "n_bytes": int(tensor.n_bytes),
            "offset": int(tensor.data_offset),
        }
        if with_data:
            entry["data"] = tensor.data.tobytes().hex()
        tensors.append(entry)
    version = int(reader.fields["GGUF.version"].contents())
    out = {
        "version": version,
        "alignment": int(reader.alignment),
        "data_offset": int(reader.data_offset),
        "metadata": metadata,
        "tensors": tensors,
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
