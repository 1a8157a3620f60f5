#!/usr/bin/env python3
"""Turn a llama or gemma3 GGUF (such as SmolLM2-135M-Instruct.Q4_1.gguf or
gemma-3-270m-q4_k_m.gguf) into a Hugging Face-style directory, so that `ollama-runner
convert` can be tested on a real model without a download: the round trip GGUF ->
directory -> GGUF must give the original back (llama), or the original dequantized to F32
(gemma3, imported with `--type f32`).

    scripts/gguf-to-hf.py MODEL.gguf OUT_DIR

llama: writes OUT_DIR/config.json (LlamaForCausalLM, from the llama.* keys),
OUT_DIR/model.safetensors (every tensor dequantized to F32 with the gguf package, under
Hugging Face's names, the query and key rows put back into Hugging Face's half-split
rotary layout so that the import's permutation restores llama.cpp's), OUT_DIR/
tokenizer.json (a byte-level BPE model rebuilt from the GGUF's tokens, merges and token
types; CONTROL tokens become special added tokens), OUT_DIR/tokenizer_config.json (the
special tokens, add_bos_token and the chat template).

gemma3: writes config.json (Gemma3ForCausalLM), model.safetensors (F32, Hugging Face's
names; every norm weight w stored as w - 1, Gemma's convention, which the import adds
back: the script checks that (w - 1) + 1 == w in F32 for every value and stops if not),
tokenizer.model (a SentencePiece ModelProto protobuf, encoded here by hand from the
GGUF's tokens, scores and token types) and tokenizer_config.json (special tokens, add_*
flags, the chat template if any, and added_tokens_decoder holding the CONTROL and
USER_DEFINED tokens with score -1000, as llama.cpp's converter reads them back).

Needs the packages of scripts/requirements.txt (gguf, numpy, safetensors).
"""

import json
import struct
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
    writers = {"llama": write_llama, "gemma3": write_gemma3}
    if arch not in writers:
        sys.exit(f"general.architecture is {arch!r}; this script writes {', '.join(writers)}")
    writers[arch](reader, out)


def write_llama(reader, out):
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


# Gemma 3's GGUF tensor names (per layer) and Hugging Face's.
GEMMA3_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "post_ffw_norm": "post_feedforward_layernorm",
}

# SentencePiece's piece types, which are llama.cpp's token types.
NORMAL, UNKNOWN, UNUSED, BYTE = 1, 2, 5, 6
SPACE_MARK = "\u2581"


def gemma3_hf_name(name):
    if name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if name == "output_norm.weight":
        return "model.norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    parts = name.split(".")
    if parts[0] == "blk" and parts[2] in GEMMA3_LAYER_NAMES:
        return f"model.layers.{parts[1]}.{GEMMA3_LAYER_NAMES[parts[2]]}.{parts[3]}"
    sys.exit(f"{name}: no Hugging Face name for this tensor")


def unshift_norm(name, w):
    """Gemma stores a norm weight as w - 1 and multiplies by 1 + w; the GGUF holds 1 + w.
    In F32, (x - 1) + 1 is x again for x >= 0.5 (the subtraction is exact there) but not
    always below: check every value rather than trust it."""
    one = np.float32(1)
    stored = (w - one).astype(np.float32)
    back = (stored + one).astype(np.float32)
    if not np.array_equal(back.view(np.uint32), w.view(np.uint32)):
        bad = w[back.view(np.uint32) != w.view(np.uint32)]
        sys.exit(f"{name}: {bad.size} norm values do not survive w - 1 + 1 in F32 "
                 f"(such as {bad[0]!r}); the round trip could not be exact")
    return stored


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_bytes(tag, data):
    """A length-delimited protobuf field (wire type 2)."""
    return varint(tag << 3 | 2) + varint(len(data)) + data


def pb_varint(tag, n):
    """A varint protobuf field (wire type 0)."""
    return varint(tag << 3) + varint(n)


def pb_float(tag, x):
    """A 32-bit protobuf field (wire type 5)."""
    return varint(tag << 3 | 5) + struct.pack("<f", x)


def sentencepiece_model(pieces, n_vocab):
    """sentencepiece's ModelProto: pieces (1: piece, 2: score, 3: type), then a trainer
    spec (model_type BPE, vocab_size, byte_fallback) that readers may skip."""
    body = bytearray()
    for text, score, kind in pieces:
        piece = pb_bytes(1, text.encode("utf-8")) + pb_float(2, score) + pb_varint(3, kind)
        body += pb_bytes(1, piece)
    trainer = pb_varint(3, 2) + pb_varint(4, n_vocab) + pb_varint(35, 1)
    body += pb_bytes(2, trainer)
    return bytes(body)


