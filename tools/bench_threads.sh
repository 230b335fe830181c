#!/usr/bin/env bash
# CPU decode and prefill with 1 and N threads, on an idle machine and with competing CPU-bound processes,
# for one or more dendro executables side by side (e.g. before and after a change). Prints one table row per
# executable x load x threads from `dendro run` on the bundled model (a long prompt, greedy tokens) and, with
# --model-130m FILE, from `dendro bench` on that model.
#   tools/bench_threads.sh [--threads N] [--busy K] [--tokens N] [--prompt-chars N] [--model-130m FILE] DENDRO...
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
threads="$(nproc)"
busy=1              # competing busy processes in the loaded runs
tokens=64
prompt_chars=20000  # of tinyshakespeare: ~5,000 tokens with the bundled model's tokenizer
model_130m=""
binaries=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift ;;
    --busy) busy="$2"; shift ;;
    --tokens) tokens="$2"; shift ;;
    --prompt-chars) prompt_chars="$2"; shift ;;
    --model-130m) model_130m="$2"; shift ;;
    -*) echo "bench_threads.sh: unknown option '$1'" >&2; exit 2 ;;
    *) binaries+=("$1") ;;
  esac
  shift
done
[[ ${#binaries[@]} -gt 0 ]] || { echo "bench_threads.sh: name at least one dendro executable" >&2; exit 2; }

scratch="$(mktemp -d)"
busy_pids=()
stop_busy() {
  for pid in "${busy_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${busy_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  busy_pids=()
}
trap 'stop_busy; rm -rf "$scratch"' EXIT
head -c "$prompt_chars" "$root/tests/data/text/tinyshakespeare.txt" > "$scratch/prompt.txt"

start_busy() {
  for ((i = 0; i < busy; ++i)); do
    bash -c 'while :; do :; done' &
    busy_pids+=($!)
  done
  sleep 0.5
}

printf '| executable | load | -t | prompt tok | prompt tok/s | decode tok/s |%s\n' \
  "$([[ -n $model_130m ]] && echo ' 130m pp128 tok/s | 130m tg32 tok/s |')"
printf '| --- | --- | ---: | ---: | ---: | ---: |%s\n' "$([[ -n $model_130m ]] && echo ' ---: | ---: |')"
for load in idle busy; do
  [[ $load == busy ]] && start_busy
  for bin in "${binaries[@]}"; do
    for t in 1 "$threads"; do
      # dendro run's closing line: "prompt N tok in S s (R tok/s) | generated M tok in S s (R tok/s, ...".
      stats="$("$bin" run -f "$scratch/prompt.txt" -n "$tokens" --temp 0 --repeat-penalty 1 -t "$t" 2>&1 >/dev/null |
               grep '^dendro: prompt')"
      prompt_tok="$(sed -E 's/^dendro: prompt ([0-9]+) tok.*/\1/' <<<"$stats")"
      prompt_rate="$(sed -E 's/^dendro: prompt [^(]*\(([0-9.]+) tok\/s\).*/\1/' <<<"$stats")"
      decode_rate="$(sed -E 's/.*generated [0-9]+ tok in [0-9.]+ s \(([0-9.]+) tok\/s.*/\1/' <<<"$stats")"
      extra=""
      if [[ -n $model_130m ]]; then
        json="$("$bin" bench -m "$model_130m" -p 128 -n 32 -r 3 -t "$t" --json)"
        extra="$(python3 -c 'import json, sys
print(" | ".join("%.1f" % t["tokens_per_second"] for t in json.load(sys.stdin)["results"]) + " |")' <<<"$json")"
      fi
      printf '| %s | %s | %s | %s | %s | %s |%s\n' "$bin" "$load$([[ $load == busy ]] && echo " ($busy)")" \
        "$t" "$prompt_tok" "$prompt_rate" "$decode_rate" "${extra:+ $extra}"
    done
  done
  stop_busy
done
echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
