#!/usr/bin/env bash
# One timed run on the H200: llama.cpp CUDA llama-bench (pp512/tg128) on our two test
# models (inflated from skeletons), then our runner (section OURS, run_ours below).
# Order: .gl libs + machine info; llama.cpp unpack+configure+build (ninja -j16) in the
# background while the models are inflated and Vulkan is probed; llama-bench x4; OURS.
#
#   run from the repo root:  bash .devkit/run.sh        carry: [".devkit", ".gl"]
#
# Everything goes to $OUT/log.txt (also $OUT/build.log, configure.log, llama-bench-*.md, ours-*).
# Hard deadline: the script stops starting work at DEADLINE_S seconds (default 470) and
# every step has its own `timeout`, so it ends in under 8 minutes.
# Env knobs: DEADLINE_S (470), BUILD_MAX_S (300), OURS_RESERVE_S (60, kept free for OURS
# after the llama.cpp benches), OURS_AT=end|first (first: before the llama.cpp build),
# SKIP_LLAMA=1 (only OURS).
# Re-running on the same (still warm) machine reuses /tmp/llama.cpp and /tmp/lbuild, so
# an unfinished CUDA build resumes where it stopped.

T0=$(date +%s)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$KIT/.." && pwd)
DEADLINE_S=${DEADLINE_S:-470}
BUILD_MAX_S=${BUILD_MAX_S:-300}
OURS_RESERVE_S=${OURS_RESERVE_S:-60}
BENCH_RESERVE_S=${BENCH_RESERVE_S:-50}
OURS_AT=${OURS_AT:-end}
MODELS=/tmp/models
M_SMOL=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
M_GEMMA=$MODELS/gemma-3-270m-q4_k_m.gguf
LSRC=${LSRC:-/tmp/llama.cpp}
LBUILD=${LBUILD:-/tmp/lbuild}
BENCH_PN=${BENCH_PN:--p 512 -n 128 -r 3}
LBENCH=$LBUILD/bin/llama-bench

elapsed() { echo $(( $(date +%s) - T0 )); }
remaining() { echo $(( T0 + DEADLINE_S - $(date +%s) )); }
section() { echo; echo "=================== [$(date -u +%T) +$(elapsed)s] $* ==================="; }
# tmo SECONDS CMD...: run CMD with timeout min(SECONDS, time left before the deadline)
tmo() {
    local want=$1; shift
    local r; r=$(remaining)
    local t=$(( want < r ? want : r ))
    if (( t < 3 )); then echo "SKIPPED (deadline): $*" >&2; return 124; fi
    timeout -k 5 "$t" "$@"
    local rc=$?
    (( rc == 124 || rc == 137 )) && echo "TIMED OUT after ${t}s: $*" >&2
    return $rc
}

# ---------------------------------------------------------------------------------------
# >>> OURS: fill in. Called with one argument (the phase: "first" or "end").
# Our binary: $KIT/bin/ollama-runner (.devkit/bin/ollama-runner). Models: $M_SMOL, $M_GEMMA.
# Wrap each command in `tmo SECONDS ...` and tee its output to a file under $OUT.
run_ours() {
    local R="$KIT/bin/ollama-runner"
    if [ ! -f "$R" ]; then
        echo "OURS: $R not present: skipped"
        return 0
    fi
    chmod +x "$R" 2>/dev/null
    ldd "$R" 2>&1 | head -20
    tmo 10 "$R" --version || true
    # --- replace these placeholder lines with the exact arguments ---
    tmo 30 "$R" devices 2>&1 | tee "$OUT/ours-devices.txt"
    for kv in f16 q8_0; do
        tmo 60 "$R" bench --model "$M_SMOL" --device gpu -p 512 -n 128 -r 3 --threads 4 --cache-type-k $kv --cache-type-v $kv 2>&1 | tail -30 | tee "$OUT/ours-smollm2-$kv-$1.txt"
        tmo 90 "$R" bench --model "$M_GEMMA" --device gpu -p 512 -n 128 -r 3 --threads 4 --cache-type-k $kv --cache-type-v $kv 2>&1 | tail -30 | tee "$OUT/ours-gemma3-$kv-$1.txt"
    done
    # The products on 8-bit activations (OLLAMA_GPU_INT_DOT), f16 cache, against the
    # lines above: whether the packed dot product pays on this GPU.
    OLLAMA_GPU_INT_DOT=1 tmo 60 "$R" bench --model "$M_SMOL" --device gpu -p 512 -n 128 -r 3 --threads 4 2>&1 | tail -30 | tee "$OUT/ours-smollm2-int-dot-$1.txt"
    OLLAMA_GPU_INT_DOT=1 tmo 90 "$R" bench --model "$M_GEMMA" --device gpu -p 512 -n 128 -r 3 --threads 4 2>&1 | tail -30 | tee "$OUT/ours-gemma3-int-dot-$1.txt"
}
# <<< OURS
# ---------------------------------------------------------------------------------------

