#!/usr/bin/env python3
"""Turn a llama GGUF (such as SmolLM2-135M-Instruct.Q4_1.gguf) into a Hugging Face-style
directory, so that `ollama-runner convert` can be tested on a real model without a
download: the round trip GGUF -> directory -> GGUF must give the original back.

    scripts/gguf-to-hf.py MODEL.gguf OUT_DIR

Writes OUT_DIR/config.json (LlamaForCausalLM, from the llama.* keys),
OUT_DIR/model.safetensors (every tensor dequantized to F32 with the gguf package, under
Hugging Face's names, the query and key rows put back into Hugging Face's half-split
rotary layout so that the import's permutation restores llama.cpp's), OUT_DIR/
tokenizer.json (a byte-level BPE model rebuilt from the GGUF's tokens, merges and token
types; CONTROL tokens become special added tokens), OUT_DIR/tokenizer_config.json (the
special tokens, add_bos_token and the chat template).

Needs the packages of scripts/requirements.txt (gguf, numpy, safetensors).
"""

import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import save_file

CONTROL = 3
USER_DEFINED = 4

# The shapes of tokenizer.json's pre_tokenizer for the GGUF pre-tokenizer names.
LLAMA3_REGEX = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?"
    "[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)


def byte_level(use_regex):
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
            "use_regex": use_regex}


PRE_TOKENIZERS = {
    "gpt2": byte_level(True),
    "smollm": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, byte_level(True)]},
    "llama-bpe": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated",
         "invert": False}, byte_level(False)]},
}

LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def unpermute(w, n_head):
    """llama.cpp's adjacent RoPE pairs back into Hugging Face's half-split heads."""
    rows = w.shape[0]
    head = rows // n_head
    return (w.reshape(n_head, head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def hf_name(name):
    if name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if name == "output_norm.weight":
        return "model.norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    parts = name.split(".")
    if parts[0] == "blk" and parts[2] in LAYER_NAMES:
        return f"model.layers.{parts[1]}.{LAYER_NAMES[parts[2]]}.{parts[3]}"
    sys.exit(f"{name}: no Hugging Face name for this tensor")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    reader = GGUFReader(sys.argv[1])
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    arch = field(reader, "general.architecture")
    if arch != "llama":
        sys.exit(f"general.architecture is {arch!r}; this script writes llama models")
    k = lambda key, default=None: field(reader, f"llama.{key}", default)
    n_head = k("attention.head_count")
    n_head_kv = k("attention.head_count_kv", n_head)
    n_embd = k("embedding_length")

    tensors = {}
    has_output = False
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])
        if t.name.endswith("attn_q.weight"):
            w = unpermute(w, n_head)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute(w, n_head_kv)
        has_output |= t.name == "output.weight"
        tensors[hf_name(t.name)] = np.ascontiguousarray(w)
    save_file(tensors, str(out / "model.safetensors"))

    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    pre = field(reader, "tokenizer.ggml.pre", "gpt2")
    if pre not in PRE_TOKENIZERS:
        sys.exit(f"tokenizer.ggml.pre is {pre!r}; known: {', '.join(PRE_TOKENIZERS)}")
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": n_embd,
        "intermediate_size": k("feed_forward_length"),
        "num_hidden_layers": k("block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_head_kv,
        "max_position_embeddings": k("context_length"),
        "rms_norm_eps": float(np.float32(k("attention.layer_norm_rms_epsilon"))),
        "rope_theta": float(np.float32(k("rope.freq_base", 10000.0))),
        "vocab_size": len(tokens),
        "hidden_act": "silu",
        "tie_word_embeddings": not has_output,
        "torch_dtype": "float32",
    }
    ids = {}
    for role, key in [("bos", "bos_token_id"), ("eos", "eos_token_id"),
                      ("unk", "unknown_token_id"), ("pad", "padding_token_id")]:
        i = field(reader, f"tokenizer.ggml.{key}")
        if i is not None:
            ids[role] = int(i)
            config[f"{role}_token_id"] = int(i)
    (out / "config.json").write_text(json.dumps(config, indent=2))

    added = [
        {"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": ty == CONTROL}
        for i, (tok, ty) in enumerate(zip(tokens, types)) if ty in (CONTROL, USER_DEFINED)
    ]
    tokenizer = {
        "version": "1.0",
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": PRE_TOKENIZERS[pre],
        "post_processor": None,
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False,
                  "vocab": {tok: i for i, tok in enumerate(tokens)},
                  "merges": [m.split(" ", 1) for m in merges]},
    }
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))

    tok_config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": config[
        "max_position_embeddings"]}
    for role, i in ids.items():
        tok_config[f"{role}_token"] = tokens[i]
    for key in ["add_bos_token", "add_eos_token", "add_space_prefix"]:
        v = field(reader, f"tokenizer.ggml.{key}")
        if v is not None:
            tok_config["add_prefix_space" if key == "add_space_prefix" else key] = bool(v)
    template = field(reader, "tokenizer.chat_template")
    if template is not None:
        tok_config["chat_template"] = template
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2,
                                                          ensure_ascii=False))
    print(f"{out}: {len(tensors)} tensors, {len(tokens)} tokens, {len(merges)} merges")


if __name__ == "__main__":
    main()
