#!/usr/bin/env bash
# Regenerates runner/tests/data/kv-perplexity-refs.json: llama.cpp's perplexity of both
# test models with their weights in F32 (copies written by `ollama-runner dequantize`, so
# no activation is rounded to 8 bits; see runner/src/tools/dequantize.rs), on the GPL-3
# text with a context of 512, 2 threads, for the K/V cache types the issue compares:
# F16 with and without flash attention, Q8_0, Q4_0, and Q8_0 keys with Q4_0 values. The
# 4-bit cache rounds K and V again, which makes its figure noisy, so F16 and Q4_0 are also
# measured on copies nudged by 1, 2 and 3 ulps (`--nudge`), and the test compares means.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
llama="${LLAMA_CPP:-/opt/peer/llama.cpp}"
models="${OLLAMA_TEST_MODELS:-$HOME/.cache/ollamad/test-models}"
text="${TEXT:-/usr/share/common-licenses/GPL-3}"
work="${WORK:-$(mktemp -d)}"
n_ctx=512
threads=2
nudges=(0 1 2 3)
out="$root/runner/tests/data/kv-perplexity-refs.json"
runner="$root/target/release/ollama-runner"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

cargo build --release -p runner --manifest-path "$root/Cargo.toml" >&2
export LD_LIBRARY_PATH="$llama/build/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# Runs llama-perplexity on a model with extra arguments; prints its final PPL.
ppl() {
    local model="$1"
    shift
    if ! "$llama/build/bin/llama-perplexity" -m "$model" -f "$text" -c "$n_ctx" -t "$threads" \
        "$@" >"$log" 2>&1; then
        tail -20 "$log" >&2
        exit 1
    fi
    local final
    final="$(grep -o 'PPL = [0-9.]*' "$log" | tail -1 | awk '{print $3}')"
    if [[ -z "$final" ]]; then
        echo "no final estimate in llama-perplexity's output:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    echo "$final"
}

# A JSON array of the figures of one cache configuration over the nudged copies.
over_nudges() {
    local name="$1"
    shift
    local figures=()
    for n in "${nudges[@]}"; do
        figures+=("$(ppl "$work/$name.nudge$n.gguf" "$@")")
    done
    (IFS=,; echo "[${figures[*]}]")
}

entries=()
for name in SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf; do
    for n in "${nudges[@]}"; do
        "$runner" dequantize --model "$models/$name" --out "$work/$name.nudge$n.gguf" --nudge "$n" >&2
    done
    first="$work/$name.nudge0.gguf"
    f16_off="$(ppl "$first" -ctk f16 -ctv f16 -fa 0)"
    q8_0="$(ppl "$first" -ctk q8_0 -ctv q8_0 -fa 1)"
    q8_0_q4_0="$(ppl "$first" -ctk q8_0 -ctv q4_0 -fa 1)"
    f16_on="$(over_nudges "$name" -ctk f16 -ctv f16 -fa 1)"
    q4_0="$(over_nudges "$name" -ctk q4_0 -ctv q4_0 -fa 1)"
    echo "$name: f16 off $f16_off, f16 on $f16_on, q8_0 $q8_0, q4_0 $q4_0, q8_0/q4_0 $q8_0_q4_0" >&2
    entries+=("$(printf '    {"model": "%s", "f16_flash_off": %s, "f16_flash_on": %s,\n     "q8_0": %s, "q4_0": %s, "q8_0_q4_0": %s}' \
        "$name" "$f16_off" "$f16_on" "$q8_0" "$q4_0" "$q8_0_q4_0")")
done

{
    printf '{\n  "text": "%s",\n  "text_bytes": %d,\n  "n_ctx": %d,\n  "nudges": [%s],\n' \
        "$text" "$(wc -c <"$text")" "$n_ctx" "$(IFS=,; echo "${nudges[*]}")"
    printf '  "command": "llama-perplexity -m COPY -f %s -c %d -t %d -ctk K -ctv V -fa 0|1",\n' \
        "$text" "$n_ctx" "$threads"
    printf '  "copies": "ollama-runner dequantize --model MODEL --out COPY --nudge N",\n'
    printf '  "cases": [\n'
    for i in "${!entries[@]}"; do
        sep=","
        [[ $i -eq $((${#entries[@]} - 1)) ]] && sep=""
        printf '%s%s\n' "${entries[$i]}" "$sep"
    done
    printf '  ]\n}\n'
} >"$out"
echo "wrote $out" >&2
