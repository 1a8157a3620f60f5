#!/usr/bin/env bash
# Regenerates runner/tests/data/fast-numerics-refs.json: how far llama.cpp's own default
# CPU path (built at $LLAMA_CPP, default /opt/peer/llama.cpp) strays from its reference
# kernels on the GPL-3 text at a context of 512, measured by `llama-perplexity
# --kl-divergence`: mean KL divergence, 99th percentile, same top token and the ratio of
# the perplexities. The reference run is the arithmetic our exact numerics reproduce (F32
# K/V cache, no flash attention, no repacked weights, no tiled K-quant products); the
# default run is llama-perplexity as it comes (F16 K/V cache, flash attention auto,
# repacked weights). runner/tests/it/fast_numerics.rs holds our fast numerics (with our
# defaults) against our exact reference path to these figures.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
llama="${LLAMA_CPP:-/opt/peer/llama.cpp}"
models="${OLLAMA_TEST_MODELS:-$HOME/.cache/ollamad/test-models}"
text="${TEXT:-/usr/share/common-licenses/GPL-3}"
n_ctx=512
threads=2
out="$root/runner/tests/data/fast-numerics-refs.json"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

perplexity() {
    local model="$1" log="$2"
    shift 2
    if ! "$llama/build/bin/llama-perplexity" -m "$model" -f "$text" -c "$n_ctx" -t "$threads" \
        "$@" >"$log" 2>&1; then
        tail -20 "$log" >&2
        exit 1
    fi
}

# The first number after the label on a line of llama-perplexity's KLD report.
figure() {
    local label="$1" log="$2" value
    value="$(grep -m1 -E "^$label" "$log" | sed -E 's/^[^:]*:[[:space:]]*//' | awk '{print $1}')"
    if [[ -z "$value" ]]; then
        echo "no '$label' in llama-perplexity's report:" >&2
        tail -40 "$log" >&2
        exit 1
    fi
    echo "$value"
}

reference_args=(-fa off -ctk f32 -ctv f32 -nr)
entries=()
for name in SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf; do
    model="$models/$name"
    base="$work/base.kld"
    GGML_CPU_TILED_MM=0 perplexity "$model" "$work/base.log" "${reference_args[@]}" \
        --kl-divergence-base "$base"
    perplexity "$model" "$work/kld.log" --kl-divergence-base "$base" --kl-divergence
    kld="$(figure 'Mean +KLD:' "$work/kld.log")"
    # Its standard error: the figure after the "±".
    kld_error="$(grep -m1 -E '^Mean +KLD:' "$work/kld.log" | sed -E 's/.*± *//' | awk '{print $1}')"
    p99="$(figure '99\.0% +KLD:' "$work/kld.log")"
    same="$(figure 'Same top p:' "$work/kld.log")"
    ratio="$(figure 'Mean PPL\(Q\)/PPL\(base\)' "$work/kld.log")"
    chunks="$(grep -o 'calculating perplexity over [0-9]* chunks' "$work/base.log" | grep -o '[0-9]*' | head -1)"
    echo "$name: mean KLD $kld +/- $kld_error, 99% $p99, same top $same%, PPL ratio $ratio over $chunks chunks" >&2
    entries+=("$(printf '    {"model": "%s", "n_ctx": %d, "chunks": %s, "mean_kld": %s, "mean_kld_error": %s, "kld_99": %s,\n     "same_top_percent": %s, "ppl_ratio": %s,\n     "reference_command": "%s",\n     "default_command": "%s"}' \
        "$name" "$n_ctx" "$chunks" "$kld" "$kld_error" "$p99" "$same" "$ratio" \
        "GGML_CPU_TILED_MM=0 llama-perplexity -m $name -f $text -c $n_ctx -t $threads ${reference_args[*]} --kl-divergence-base BASE" \
        "llama-perplexity -m $name -f $text -c $n_ctx -t $threads --kl-divergence-base BASE --kl-divergence")")
    rm -f "$base"
done

{
    printf '{\n  "text": "%s",\n  "text_bytes": %d,\n  "llama_cpp": "llama-cpp-python 0.3.36 vendored tree, GGML_NATIVE=ON",\n  "host_simd": "%s",\n  "cases": [\n' \
        "$text" "$(wc -c <"$text")" "$(grep -q avx512f /proc/cpuinfo && echo avx512 || echo avx2)"
    for i in "${!entries[@]}"; do
        sep=","
        [[ $i -eq $((${#entries[@]} - 1)) ]] && sep=""
        printf '%s%s\n' "${entries[$i]}" "$sep"
    done
    printf '  ]\n}\n'
} >"$out"
echo "wrote $out" >&2
