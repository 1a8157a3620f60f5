#!/usr/bin/env bash
# One timed H200 run: llama.cpp's Vulkan llama-bench (built beforehand, carried in
# .devkit/vk) and ours (new and previous ollama-runner) on the same GPU, same run.
#   run from the repo root: bash .devkit/run-vk.sh
#   carry: [".devkit/bin", ".devkit/vk", ".devkit/models", ".devkit/run-vk.sh", ".devkit/inflate.py", ".devkit/vkprobe.py", ".gl"]
T0=$(date +%s)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd); REPO=$(cd "$KIT/.." && pwd)
DEADLINE_S=${DEADLINE_S:-400}
MODELS=/tmp/models
M_SMOL=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
M_GEMMA=$MODELS/gemma-3-270m-q4_k_m.gguf
PN=${PN:--p 512 -n 128 -r 3}
remaining() { echo $(( T0 + DEADLINE_S - $(date +%s) )); }
section() { echo; echo "=========== [+$(( $(date +%s) - T0 ))s] $* ==========="; }
tmo() { local want=$1; shift; local r; r=$(remaining); local t=$(( want < r ? want : r ));
  if (( t < 3 )); then echo "SKIPPED (deadline): $*"; return 124; fi
  timeout -k 5 "$t" "$@"; local rc=$?; (( rc == 124 || rc == 137 )) && echo "TIMED OUT ${t}s: $*"; return $rc; }

main() {
  section "setup"
  if [ "${SKIP_SETUP:-0}" != 1 ]; then
  rm -rf /tmp/glroot; mkdir -p /tmp/glroot
  for f in "$REPO"/.gl/*.deb; do dpkg -x "$f" /tmp/glroot; done
  cp -an /tmp/glroot/. / ; ldconfig
  if ! ls /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json >/dev/null 2>&1; then
    if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
      export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    else
      icd=$(tmo 15 find /usr /etc /opt -maxdepth 7 -name 'nvidia_icd*.json' 2>/dev/null | head -1)
      [ -n "$icd" ] && export VK_DRIVER_FILES=$icd
    fi
  fi
  fi
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-<unset>}"
  tmo 10 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nproc
  section "models"
  mkdir -p "$MODELS"
  for s in "$KIT"/models/*.skel.gz; do
    g="$MODELS/$(basename "$s" .skel.gz).gguf"; [ -s "$g" ] || tmo 90 python3 "$KIT/inflate.py" "$s" "$g" &
  done; wait
  (cd "$MODELS" && tmo 30 sha256sum -c "$KIT/models/inflated.sha256")
  section "binaries"
  mkdir -p /tmp/bin
  for f in "$KIT"/vk/*.xz "$KIT"/bin/*.xz; do [ -f "$f" ] && xz -dc "$f" > /tmp/bin/$(basename "$f" .xz); done
  chmod +x /tmp/bin/*; ls -l /tmp/bin
  mkdir -p /tmp/lib; cp "$KIT"/vk/libgomp.so.1 /tmp/lib/
  ldd /tmp/bin/llama-bench-vk | grep -q "libgomp.so.1 => not found" && export LD_LIBRARY_PATH=/tmp/lib
  ldd /tmp/bin/llama-bench-vk | grep -E "not found|vulkan|gomp"
  section "llama.cpp Vulkan: devices"
  tmo 30 /tmp/bin/llama-bench-vk --list-devices 2>&1 | tail -5
  for m in "$M_SMOL" "$M_GEMMA"; do
    tag=$(basename "$m" .gguf)
    for kv in f16 q8_0; do
      section "llama-bench Vulkan $tag KV $kv"
      tmo 60 /tmp/bin/llama-bench-vk -m "$m" $PN -fa 1 -ngl 99 -ctk $kv -ctv $kv -o md 2>&1 | grep -E "^\||ggml_vulkan: 0|error" | tee "$OUT/llama-vk-$tag-$kv.md"
    done
  done
  for R in ollama-runner ollama-runner-old; do
    [ -x /tmp/bin/$R ] || continue
    for m in "$M_SMOL" "$M_GEMMA"; do
      tag=$(basename "$m" .gguf)
      for kv in f16 q8_0; do
        [ $R = ollama-runner-old ] && { [ $kv = q8_0 ] || [ "${SKIP_OLD:-0}" = 1 ]; } && continue
        section "$R $tag KV $kv"
        tmo 60 /tmp/bin/$R bench --model "$m" --device gpu $PN --threads 4 --cache-type-k $kv --cache-type-v $kv 2>&1 | grep -vE "XDG|^\s*$" | tail -4 | tee "$OUT/$R-$tag-$kv.txt"
      done
    done
  done
  section "summary"
  grep -h "^| " "$OUT"/llama-vk-*.md | grep -v -- "---" | sort -u
  grep -h "tok/s" "$OUT"/ollama-runner*.txt /dev/null
  for f in "$OUT"/ollama-runner*.txt; do echo "$(basename $f): $(grep tok/s $f)"; done
  section "done"
}
main 2>&1 | tee -a "$OUT/log.txt"
