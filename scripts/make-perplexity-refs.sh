#!/usr/bin/env bash
# Regenerates runner/tests/data/perplexity-refs.json: llama.cpp's perplexity (built at
# $LLAMA_CPP, default /opt/peer/llama.cpp) of both test models on the GPL-3 text with a
# context of 512, as `llama-perplexity` prints it ("Final estimate: PPL = X +/- Y"), with
# its default batch (several windows per pass) and K/V cache (F16), on 2 threads; and the
# same on llama.cpp's reference kernels ("reference": F32 K/V cache, no flash attention,
# no repacked weights, no tiled K-quant products; see scripts/peer/llama_ref.c), the
# arithmetic our kernels reproduce bit for bit.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
llama="${LLAMA_CPP:-/opt/peer/llama.cpp}"
models="${OLLAMA_TEST_MODELS:-$HOME/.cache/ollamad/test-models}"
text="${TEXT:-/usr/share/common-licenses/GPL-3}"
n_ctx=512
threads=2
out="$root/runner/tests/data/perplexity-refs.json"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# Runs llama-perplexity with extra arguments; prints "PPL PLUS_MINUS CHUNKS".
run() {
    local model="$1"
    shift
    if ! "$llama/build/bin/llama-perplexity" -m "$model" -f "$text" -c "$n_ctx" -t "$threads" \
        "$@" >"$log" 2>&1; then
        tail -20 "$log" >&2
        exit 1
    fi
    local final chunks
    final="$(grep -o 'PPL = [0-9.]* +/- [0-9.]*' "$log" | tail -1)"
    chunks="$(grep -o 'calculating perplexity over [0-9]* chunks' "$log" | grep -o '[0-9]*')"
    if [[ -z "$final" || -z "$chunks" ]]; then
        echo "no final estimate or chunk count in llama-perplexity's output:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    echo "$(awk '{print $3, $5}' <<<"$final") $chunks"
}

reference_args=(-fa off -ctk f32 -ctv f32 -nr)
entries=()
for name in SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf; do
    model="$models/$name"
    read -r ppl plus_minus chunks <<<"$(run "$model")"
    read -r ref_ppl ref_plus_minus _ <<<"$(GGML_CPU_TILED_MM=0 run "$model" "${reference_args[@]}")"
    echo "$name: PPL = $ppl +/- $plus_minus over $chunks chunks; reference kernels $ref_ppl +/- $ref_plus_minus" >&2
    entries+=("$(printf '    {"model": "%s", "n_ctx": %d, "chunks": %d, "ppl": %s, "plus_minus": %s,\n     "command": "%s",\n     "reference_ppl": %s, "reference_plus_minus": %s,\n     "reference_command": "%s"}' \
        "$name" "$n_ctx" "$chunks" "$ppl" "$plus_minus" \
        "llama-perplexity -m $name -f $text -c $n_ctx -t $threads" \
        "$ref_ppl" "$ref_plus_minus" \
        "GGML_CPU_TILED_MM=0 llama-perplexity -m $name -f $text -c $n_ctx -t $threads ${reference_args[*]}")")
done

{
    printf '{\n  "text": "%s",\n  "text_bytes": %d,\n  "cases": [\n' "$text" "$(wc -c <"$text")"
    for i in "${!entries[@]}"; do
        sep=","
        [[ $i -eq $((${#entries[@]} - 1)) ]] && sep=""
        printf '%s%s\n' "${entries[$i]}" "$sep"
    done
    printf '  ]\n}\n'
} >"$out"
echo "wrote $out" >&2
