#!/usr/bin/env bash
# The whole CUDA check in one device call (docs/gpu-session.md gives the exact `run` call). On a fresh H200
# machine with only the CUDA toolkit, cmake, ninja and python3 (torch, transformers), no network:
#   gpu        prints nvidia-smi; aborts (exit 3) at once when no GPU is visible
#   cublas     finds libcublas.so.<major> (DENDRO_CUBLAS_LIBRARY, ld cache, $CUDA_HOME/lib64, torch's bundled
#              NVIDIA libraries); aborts (exit 4) when there is none; exports DENDRO_CUBLAS_LIBRARY for dendro
#   deps       points CMake and pkg-config at .gpu-deps/root (tools/gpu_session_deps.sh made it; carried);
#              aborts (exit 5) when it is missing
#   configure, build-dendro, build-tests   Ninja, sm_90, -j16, only dendro and the gpu_test_* executables;
#              the random 130m and 2.8b models are written (on the CPU) while the tests build
#   test-*     each gpu test executable with DENDRO_REQUIRE_GPU=1: a skip for want of a GPU is a failure
#   memcheck-*, racecheck-*   compute-sanitizer on the kernel tests (small shapes)
#   smoke      greedy generation with the bundled model on cuda, compared with cpu
#   bench-*    dendro bench on the random models (pp2048 + tg128 at batch 1, tg128 at batches 16 and 64), then
#              tools/bench_hf.py (HF transformers, same GPU); then Mamba-2: mamba2-2.7b pp2048 + tg128 and
#              pp8192 at batch 1, codestral-7b tg128 at batch 1, and HF at mamba2-2.7b (what budget is left)
# Every step runs under its own timeout, cut to what is left of --budget; the logs go into one archive,
# $OUT/gpu-session.tar.gz, with the step table in $OUT/summary.md, printed last.
#   tools/gpu_session.sh [--dry-run] [--budget SECONDS] [--python PYTHON]
# --dry-run runs the real logic of gpu, cublas and deps (nvidia-smi from PATH: a test puts a fake first)
# and prints every other step's command instead of running it; the archive and table are made the same way.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$root/gpu-session-out}"
build="$root/build-gpu"
deps_root="$root/.gpu-deps/root"
python=python3
dry_run=0
budget_s=520
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --budget) budget_s="$2"; shift ;;
    --python) python="$2"; shift ;;
    *) echo "gpu_session.sh: unknown argument '$1' (expected --dry-run, --budget SECONDS, --python PYTHON)" >&2
       exit 2 ;;
  esac
  shift
done
# Seconds kept back from the budget for the archive and the table.
readonly reserve_s=10
readonly jobs=16
readonly sanitizer_step_s=40 sanitizer_budget_s=150
# gpu_test_decode_fusion last: its 130m-width cases are the slowest under a sanitizer, so a spent budget cuts it
# rather than the others.
readonly kernel_tests=(gpu_test_norm_conv gpu_test_projection gpu_test_sampling gpu_test_selective_scan
                       gpu_test_ssm_decode gpu_test_mamba2_kernels gpu_test_decode_fusion)
# Sanitizer runs of kernel tests whose whole shape list would outlast sanitizer_step_s: a few small shapes.
declare -A sanitizer_filter=([gpu_test_mamba2_kernels]='--gtest_filter=*P6_N5*:*P40_N100*:*GatedNorm*')
# The Mamba-2 shapes benchmarked after the Mamba-1 ones (docs/cuda-notes.md, "Mamba-2", gives their floors).
readonly mamba2_shapes=(mamba2-2.7b codestral-7b)
mapfile -t gpu_tests < <(cd "$root/tests" && ls gpu_test_*.cpp | sed 's/\.cpp$//')
deadline=$((SECONDS + budget_s))
logs="$(mktemp -d "${TMPDIR:-/tmp}/dendro-gpu-session.XXXXXX")"
mkdir -p "$out" "$logs/bench"
steps="$logs/steps.tsv"
printf 'step\tstatus\tseconds\tnote\n' >"$steps"

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$steps"; }