def looks_special(text):
    """llama.cpp's converter's does_token_look_special."""
    return (text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<unused") and text.endswith(">")))


def write_gemma3(reader, out):
    k = lambda key, default=None: field(reader, f"gemma3.{key}", default)
    n_layer = k("block_count")
    n_embd = k("embedding_length")
    n_head = k("attention.head_count")
    head_dim = k("attention.key_length", n_embd // n_head)
    if k("attention.value_length", head_dim) != head_dim:
        sys.exit("gemma3.attention.value_length differs from key_length")

    tensors = {}
    has_output = False
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])
        if t.name.endswith("norm.weight"):
            w = unshift_norm(t.name, w)
        has_output |= t.name == "output.weight"
        tensors[gemma3_hf_name(t.name)] = np.ascontiguousarray(w)
    save_file(tensors, str(out / "model.safetensors"))

    tokens = field(reader, "tokenizer.ggml.tokens")
    scores = field(reader, "tokenizer.ggml.scores")
    types = field(reader, "tokenizer.ggml.token_type")
    if field(reader, "tokenizer.ggml.model") != "llama":
        sys.exit("tokenizer.ggml.model is not llama (SentencePiece)")
    window = k("attention.sliding_window")
    # llama.cpp's gemma3: of every six layers the first five slide, when there is a window.
    layer_types = ["sliding_attention" if window and (i + 1) % 6 else "full_attention"
                   for i in range(n_layer)]
    config = {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "hidden_size": n_embd,
        "intermediate_size": k("feed_forward_length"),
        "num_hidden_layers": n_layer,
        "num_attention_heads": n_head,
        "num_key_value_heads": k("attention.head_count_kv", n_head),
        "head_dim": head_dim,
        "max_position_embeddings": k("context_length"),
        "rms_norm_eps": float(np.float32(k("attention.layer_norm_rms_epsilon"))),
        "rope_theta": float(np.float32(k("rope.freq_base", 1e6))),
        "rope_scaling": None,
        "sliding_window": window,
        "layer_types": layer_types,
        # llama.cpp's query scale: the head size, or the width per head for the 27B.
        "query_pre_attn_scalar": n_embd // n_head if n_layer == 62 else head_dim,
        "hidden_activation": "gelu_pytorch_tanh",
        "attn_logit_softcapping": None,
        "final_logit_softcapping": k("final_logit_softcapping"),
        "vocab_size": len(tokens),
        "tie_word_embeddings": not has_output,
        "torch_dtype": "float32",
    }
    # Files converted before llama.cpp wrote rope.freq_base_swa lack it; today's
    # converter writes it whenever the config names the local base.
    if (swa := k("rope.freq_base_swa")) is not None:
        config["rope_local_base_freq"] = float(np.float32(swa))
    if k("rope.scaling.type") == "linear":
        config["rope_scaling"] = {"rope_type": "linear",
                                  "factor": float(np.float32(k("rope.scaling.factor")))}
    ids = {}
    for role, key in [("bos", "bos_token_id"), ("eos", "eos_token_id"),
                      ("unk", "unknown_token_id"), ("pad", "padding_token_id"),
                      ("sep", "seperator_token_id"), ("mask", "mask_token_id")]:
        i = field(reader, f"tokenizer.ggml.{key}")
        if i is not None:
            ids[role] = int(i)
            config[f"{role}_token_id"] = int(i)
    (out / "config.json").write_text(json.dumps(config, indent=2))

    # The pieces; CONTROL and USER_DEFINED tokens of score -1000 also go to
    # added_tokens_decoder, where llama.cpp's converter takes them from (Gemma's own
    # files list its control tokens there). The unknown token is UNKNOWN in the model and
    # made CONTROL by its added_tokens_decoder entry, as in Gemma's files.
    pieces, decoder = [], {}
    for i, (text, score, ty) in enumerate(zip(tokens, scores, types)):
        kind = UNKNOWN if i == ids.get("unk") else ty
        if ty in (CONTROL, USER_DEFINED) and score == -1000.0:
            if ty == USER_DEFINED:
                if looks_special(text) or SPACE_MARK in text:
                    sys.exit(f"token {i} {text!r}: USER_DEFINED but would not read back so")
                text = text.replace(" ", SPACE_MARK)  # the converter turns it back
            decoder[str(i)] = {"content": text, "lstrip": False, "rstrip": False,
                               "normalized": False, "single_word": False,
                               "special": ty == CONTROL}
        elif ty == USER_DEFINED:
            sys.exit(f"token {i} {text!r}: USER_DEFINED with score {score}, which the "
                     "converter cannot give back")
        elif ty not in (NORMAL, CONTROL, UNUSED, BYTE, UNKNOWN):
            sys.exit(f"token {i} {text!r}: token type {ty} has no SentencePiece twin")
        pieces.append((text, score, kind))
    (out / "tokenizer.model").write_bytes(sentencepiece_model(pieces, len(tokens)))

    tok_config = {"tokenizer_class": "GemmaTokenizer",
                  "model_max_length": config["max_position_embeddings"]}
    for role, i in ids.items():
        tok_config[f"{role}_token"] = tokens[i]
    for key in ["add_bos_token", "add_eos_token", "add_sep_token"]:
        v = field(reader, f"tokenizer.ggml.{key}")
        if v is not None:
            tok_config[key] = bool(v)
    template = field(reader, "tokenizer.chat_template")
    if template is not None:
        tok_config["chat_template"] = template
    tok_config["added_tokens_decoder"] = decoder
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2,
                                                          ensure_ascii=False))
    print(f"{out}: {len(tensors)} tensors, {len(tokens)} tokens")


if __name__ == "__main__":
    main()
