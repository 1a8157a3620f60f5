#!/usr/bin/env python3
"""Embeds the reference sentences with llama.cpp's llama-embedding on GGUF files that
`ollama-runner convert` wrote, and prints the cosine similarity to the stored references
(runner/tests/data/embedding-refs-minilm.json): the check that llama.cpp reads our GGUF
as we do. Sentences whose llama-tokenize ids differ from Hugging Face's are reported apart
(a tokenizer difference in llama.cpp, not in the file).

    scripts/compare-llama-embedding.py --bin /opt/peer/llama.cpp/build/bin MODEL.gguf...

llama.cpp is built as docs/PEER.md says (targets llama-embedding and llama-tokenize).
"""
import argparse
import json
import pathlib
import subprocess

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEP = "<#sep#>"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="llama.cpp's build/bin directory")
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()
    refs = json.loads((ROOT / "runner/tests/data/embedding-refs-minilm.json").read_text())
    sentences = refs["sentences"]
    texts = [s["text"] for s in sentences]
    for model in args.models:
        out = subprocess.run(
            [f"{args.bin}/llama-embedding", "-m", model, "-p", SEP.join(texts),
             "--embd-separator", SEP, "--pooling", "mean", "--embd-normalize", "2",
             "--embd-output-format", "json", "-t", "2", "-c", "512", "-b", "2048",
             "-ub", "2048"], check=True, capture_output=True, text=True).stdout
        vectors = [np.array(d["embedding"]) for d in json.loads(out)["data"]]
        same, differ = [], []
        for v, s in zip(vectors, sentences):
            ref = np.array(s["embedding"])
            cos = float(v @ ref / (np.linalg.norm(v) * np.linalg.norm(ref)))
            ids = subprocess.run(
                [f"{args.bin}/llama-tokenize", "-m", model, "-p", s["text"], "--ids",
                 "--log-disable"], check=True, capture_output=True, text=True)
            ids = json.loads(ids.stdout.strip().splitlines()[-1])
            (same if ids == s["ids"] else differ).append((cos, s["text"]))
        print(f"{model}: {len(same)} sentences tokenized as Hugging Face does, lowest cosine "
              f"{min(c for c, _ in same):.7f}")
        for cos, text in differ:
            print(f"  tokenized differently by llama.cpp: {text!r}, cosine {cos:.7f}")


if __name__ == "__main__":
    main()