# run_step NAME TIMEOUT_S COMMAND...: output in $logs/NAME.log; a dry run logs the command instead.
run_step() {
  local name="$1" limit="$2"; shift 2
  local left=$((deadline - SECONDS - reserve_s))
  if [[ $left -lt 5 ]]; then record "$name" skipped 0 "budget spent"; return 1; fi
  [[ $limit -gt $left ]] && limit=$left
  local start=$SECONDS status=0
  if [[ $dry_run -eq 1 ]]; then
    echo "[dry-run] timeout $limit $*" >"$logs/$name.log"
  else
    timeout -k 5 "$limit" "$@" >"$logs/$name.log" 2>&1 || status=$?
  fi
  local verdict=ok
  [[ $status -eq 124 || $status -eq 137 ]] && verdict="timeout(${limit}s)"
  [[ $status -ne 0 && $verdict == ok ]] && verdict="exit $status"
  record "$name" "$verdict" $((SECONDS - start)) "${step_note:-}"
  step_note=""
  [[ $status -eq 0 ]]
}

finish() {  # finish [CODE]: CODE, else 0 when every step says ok, 1 when not
  local code="${1:-}"
  if [[ -z "$code" ]]; then
    code=0
    tail -n +2 "$steps" | cut -f2 | grep -qvx ok && code=1
  fi
  tar -czf "$out/gpu-session.tar.gz" -C "$logs" . 2>/dev/null
  {
    echo "| step | status | s | note |"
    echo "| --- | --- | ---: | --- |"
    tail -n +2 "$steps" | awk -F'\t' '{printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4}'
    echo
    echo "gpu_session: exit $code$([[ $dry_run -eq 1 ]] && echo ' (dry run)'); archive gpu-session.tar.gz"
  } >"$out/summary.md"
  cat "$out/summary.md"
  rm -rf "$logs"
  exit "$code"
}

# Killed from outside (the device call's own limit): the archive and table still get written.
trap 'record killed "signal" 0 "stopped from outside"; finish 143' TERM INT

abort() {  # abort CODE STEP MESSAGE
  echo "gpu_session: $3" | tee -a "$logs/$2.log" >&2
  record "$2" "ABORT" 0 "$3"
  finish "$1"
}

# --- gpu: nvidia-smi, at once ---------------------------------------------------------------------------
if ! timeout 30 nvidia-smi 2>&1 | tee "$logs/gpu.log"; then
  abort 3 gpu "no GPU visible: nvidia-smi failed or is missing"
fi
if ! timeout 30 nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then abort 3 gpu "no GPU visible: nvidia-smi -L lists none"; fi
record gpu ok 0 "$(timeout 30 nvidia-smi -L 2>/dev/null | head -n 1)"

