#!/usr/bin/env bash
# Regenerates runner/tests/data/generation-refs-smollm2.json: prompt tokens, first-position
# logits and 64 greedy tokens from llama.cpp (built at $LLAMA_CPP, default
# /opt/peer/llama.cpp) for the SmolLM2 test model, through scripts/peer/llama_ref.c.
# K/V cache F32, flash attention off, 2 threads (see the header of llama_ref.c).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
llama="${LLAMA_CPP:-/opt/peer/llama.cpp}"
model="${MODEL:-$HOME/.cache/ollamad/test-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
out="$root/runner/tests/data/generation-refs-smollm2.json"
bin="$(mktemp -d)/llama_ref"

gcc -O2 -std=c11 -Wall -Wextra -o "$bin" "$root/scripts/peer/llama_ref.c" \
    -I"$llama/include" -I"$llama/ggml/include" \
    -L"$llama/build/bin" -lllama -lm -Wl,-rpath,"$llama/build/bin"

"$bin" "$model" 64 2 \
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
    > "$out"
echo "wrote $out" >&2
