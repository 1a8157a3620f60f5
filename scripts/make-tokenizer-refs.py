#!/usr/bin/env python3
"""Writes llama.cpp's tokenization of the tokenizer corpus for both test models.

    scripts/make-tokenizer-refs.py --llama-tokenize /path/to/llama.cpp/build/bin/llama-tokenize
        [--models DIR --names FILE... --out PATH]

Reads runner/tests/data/tokenizer-corpus.json (a JSON list of strings) and writes
runner/tests/data/tokenizer-refs.json:

    {"<model file name>": {"plain": [[ids...], ...], "special": [[ids...], ...]}}

"plain" adds BOS/EOS as the model asks and does not parse special tokens in the text;
"special" also parses them (as a chat template does). The runner's tests compare our
tokenizer with these lists. llama-tokenize is built from llama.cpp's source (see
docs/PEER.md); its exact version is recorded in the output. `--names` and `--out` pick
other models and another output (scripts/make-synthetic-refs.sh uses them for the
synthetic models' pre-tokenizers).
"""
import argparse
import json
import os
import pathlib
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]


def tokenize(tool, model, text, parse_special):
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
        path = f.name
    try:
        cmd = [tool, "-m", model, "-f", path, "--ids", "--no-escape", "--log-disable"]
        if not parse_special:
            cmd.append("--no-parse-special")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(path)
    line = [l for l in out.splitlines() if l.startswith("[")][-1]
    return json.loads(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-tokenize", required=True)
    ap.add_argument("--models", default=os.environ.get(
        "OLLAMA_TEST_MODELS", os.path.expanduser("~/.cache/ollamad/test-models")))
    ap.add_argument("--names", nargs="+", default=MODELS)
    ap.add_argument("--out", default=str(ROOT / "runner/tests/data/tokenizer-refs.json"))
    args = ap.parse_args()
    corpus = json.loads((ROOT / "runner/tests/data/tokenizer-corpus.json").read_text())
    version = subprocess.run([args.llama_tokenize, "--version"], capture_output=True,
                             text=True).stderr.strip().splitlines()
    refs = {"llama.cpp": version[0] if version else "unknown"}
    for name in args.names:
        model = os.path.join(args.models, name)
        refs[name] = {
            mode: [tokenize(args.llama_tokenize, model, t, mode == "special") for t in corpus]
            for mode in ("plain", "special")
        }
    out = pathlib.Path(args.out)
    out.write_text(json.dumps(refs, separators=(",", ":")) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
