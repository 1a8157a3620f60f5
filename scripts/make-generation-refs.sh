#!/usr/bin/env bash
# Regenerates runner/tests/data/generation-refs-{smollm2,gemma3}.json: prompt tokens,
# first-position logits and 64 greedy tokens from llama.cpp (built at $LLAMA_CPP, default
# /opt/peer/llama.cpp; see docs/PEER.md) for both test models, through
# scripts/peer/llama_ref.c: K/V cache F32, flash attention off, no repacked weights,
# 2 threads (see the header of llama_ref.c).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
llama="${LLAMA_CPP:-/opt/peer/llama.cpp}"
models="${OLLAMA_TEST_MODELS:-$HOME/.cache/ollamad/test-models}"
data="$root/runner/tests/data"
bin="$(mktemp -d)/llama_ref"

gcc -O2 -std=c11 -Wall -Wextra -o "$bin" "$root/scripts/peer/llama_ref.c" \
    -I"$llama/include" -I"$llama/ggml/include" \
    -L"$llama/build/bin" -lllama -lm -Wl,-rpath,"$llama/build/bin"

"$bin" "$models/SmolLM2-135M-Instruct.Q4_1.gguf" 64 2 \
    "The history of the printing press begins in the fifteenth century, when" \
    "def fibonacci(n):
    \"\"\"Return the n-th Fibonacci number.\"\"\"
" \
    "<|im_start|>user
What is the capital of France, and why is it famous?<|im_end|>
<|im_start|>assistant
" \
    "1, 2, 3, 5, 8, 13, 21," \
    "Photosynthesis is the process by which green plants, algae and some bacteria convert light energy into chemical energy. During this process, carbon dioxide and water are combined, using the energy of sunlight captured by chlorophyll, to form glucose and oxygen. The oxygen is released into the air, while the glucose is used by the plant for growth and energy. Without photosynthesis, life on Earth as we know it would not be possible, because" \
    > "$data/generation-refs-smollm2.json"
echo "wrote $data/generation-refs-smollm2.json" >&2

# The GPL-3 preamble (lines 10-67 of Debian's copy, whitespace collapsed) is about 800
# tokens: past the 512-position sliding window of Gemma 3's local layers.
preamble="$(sed -n '10,67p' /usr/share/common-licenses/GPL-3 | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')"
"$bin" "$models/gemma-3-270m-q4_k_m.gguf" 64 2 \
    "Question: What is the capital of France?
Answer:" \
    "Water is made of hydrogen and" \
    "Paris is the capital of" \
    "The history of the printing press begins in the fifteenth century, when" \
    "$preamble" \
    > "$data/generation-refs-gemma3.json"
echo "wrote $data/generation-refs-gemma3.json" >&2
