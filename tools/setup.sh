#!/usr/bin/env bash
# Sets Dendro up on a Debian machine: installs the build dependencies that are missing (apt-get), then
# configures build/ and builds the dendro executable only (the quick start's first text comes sooner).
# With --test, builds everything, prepares the openai client's venv for test_serve, runs the test suite
# (ctest), then tools/sanitizer_checks.sh: the cpu tests under ASan + UBSan (clang, in DIR-sanitize) and each
# fuzz target for FUZZ_SECONDS (default 60).
#   tools/setup.sh [--test] [--build-dir DIR] [-- extra cmake args]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="$root/build"
run_tests=0
cmake_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --test) run_tests=1 ;;
    --build-dir) build_dir="$2"; shift ;;
    --) shift; cmake_args=("$@"); break ;;
    *) echo "setup.sh: unknown option '$1' (expected --test, --build-dir DIR, -- CMAKE_ARGS)" >&2; exit 2 ;;
  esac
  shift
done

packages=(build-essential cmake pkg-config nlohmann-json3-dev libcli11-dev libsentencepiece-dev libgtest-dev
          libpcre2-dev libutf8proc-dev libxxhash-dev libzip-dev zlib1g-dev libcpp-httplib-dev)
# The sanitizer and fuzz builds of --test: clang, its sanitizer and libFuzzer runtimes, and llvm-symbolizer
# for readable reports; nginx for test_serve_nginx, which runs its own unprivileged instance.
if [[ $run_tests -eq 1 ]]; then
  packages+=(clang libclang-rt-14-dev llvm nginx-light)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup.sh: installing ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  # No package may start a system service (nginx would take port 80): policy-rc.d answers "not now"
  # during the install, unless the machine has one already (containers do).
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null && "${sudo_cmd[@]}" chmod +x "$policy"
    own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
  if [[ $own_policy -eq 1 ]]; then "${sudo_cmd[@]}" rm -f "$policy"; fi
fi

jobs="$(nproc)"
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "${cmake_args[@]}" >/dev/null

if [[ $run_tests -eq 0 ]]; then
  cmake --build "$build_dir" -j "$jobs" --target dendro
  exit 0
fi
cmake --build "$build_dir" -j "$jobs"
# The venv of the openai client that test_serve drives the server with (the test skips without it, offline);
# in build/ of the source tree, where the sanitizer build's tests find it too.
python3 "$root/tests/serve/openai_client.py" --prepare-only ||
  echo "setup.sh: warning: could not prepare the openai client venv; Serve.OpenAiPythonClient will skip" >&2
# GPU tests skip by themselves where no GPU is present.
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
exec "$root/tools/sanitizer_checks.sh" --build-dir "$build_dir-sanitize"
