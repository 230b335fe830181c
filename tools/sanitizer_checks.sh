#!/usr/bin/env bash
# The checking runs of `tools/setup.sh --test` (and so of CI): a clang build with AddressSanitizer +
# UndefinedBehaviorSanitizer and the libFuzzer targets (CUDA off) in its own build directory, the
# cpu-labelled tests run in it, the tests of threaded code in a ThreadSanitizer build (DIR-thread), then
# each fuzz target of tests/fuzz for FUZZ_SECONDS seconds (default 60), FUZZ_JOBS targets at a time
# (default: the number of cores), starting from its seed corpus tests/fuzz/corpus/<target>. Any sanitizer report, failed test or fuzz finding fails the script.
#   tools/sanitizer_checks.sh [--build-dir DIR] [--fuzz-only] [TARGET...]
# A long fuzz run of some targets (what grows the corpus is kept in DIR/fuzz-corpus/<target>, findings are
# written to DIR/fuzz-findings/<target>/, the log to DIR/fuzz-logs/<target>.log):
#   FUZZ_SECONDS=3600 tools/sanitizer_checks.sh --fuzz-only fuzz_gguf_model fuzz_state_file
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="$root/build-sanitize"
fuzz_only=0
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build_dir="$2"; shift ;;
    --fuzz-only) fuzz_only=1 ;;
    -*) echo "sanitizer_checks.sh: unknown option '$1' (expected --build-dir DIR, --fuzz-only, TARGET...)" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
jobs="$(nproc)"
fuzz_seconds="${FUZZ_SECONDS:-60}"
fuzz_jobs="${FUZZ_JOBS:-$jobs}"
# One input running longer than this is a finding (a hang).
fuzz_input_timeout_s=30
if [[ ${#targets[@]} -eq 0 ]]; then
  for src in "$root"/tests/fuzz/fuzz_*.cpp; do
    name="$(basename "$src" .cpp)"
    [[ "$name" == fuzz_support ]] || targets+=("$name")
  done
fi

export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DDENDRO_CUDA=OFF -DDENDRO_FUZZ=ON "${launcher[@]}" >/dev/null
cmake --build "$build_dir" -j "$jobs"

if [[ $fuzz_only -eq 0 ]]; then
  echo "sanitizer_checks.sh: cpu tests under ASan + UBSan" >&2
  ctest --test-dir "$build_dir" -L cpu --output-on-failure -j "$jobs"

  # The tests whose code runs on several threads, under ThreadSanitizer (a build of its own).
  tsan_dir="$build_dir-thread"
  tsan_tests=(test_thread_pool test_cpu_backend test_perplexity test_prefix_cache)
  cmake -S "$root" -B "$tsan_dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DDENDRO_CUDA=OFF -DDENDRO_TSAN=ON "${launcher[@]}" >/dev/null
  cmake --build "$tsan_dir" -j "$jobs" --target "${tsan_tests[@]}"
  echo "sanitizer_checks.sh: threaded tests under TSan" >&2
  for t in "${tsan_tests[@]}"; do
    TSAN_OPTIONS="halt_on_error=1" "$tsan_dir/bin/$t" --gtest_brief=1
  done
fi

logs="$build_dir/fuzz-logs"
mkdir -p "$logs"
rm -f "$logs/failed"
# Prints one summary line; on a finding also the end of the log, and records the target in $logs/failed.
fuzz_one() {
  local target="$1" log="$logs/$1.log" corpus="$build_dir/fuzz-corpus/$1" findings="$build_dir/fuzz-findings/$1"
  mkdir -p "$corpus" "$findings"
  # The first corpus directory receives what the run adds; the committed seeds are only read.
  if "$build_dir/fuzz/$target" -max_total_time="$fuzz_seconds" -timeout="$fuzz_input_timeout_s" \
       -print_final_stats=1 -artifact_prefix="$findings/" "$corpus" "$root/tests/fuzz/corpus/$target" \
       >"$log" 2>&1; then
    local runs speed cov
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1)"
    echo "fuzz: $target: no findings in ${fuzz_seconds} s ($runs runs, $speed exec/s, $cov)"
  else
    echo "fuzz: $target: FINDING, reproduce with: $build_dir/fuzz/$target $findings/<file> (log: $log)"
    tail -n 60 "$log"
    echo "$target" >>"$logs/failed"
  fi
}
echo "sanitizer_checks.sh: fuzzing ${#targets[@]} targets for ${fuzz_seconds} s each, $fuzz_jobs at a time" >&2
for target in "${targets[@]}"; do
  while [[ $(jobs -rp | wc -l) -ge $fuzz_jobs ]]; do wait -n || true; done
  fuzz_one "$target" &
done
wait
if [[ -f "$logs/failed" ]]; then
  echo "sanitizer_checks.sh: fuzz findings in: $(tr '\n' ' ' <"$logs/failed")" >&2
  exit 1
fi