setup() {
    section "setup: GL/Vulkan libraries from .gl"
    if [ "${KIT_LOCAL_TEST:-0}" = 1 ]; then
        echo "KIT_LOCAL_TEST=1: not touching / (would unpack .gl/*.deb)"
    elif ls "$REPO"/.gl/*.deb >/dev/null 2>&1; then
        # unpack, then add only the files the machine lacks (never replace its own)
        rm -rf /tmp/glroot; mkdir -p /tmp/glroot
        for f in "$REPO"/.gl/*.deb; do tmo 20 dpkg -x "$f" /tmp/glroot; done
        tmo 20 cp -an /tmp/glroot/. /
        tmo 30 ldconfig
    else
        echo "no .gl/*.deb"
    fi
    ldconfig -p | grep -E 'libvulkan|libGLdispatch|libGLX' || true
    ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>/dev/null
    if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] \
        && ! ls /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json >/dev/null 2>&1; then
        if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
            export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
        else
            icd=$(tmo 15 find /usr /etc /opt -maxdepth 7 -name 'nvidia_icd*.json' 2>/dev/null | head -1)
            [ -n "$icd" ] && export VK_DRIVER_FILES=$icd
        fi
    fi
    echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-<unset>}"
    [ -n "${VK_DRIVER_FILES:-}" ] && cat "$VK_DRIVER_FILES"

    section "machine"
    tmo 20 nvidia-smi
    tmo 10 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit --format=csv
    uname -a; nproc; free -g; df -h /tmp | tail -1
    if ! command -v nvcc >/dev/null; then
        for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
            [ -x "$d/nvcc" ] && { export PATH="$d:$PATH"; break; }
        done
    fi
    command -v nvcc && nvcc --version | tail -2
    cmake --version | head -1; ninja --version; gcc --version | head -1; python3 --version

}

models_vk() {
    section "vulkan probe (vulkaninfo --summary stand-in)"
    if command -v vulkaninfo >/dev/null; then tmo 20 vulkaninfo --summary; fi
    tmo 20 python3 "$KIT/vkprobe.py"

    section "inflate models to $MODELS"
    mkdir -p "$MODELS"
    for s in "$KIT"/models/*.skel.gz; do
        g="$MODELS/$(basename "$s" .skel.gz).gguf"
        [ -s "$g" ] || tmo 90 python3 "$KIT/inflate.py" "$s" "$g"
    done
    ls -l "$MODELS"
    (cd "$MODELS" && tmo 30 sha256sum -c "$KIT/models/inflated.sha256") || echo "WARNING: inflated models differ from the ones checked locally"
}

llama_build() {
    section "llama.cpp: unpack + configure (CUDA, sm_90)"
    if [ ! -f "$LSRC/CMakeLists.txt" ]; then
        tmo 60 tar -xJf "$KIT/llama.cpp.tar.xz" -C /tmp || return 1
    fi
    local gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
    if [ ! -f "$LBUILD/build.ninja" ] && [ ! -f "$LBUILD/Makefile" ]; then
        tmo 120 cmake -S "$LSRC" -B "$LBUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
            -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
            -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_CCACHE=OFF \
            -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_FA=ON \
            -DGGML_CUDA_FA_ALL_QUANTS=OFF 2>&1 | tee "$OUT/configure.log" | tail -40
        if [ ! -f "$LBUILD/build.ninja" ] && [ ! -f "$LBUILD/Makefile" ]; then
            echo "CONFIGURE FAILED"; cp "$LBUILD"/CMakeFiles/CMake*.log "$OUT/" 2>/dev/null; return 1
        fi
    fi

    # build gets at most BUILD_MAX_S, and must leave time for the benches (+ OURS at end)
    local keep=$BENCH_RESERVE_S
    [ "$OURS_AT" = end ] && keep=$(( keep + OURS_RESERVE_S ))
    local r; r=$(( $(remaining) - keep ))
    local bt=$(( BUILD_MAX_S < r ? BUILD_MAX_S : r ))
    section "llama.cpp: build llama-bench, -j 16, timeout ${bt}s"
    if (( bt < 10 )); then echo "no time left to build"; return 1; fi
    local tb=$(date +%s)
    timeout -k 5 "$bt" cmake --build "$LBUILD" --target llama-bench -j 16 >> "$OUT/build.log" 2>&1
    local rc=$?
    echo "build rc=$rc after $(( $(date +%s) - tb ))s"
    tail -5 "$OUT/build.log"
    if [ ! -x "$LBENCH" ] || (( rc != 0 )); then
        echo "BUILD NOT FINISHED"
        grep -E 'error|FAILED' "$OUT/build.log" | head -20
        if command -v ninja >/dev/null && [ -f "$LBUILD/build.ninja" ]; then
            echo "edges left: $(timeout 20 ninja -C "$LBUILD" -n llama-bench 2>/dev/null | grep -c '^\[')"
        fi
        return 1
    fi
    ls -l "$LBUILD"/bin/
}

llama_bench() {
    section "llama-bench (CUDA): $BENCH_PN, FA on, ngl 99"
    tmo 30 "$LBENCH" --list-devices
    local m tag
    for m in "$M_SMOL" "$M_GEMMA"; do
        tag=$(basename "$m" .gguf)
        section "llama-bench $tag  KV f16"
        tmo 60 "$LBENCH" -m "$m" $BENCH_PN -fa 1 -ngl 99 -o md 2>&1 | tee "$OUT/llama-bench-$tag-f16.md"
        section "llama-bench $tag  KV q8_0"
        tmo 60 "$LBENCH" -m "$m" $BENCH_PN -fa 1 -ngl 99 -o md -ctk q8_0 -ctv q8_0 2>&1 | tee "$OUT/llama-bench-$tag-q8_0.md"
    done
}

main() {
    set -x
    PS4='+ [$(date -u +%T) +$(( $(date +%s) - T0 ))s] '
    section "start: $(date -u) host $(hostname) repo $REPO OUT $OUT deadline ${DEADLINE_S}s"
    rm -f /tmp/llama_build.rc
    setup
    local bpid=""
    if [ "$OURS_AT" = first ]; then
        models_vk
        section "OURS (before llama.cpp build)"; run_ours first
    fi
    if [ "${SKIP_LLAMA:-0}" != 1 ]; then
        # configure + build in the background (log: $OUT/llama-build-steps.log) while the
        # models are inflated; nothing else heavy runs meanwhile
        ( llama_build; echo $? > /tmp/llama_build.rc ) > "$OUT/llama-build-steps.log" 2>&1 &
        bpid=$!
    fi
    [ "$OURS_AT" = first ] || models_vk
    if [ -n "$bpid" ]; then
        section "waiting for the llama.cpp build (pid $bpid)"
        wait "$bpid"
        cat "$OUT/llama-build-steps.log"
        if [ "$(cat /tmp/llama_build.rc 2>/dev/null)" = 0 ]; then llama_bench; fi
    fi
    if [ "$OURS_AT" = end ]; then section "OURS"; run_ours end; fi
    section "summary"
    grep -h '^| ' "$OUT"/llama-bench-*.md 2>/dev/null | grep -v -- '---' | sort -u
    ls -l "$OUT"
    section "done after $(elapsed)s"
}

main 2>&1 | tee -a "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
