#!/usr/bin/env bash
# Everything a session with an NVIDIA Hopper GPU runs for the CUDA backend, writing logs and results under
# $OUT (default ./gpu-session-out):
#   deps   (run where apt works, before the GPU session) downloads the .deb files of the build dependencies
#          into .debs/ (git-excluded), so that a machine without them (and without network) can build
#   build  configures build-gpu/ with the CUDA backend for sm_90 and builds everything
#   test   runs the gpu-labelled tests (ctest -L gpu) and test_bench_cli
#   bench  dendro bench on random mamba-130m and mamba-2.8b models (f16; 2.8b also q8_0): prefill 2048 at
#          batch 1, decode 128 at batch 1 and 16, the llama-bench-style pp512/tg128 table, and the prompt
#          cache's time to first token (8,000 cached + 32 new tokens) against cold
#   hf     tools/bench_hf.py: HF transformers on the same shapes, for comparison
#   all    build test bench hf
# Each step fits one 10-minute device call; build outputs persist between calls on a warm machine.
#   tools/gpu_session.sh [--python PYTHON] STEP...
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$root/gpu-session-out}"
build="$root/build-gpu"
models="$build/bench-models"
python=python3
steps=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --python) python="$2"; shift ;;
    deps|build|test|bench|hf|all) steps+=("$1") ;;
    *) echo "gpu_session.sh: unknown argument '$1' (expected --python PY, deps, build, test, bench, hf, all)" >&2
       exit 2 ;;
  esac
  shift
done
[[ ${#steps[@]} -eq 0 ]] && steps=(all)
mkdir -p "$out"

deb_packages=(nlohmann-json3-dev libcli11-dev libsentencepiece-dev libsentencepiece0 googletest libgtest-dev
              libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libutf8proc-dev libutf8proc2
              libxxhash-dev libxxhash0 pkgconf pkgconf-bin libpkgconf3 pkg-config)

step_deps() {
  mkdir -p "$root/.debs"
  local exclude="$root/.git/info/exclude" entry
  for entry in /.debs/ /.debs-root/ /gpu-session-out/; do
    grep -qxF "$entry" "$exclude" 2>/dev/null || echo "$entry" >>"$exclude"
  done
  (cd "$root/.debs" && apt-get download "${deb_packages[@]}")
}

# Unpacks .debs/ into a private prefix when the machine lacks the build dependencies (the GPU machines have
# no package registry); the packages' pkg-config files are pointed at that prefix.
use_carried_debs() {
  if pkg-config --exists sentencepiece libpcre2-8 libutf8proc libxxhash 2>/dev/null &&
     [[ -e /usr/include/CLI/CLI.hpp && -e /usr/include/nlohmann/json.hpp ]]; then
    return
  fi
  if ! compgen -G "$root/.debs/*.deb" >/dev/null; then
    echo "gpu_session.sh: build dependencies missing and no .debs/ to unpack (run '$0 deps' where apt works," \
         "then carry .debs)" >&2
    return
  fi
  local prefix="$root/.debs-root"
  rm -rf "$prefix" && mkdir -p "$prefix"
  for deb in "$root"/.debs/*.deb; do dpkg -x "$deb" "$prefix"; done
  find "$prefix" -name '*.pc' -exec sed -i "s|/usr|$prefix/usr|g" {} +
  local libdir="$prefix/usr/lib/x86_64-linux-gnu"
  export PKG_CONFIG_PATH="$libdir/pkgconfig:$prefix/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export CPATH="$prefix/usr/include${CPATH:+:$CPATH}"
  export LIBRARY_PATH="$libdir${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export CMAKE_PREFIX_PATH="$prefix/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  command -v pkg-config >/dev/null || export PKG_CONFIG="$prefix/usr/bin/pkgconf"
}

step_build() {
  use_carried_debs
  { nvidia-smi; nvcc --version; g++ --version; cmake --version; } >"$out/machine.txt" 2>&1
  local pkg_config_flag=()
  [[ -n "${PKG_CONFIG:-}" ]] && pkg_config_flag=(-DPKG_CONFIG_EXECUTABLE="$PKG_CONFIG")
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDENDRO_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    "${pkg_config_flag[@]}" >"$out/build.log" 2>&1 &&
    cmake --build "$build" -j "$(nproc)" >>"$out/build.log" 2>&1
  local status=$?
  echo "build: exit $status (log: build.log)"
  return $status
}

step_test() {
  use_carried_debs
  ctest --test-dir "$build" -L gpu --output-on-failure -j 1 >"$out/gpu-tests.log" 2>&1
  local gpu_status=$?
  "$build/bin/test_bench_cli" >"$out/bench-cli-test.log" 2>&1
  local cli_status=$?
  echo "gpu tests: exit $gpu_status (gpu-tests.log); test_bench_cli: exit $cli_status (bench-cli-test.log)"
  tail -n 5 "$out/gpu-tests.log"
  [[ $gpu_status -eq 0 && $cli_status -eq 0 ]]
}

step_bench() {
  use_carried_debs
  mkdir -p "$models"
  local dendro="$build/bin/dendro" status=0
  for spec in 130m:f16 2.8b:f16 2.8b:q8_0; do
    local shape="${spec%%:*}" type="${spec##*:}"
    local model="$models/random-$shape-$type.gguf" tag="$shape-$type"
    if [[ ! -s "$model" ]]; then
      "$dendro" bench --random-shape "$shape" --type "$type" --random-out "$model" -p 0 -n 1 -r 1 --device cuda \
        >/dev/null 2>>"$out/bench.log" || status=1
    fi
    {
      "$dendro" bench -m "$model" -p 2048 -n 0 -r 5 --device cuda --json >"$out/bench-$tag-pp2048.json" &&
        "$dendro" bench -m "$model" -p 0 -n 128 -r 5 -b 1 --device cuda --json >"$out/bench-$tag-tg128-b1.json" &&
        "$dendro" bench -m "$model" -p 0 -n 128 -r 5 -b 16 --device cuda --json >"$out/bench-$tag-tg128-b16.json" &&
        "$dendro" bench -m "$model" -p 512 -n 128 -r 5 --device cuda &&
        "$dendro" cache bench "$models/cache-bench-$tag" -m "$model" --prefix 8000 --new 32 -r 3 --device cuda
    } >>"$out/bench.md" 2>>"$out/bench.log" || status=1
  done
  cat "$out/bench.md"
  echo "bench: exit $status (bench.md, bench-*.json, bench.log)"
  return $status
}

step_hf() {
  PYTHONUNBUFFERED=1 "$python" "$root/tools/bench_hf.py" --shapes 130m,2.8b --prefill 2048 --decode 128 \
    --batches 1,16 --reps 3 --json "$out/bench-hf.json" >"$out/bench-hf.md" 2>"$out/bench-hf.log"
  local status=$?
  cat "$out/bench-hf.md"
  echo "hf: exit $status (bench-hf.md, bench-hf.json, bench-hf.log)"
  return $status
}

overall=0
for step in "${steps[@]}"; do
  case "$step" in
    deps) step_deps || overall=1 ;;
    build) step_build || overall=1 ;;
    test) step_test || overall=1 ;;
    bench) step_bench || overall=1 ;;
    hf) step_hf || overall=1 ;;
    all)
      if step_build; then
        step_test || overall=1
        step_bench || overall=1
        step_hf || overall=1
      else
        overall=1
      fi ;;
  esac
done
exit $overall
