#!/usr/bin/env bash
# Regenerates runner/tests/data/synthetic-refs/*.json: for each synthetic model
# (scripts/make-synthetic-models.py: qwen2, qwen3, llama, gemma2, phi3 and qwen3moe in
# F32, Q8_0 and Q4_0; SYNTHETIC_ARCHS="a b" for some), the
# prompt tokens, the logits after a 100-token prompt (their FNV-1a hash over all n_vocab
# values, the 50 largest and 20 fixed ids) and 32 greedy tokens from llama.cpp's reference
# path (built at $LLAMA_CPP, default /opt/peer/llama.cpp; see docs/PEER.md), through
# scripts/peer/llama_ref.c: K/V cache F32, flash attention off, no repacked weights, no
# tiled K-quant products, 2 threads. Also runner/tests/data/tokenizer-refs-synthetic.json:
# llama-tokenize on the tokenizer corpus for each pre-tokenizer the models use.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
llama="${LLAMA_CPP:-/opt/peer/llama.cpp}"
models="${OLLAMA_SYNTHETIC_MODELS:-$HOME/.cache/ollamad/synthetic}"
data="$root/runner/tests/data/synthetic-refs"
bin="$(mktemp -d)/llama_ref"
mkdir -p "$data"

gcc -O2 -std=c11 -Wall -Wextra -o "$bin" "$root/scripts/peer/llama_ref.c" \
    -I"$llama/include" -I"$llama/ggml/include" \
    -L"$llama/build/bin" -lllama -lm -Wl,-rpath,"$llama/build/bin"

# About 120 tokens of prose and numbers (which the qwen2 and llama-bpe pre-tokenizers
# split differently) in SmolLM2's vocabulary, cut to the first 100.
prompt="In 2023, 1234567 leaves were sampled. Photosynthesis is the process by which green plants, algae and some bacteria convert light energy into chemical energy. During this process, carbon dioxide and water are combined, using the energy of sunlight captured by chlorophyll, to form glucose and oxygen. The oxygen is released into the air, while the glucose is used by the plant for growth and energy. Without photosynthesis, life on Earth as we know it would not be possible, because it provides both the oxygen that animals breathe and the food at the base of almost every food chain on the planet."

for arch in ${SYNTHETIC_ARCHS:-qwen2 qwen3 llama gemma2 phi3 qwen3moe}; do
    for type in F32 Q8_0 Q4_0; do
        name="$arch-synthetic-$type"
        LLAMA_REF_PROMPT_TOKENS=100 "$bin" "$models/$name.gguf" 32 2 "$prompt" > "$data/$name.json"
        echo "wrote $data/$name.json" >&2
    done
done

python3 "$root/scripts/make-tokenizer-refs.py" \
    --llama-tokenize "$llama/build/bin/llama-tokenize" --models "$models" \
    --names qwen2-synthetic-F32.gguf llama-synthetic-F32.gguf gemma2-synthetic-F32.gguf \
    --out "$root/runner/tests/data/tokenizer-refs-synthetic.json"
