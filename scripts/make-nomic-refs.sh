#!/usr/bin/env bash
# Regenerates runner/tests/data/embedding-refs-nomic-synthetic.json: llama.cpp's sentence
# embeddings of the synthetic nomic-bert model (scripts/make-synthetic-models.py with
# SYNTHETIC_ARCHS=nomic-bert: nomic-embed-text's encoder at small size, MiniLM's WordPiece
# vocabulary) in F32 and Q8_0, with the token ids of each sentence.
#
# For each type, `llama-embedding` (built at $LLAMA_CPP, default /opt/peer/llama.cpp; see
# docs/PEER.md) embeds every sentence in one run, each as its own sequence, with the
# pooling the file names (mean) and L2 normalization (its default, --embd-normalize 2), on
# 2 threads; `llama-tokenize --ids` gives the ids. The JSON holds the command lines, the
# host's widest vectors, and per type and sentence the text, the ids and the vector (the
# 7 decimals llama-embedding prints: enough for a cosine to 1e-10).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
llama="${LLAMA_CPP:-/opt/peer/llama.cpp}"
bin="$llama/build/bin"
models="${OLLAMA_SYNTHETIC_MODELS:-$HOME/.cache/ollamad/synthetic}"
out="$root/runner/tests/data/embedding-refs-nomic-synthetic.json"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

SYNTHETIC_ARCHS=nomic-bert python3 "$root/scripts/make-synthetic-models.py" "$models"

# Varied sentences: short and long, capitals, digits, punctuation, accents (stripped),
# CJK (split per character), an emoji (unknown), a word split into pieces. One a line.
cat > "$work/sentences.txt" <<'EOF'
Hello world.
search_query: What is the capital of France?
search_document: Paris is the capital and most populous city of France, with an estimated population of 2,102,650 residents in January 2023.
The café's crème brûlée was naïvely überpriced at €12.50!
東京は日本の首都です。 Tokyo is the capital of Japan 😀
Photosynthesis converts light energy into chemical energy; carbon dioxide and water are combined, using sunlight captured by chlorophyll, to form glucose and oxygen.
Unbelievably, the antidisestablishmentarianism debate continued.
a
EOF

sep='<#sep#>'
for type in F32 Q8_0; do
    model="$models/nomic-bert-synthetic-$type.gguf"
    prompt="$(awk -v s="$sep" 'NR > 1 { printf "%s", s } { printf "%s", $0 }' "$work/sentences.txt")"
    cmd=("$bin/llama-embedding" -m "$model" -t 2 -c 2048 -b 2048 -ub 2048 -fa off
         --embd-separator "$sep" --embd-output-format json -p "$prompt")
    "${cmd[@]}" > "$work/$type.json" 2> "$work/$type.log"
    printf "%q " "${cmd[@]}" | sed "s|$models|\$OLLAMA_SYNTHETIC_MODELS|; s|$bin|\$LLAMA_CPP/build/bin|" \
        > "$work/$type.cmd"
    : > "$work/$type.ids"
    while IFS= read -r line; do
        "$bin/llama-tokenize" -m "$model" -p "$line" --ids --log-disable 2>/dev/null \
            >> "$work/$type.ids"
    done < "$work/sentences.txt"
done

python3 - "$work" "$out" <<'EOF'
import json, pathlib, re, sys
work, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
texts = (work / "sentences.txt").read_text(encoding="utf-8").splitlines()
flags = open("/proc/cpuinfo").read()
host = "avx512" if re.search(r"\bavx512f\b", flags) else "avx2" if " avx2" in flags else "other"
doc = {"script": "scripts/make-nomic-refs.sh", "host_simd": host, "types": {}}
for ty in ("F32", "Q8_0"):
    try:
        data = json.loads((work / f"{ty}.json").read_text())["data"]
    except ValueError as e:
        sys.exit(f"llama-embedding's {ty} output is not JSON ({e}); its log:\n"
                 + (work / f"{ty}.log").read_text()[-2000:])
    ids = [json.loads(l) for l in (work / f"{ty}.ids").read_text().splitlines() if l.strip()]
    assert len(data) == len(texts) == len(ids), (len(data), len(texts), len(ids))
    doc["types"][ty] = {
        "command": (work / f"{ty}.cmd").read_text().strip(),
        "sentences": [{"text": t, "ids": i, "embedding": d["embedding"]}
                      for t, i, d in zip(texts, ids, data)],
    }
out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
print(f"wrote {out}", file=sys.stderr)
EOF
