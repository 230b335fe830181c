#!/usr/bin/env bash
# Prepares, on a machine where apt works, what a GPU machine without network needs to build Dendro: the Debian
# build dependencies of CMakeLists.txt, downloaded with `apt-get download` into .gpu-deps/debs/ and unpacked
# into .gpu-deps/root/ (git-ignored). Only .gpu-deps/root travels (the device tool's `carry`); its pkg-config
# files are made relocatable (${pcfiledir}), so the tree works wherever the working tree lands.
#   tools/gpu_session_deps.sh            download + unpack, then print the size check
#   tools/gpu_session_deps.sh --size     only the size check: working tree + carried paths against the limit
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="$root/.gpu-deps"
# What travels to the device: the working tree (tracked + untracked-not-ignored files) and these paths.
carry_paths=(.gpu-deps/root)
limit_bytes=$((64 * 1024 * 1024))

# Headers, CMake/pkg-config files and shared libraries of every find_package/pkg_check_modules of
# CMakeLists.txt and tests/CMakeLists.txt, with pkgconf to read them (the device image has no pkg-config).
# Runtime libraries every Ubuntu/Debian image has (libc, libstdc++, zlib1g, libbz2, libcrypto) are not carried.
packages=(nlohmann-json3-dev libcli11-dev googletest libgtest-dev libgmock-dev
          libsentencepiece-dev libsentencepiece0 libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0
          libpcre2-posix3 libutf8proc-dev libutf8proc2 libxxhash-dev libxxhash0 libzip-dev libzip4 zlib1g-dev
          pkgconf pkgconf-bin libpkgconf3)

size_check() {
  local tree carried=0 path
  tree=$(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null |
         awk '{s += $1} END {print s + 0}')
  for path in "${carry_paths[@]}"; do
    [[ -e "$root/$path" ]] || { echo "size check: carried path $path is missing (run $0 first)" >&2; return 1; }
    carried=$((carried + $(du -sb "$root/$path" | cut -f1)))
  done
  local total=$((tree + carried))
  printf 'size check: working tree %d bytes + carry (%s) %d bytes = %d bytes (%.1f MiB) of %d MiB\n' \
    "$tree" "${carry_paths[*]}" "$carried" "$total" "$(echo "$total / 1048576" | bc -l)" $((limit_bytes / 1048576))
  if [[ $total -ge $limit_bytes ]]; then echo "size check: OVER the limit" >&2; return 1; fi
  echo "size check: OK"
}

if [[ "${1:-}" == "--size" ]]; then size_check; exit; fi

rm -rf "$deps/debs" "$deps/root"
mkdir -p "$deps/debs" "$deps/root"
(cd "$deps/debs" && apt-get download "${packages[@]}")
for deb in "$deps"/debs/*.deb; do dpkg -x "$deb" "$deps/root"; done
# Nothing of the documentation is needed to build.
rm -rf "$deps/root/usr/share/doc" "$deps/root/usr/share/man" "$deps/root/usr/share/lintian"
# Every /usr path (prefix=, libdir=, -I) -> relative to the .pc file's own folder.
while IFS= read -r -d '' pc; do
  rel=$(realpath --relative-to="$(dirname "$pc")" "$deps/root/usr")
  sed -i -E "s#(=|-I|-L)/usr(/|\$|[[:space:]])#\1\\\${pcfiledir}/$rel\2#g" "$pc"
  if grep -qE '=/usr(/|$)' "$pc"; then echo "gpu_session_deps.sh: $pc still names /usr" >&2; exit 1; fi
done < <(find "$deps/root" -name '*.pc' -print0)
size_check