# --- cublas ------------------------------------------------------------------------------------------------
cuda_home="${CUDA_HOME:-/usr/local/cuda}"
cublas_major=$(sed -n 's/^#define CUBLAS_VER_MAJOR \([0-9]*\).*/\1/p' "$cuda_home/include/cublas_api.h" 2>/dev/null)
cublas_major="${cublas_major:-13}"
soname="libcublas.so.$cublas_major"
locate_cublas() {
  if [[ -n "${DENDRO_CUBLAS_LIBRARY:-}" ]]; then  # an explicit choice: that file or nothing
    [[ -f "$DENDRO_CUBLAS_LIBRARY" ]] && echo "$DENDRO_CUBLAS_LIBRARY"
    return
  fi
  local found
  found=$(ldconfig -p 2>/dev/null | awk -v n="$soname" '$1 == n {print $NF; exit}')
  [[ -n "$found" ]] && { echo "$found"; return; }
  for found in "$cuda_home/lib64/$soname" "$cuda_home/lib/$soname"; do
    [[ -f "$found" ]] && { echo "$found"; return; }
  done
  local torch_dir
  torch_dir=$(timeout 60 "$python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
  [[ -n "$torch_dir" ]] && find "$torch_dir/../nvidia" -name "$soname" 2>/dev/null | head -n 1
}
cublas_path=$(locate_cublas)
if [[ -z "$cublas_path" ]]; then
  abort 4 cublas "no $soname (DENDRO_CUBLAS_LIBRARY='${DENDRO_CUBLAS_LIBRARY:-}', ld cache, $cuda_home/lib64, torch's nvidia libraries)"
fi
export DENDRO_CUBLAS_LIBRARY="$cublas_path"
# cuBLASLt lies beside cuBLAS; the loader must find it there.
export LD_LIBRARY_PATH="$(dirname "$cublas_path")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "cuBLAS: $cublas_path" | tee "$logs/cublas.log"
record cublas ok 0 "$cublas_path"

# --- deps -------------------------------------------------------------------------------------------------
if [[ ! -d "$deps_root/usr" ]]; then
  [[ $dry_run -eq 1 ]] || abort 5 deps "no $deps_root: run tools/gpu_session_deps.sh where apt works and carry .gpu-deps/root"
  record deps ok 0 "dry run: $deps_root absent, CMake would use the system's packages"
else
  libdir="$deps_root/usr/lib/x86_64-linux-gnu"
  export PKG_CONFIG_PATH="$libdir/pkgconfig:$deps_root/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export LD_LIBRARY_PATH="$libdir:$LD_LIBRARY_PATH"
  export CMAKE_PREFIX_PATH="$deps_root/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  pkg_config="$deps_root/usr/bin/pkgconf"
  if ! "$pkg_config" --exists sentencepiece libpcre2-8 libutf8proc libxxhash libzip zlib 2>"$logs/deps.log"; then
    abort 5 deps "the carried pkg-config files do not resolve (deps.log)"
  fi
  record deps ok 0 "$deps_root"
fi

# --- build ------------------------------------------------------------------------------------------------
configure=(cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDENDRO_CUDA=ON
           -DCMAKE_CUDA_ARCHITECTURES=90)
[[ -n "${pkg_config:-}" ]] && configure+=(-DPKG_CONFIG_EXECUTABLE="$pkg_config")
run_step configure 90 "${configure[@]}" || finish 1
run_step build-dendro 240 ninja -C "$build" -j "$jobs" dendro || finish 1
dendro="$build/bin/dendro"
models="$build/bench-models"
[[ $dry_run -eq 1 ]] || mkdir -p "$models"  # a dry run writes nothing into the tree
# The random models are written on the CPU while the tests build.
generate_models() {
  local shape
  for shape in 130m 2.8b "${mamba2_shapes[@]}"; do
    [[ -s "$models/random-$shape-f16.gguf" ]] && continue
    step_note="random-$shape-f16" run_step "model-$shape" 150 "$dendro" bench --random-shape "$shape" --type f16 \
      --random-out "$models/random-$shape-f16.gguf" -p 1 -n 0 -r 1 --device cpu
  done
}
generate_models &
models_pid=$!
run_step build-tests 240 ninja -C "$build" -j "$jobs" "${gpu_tests[@]}" || { wait "$models_pid"; finish 1; }
step_note="unresolved libraries" run_step libraries 10 bash -c "! ldd '$dendro' '$build/bin/${gpu_tests[0]}' | grep 'not found'"

# --- tests ------------------------------------------------------------------------------------------------
for t in "${gpu_tests[@]}"; do
  run_step "test-$t" 90 env DENDRO_REQUIRE_GPU=1 "$build/bin/$t" --gtest_output="xml:$logs/$t.xml"
done
sanitizer="$(command -v compute-sanitizer || echo "$cuda_home/bin/compute-sanitizer")"
# The sanitizers slow kernels 10-100x: each run is capped, and all of them together, so the benchmarks keep
# their time.
sanitizer_end=$((SECONDS + sanitizer_budget_s))
for tool in memcheck racecheck; do
  for t in "${kernel_tests[@]}"; do
    limit=$((sanitizer_end - SECONDS))
    [[ $limit -gt $sanitizer_step_s ]] && limit=$sanitizer_step_s
    if [[ $limit -lt 1 ]]; then record "$tool-$t" skipped 0 "sanitizer budget (${sanitizer_budget_s}s) spent"; continue; fi
    filter=()
    [[ -n "${sanitizer_filter[$t]:-}" ]] && filter=("${sanitizer_filter[$t]}")
    run_step "$tool-$t" "$limit" env DENDRO_REQUIRE_GPU=1 "$sanitizer" --tool "$tool" --error-exitcode 1 "$build/bin/$t" \
      "${filter[@]}"
  done
done

# --- smoke ------------------------------------------------------------------------------------------------
for device in cuda cpu; do
  run_step "smoke-$device" 30 bash -c "'$dendro' run -p 'ROMEO:' -n 48 --temp 0 --device $device >'$logs/smoke-$device.txt'"
done
if [[ $dry_run -eq 0 ]]; then
  same=no
  cmp -s "$logs/smoke-cuda.txt" "$logs/smoke-cpu.txt" && same=yes
  record smoke-compare "$([[ $same == yes ]] && echo ok || echo differs)" 0 "greedy text on cuda = on cpu: $same"
fi

# --- bench ------------------------------------------------------------------------------------------------
# The numbers, one row per benchmark in the table: tokens/s of each test.
bench_numbers() {
  "$python" - "$@" <<'PY' 2>/dev/null
import json, sys
rows = []
for path in sys.argv[1:]:
    with open(path) as f:
        data = json.load(f)
    for r in data.get("results", []):
        model = f"{r['model']} " if "model" in r else ""
        rows.append(f"{model}{r['test']} {r['tokens_per_second']:.0f} t/s")
print("; ".join(rows))
PY
}
wait "$models_pid"
for shape in 130m 2.8b; do
  model="$models/random-$shape-f16.gguf"
  run_step "bench-$shape" 90 bash -c "'$dendro' bench -m '$model' -p 2048 -n 128 -r 3 --device cuda --json \
    >'$logs/bench/dendro-$shape-b1.json' && '$dendro' bench -m '$model' -p 0 -n 128 -b 16 -r 3 --device cuda \
    --json >'$logs/bench/dendro-$shape-b16.json' && '$dendro' bench -m '$model' -p 0 -n 128 -b 64 -r 3 \
    --device cuda --json >'$logs/bench/dendro-$shape-b64.json'" &&
    [[ $dry_run -eq 0 ]] &&
    record "dendro-$shape" ok 0 "$(bench_numbers "$logs/bench/dendro-$shape-b1.json" "$logs/bench/dendro-$shape-b16.json" \
      "$logs/bench/dendro-$shape-b64.json")"
done
run_step bench-hf 150 env PYTHONUNBUFFERED=1 "$python" "$root/tools/bench_hf.py" --shapes 130m,2.8b --prefill 2048 \
  --decode 128 --batches 1,16 --reps 2 --json "$logs/bench/hf.json" &&
  [[ $dry_run -eq 0 ]] && record hf ok 0 "$(bench_numbers "$logs/bench/hf.json")"
# Mamba-2 (issue 11): decode at batch 1 against the bandwidth floor, prefill at 2,048 and 8,192 tokens
# against the tensor-core floor (docs/cuda-notes.md, "Mamba-2").
model="$models/random-mamba2-2.7b-f16.gguf"
run_step bench-mamba2-2.7b 120 bash -c "'$dendro' bench -m '$model' -p 2048 -n 128 -r 3 --device cuda --json \
  >'$logs/bench/dendro-mamba2-2.7b-b1.json' && '$dendro' bench -m '$model' -p 8192 -n 0 -r 2 --device cuda --json \
  >'$logs/bench/dendro-mamba2-2.7b-pp8192.json'" &&
  [[ $dry_run -eq 0 ]] && record dendro-mamba2-2.7b ok 0 "$(bench_numbers "$logs/bench/dendro-mamba2-2.7b-b1.json" \
    "$logs/bench/dendro-mamba2-2.7b-pp8192.json")"
model="$models/random-codestral-7b-f16.gguf"
run_step bench-codestral-7b 90 bash -c "'$dendro' bench -m '$model' -p 512 -n 128 -r 3 --device cuda --json \
  >'$logs/bench/dendro-codestral-7b-b1.json'" &&
  [[ $dry_run -eq 0 ]] && record dendro-codestral-7b ok 0 "$(bench_numbers "$logs/bench/dendro-codestral-7b-b1.json")"
run_step bench-hf-mamba2 120 env PYTHONUNBUFFERED=1 "$python" "$root/tools/bench_hf.py" --shapes mamba2-2.7b \
  --prefill 2048 --decode 128 --batches 1 --reps 2 --json "$logs/bench/hf-mamba2.json" &&
  [[ $dry_run -eq 0 ]] && record hf-mamba2 ok 0 "$(bench_numbers "$logs/bench/hf-mamba2.json")"
finish
