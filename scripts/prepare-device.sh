#!/usr/bin/env bash
# Prepares .device/ (git-ignored) on this development machine, before a run of
# scripts/device-check.sh on the GPU machine, which has no Catch2, Google Benchmark,
# nlohmann-json or DLPack headers and no network. It copies, from this machine's Debian
# packages, every file they install outside /usr/share/doc and /usr/share/man, keeping the
# layout under .device/usr (so their CMake package files find their headers and libraries
# relative to themselves):
#   catch2 (v2 single header + CMake config + Catch.cmake), nlohmann-json3-dev, libdlpack-dev,
#   libcli11-dev, libpng-dev + libpng16-16 + zlib1g-dev (for the example trainer's stage),
#   libbenchmark-dev + libbenchmark1debian (headers, CMake config, libbenchmark.so.*,
#   libbenchmark_main.a; Debian ships no static libbenchmark.a).
# Symbolic links are copied as files (a carried tree need not keep links).
#
# Google Benchmark is a compiled library: if the carried libbenchmark.so does not load on the
# GPU machine (an older libstdc++ there), device-check.sh builds a static libbenchmark.a from
# its source instead, when .device/benchmark-src holds it. Give that source with
#   GCPO_BENCHMARK_SOURCE=<a google/benchmark v1.7.1 source tree (include/, src/)>, or
#   GCPO_BENCHMARK_SOURCE=<a google/benchmark git directory> (v1.7.1 is taken from it),
# (1.7.1 is the version Debian 12 ships, so the headers agree). Without it that fallback is absent.
#
# Usage: bash scripts/prepare-device.sh        (installs a missing package with apt-get)
# Then:  the device run carries `.device` and runs `bash scripts/device-check.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=.device
pkgs=(catch2 nlohmann-json3-dev libdlpack-dev libbenchmark-dev libbenchmark1debian libcli11-dev libpng-dev libpng16-16 zlib1g-dev)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "prepare-device: installing ${missing[*]}" >&2
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

rm -rf "${dest:?}/usr" "${dest:?}/MANIFEST.txt"
[[ -n "${GCPO_BENCHMARK_SOURCE:-}" ]] && rm -rf "${dest:?}/benchmark-src"
mkdir -p "$dest/usr"
count=0
for p in "${pkgs[@]}"; do
  while IFS= read -r f; do
    case "$f" in
      /usr/share/doc/* | /usr/share/man/* | /usr/share/lintian/*) continue ;;
      /usr/*) ;;
      *) continue ;;
    esac
    [[ -d "$f" ]] && continue  # directories (and links to them: /usr/include/libpng) come with their files
    [[ -e "$f" ]] || continue
    mkdir -p "$dest$(dirname "$f")"
    cp -L "$f" "$dest$f"
    count=$((count + 1))
  done < <(dpkg -L "$p")
done

# Optional: Google Benchmark's source, for the static fallback.
src_note="absent (GCPO_BENCHMARK_SOURCE not given)"
[[ -d "$dest/benchmark-src/src" ]] && src_note="kept from an earlier run of this script"
if [[ -n "${GCPO_BENCHMARK_SOURCE:-}" ]]; then
  mkdir -p "$dest/benchmark-src"
  if [[ -f "$GCPO_BENCHMARK_SOURCE/HEAD" && -d "$GCPO_BENCHMARK_SOURCE/objects" ]]; then
    git --git-dir="$GCPO_BENCHMARK_SOURCE" archive v1.7.1 include src LICENSE | tar -x -C "$dest/benchmark-src"
    src_note="google/benchmark v1.7.1 from the git directory $GCPO_BENCHMARK_SOURCE"
  elif [[ -d "$GCPO_BENCHMARK_SOURCE/src" && -d "$GCPO_BENCHMARK_SOURCE/include/benchmark" ]]; then
    cp -r "$GCPO_BENCHMARK_SOURCE/include" "$GCPO_BENCHMARK_SOURCE/src" "$dest/benchmark-src/"
    [[ -f "$GCPO_BENCHMARK_SOURCE/LICENSE" ]] && cp "$GCPO_BENCHMARK_SOURCE/LICENSE" "$dest/benchmark-src/"
    src_note="copied from $GCPO_BENCHMARK_SOURCE"
  else
    echo "prepare-device: GCPO_BENCHMARK_SOURCE=$GCPO_BENCHMARK_SOURCE is neither a source tree nor a git directory" >&2
    exit 1
  fi
fi

{
  echo "# .device/ made by scripts/prepare-device.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ) ($(uname -m), $(sed -n 's/^PRETTY_NAME=//p' /etc/os-release | tr -d '"'))"
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' + uncommitted changes')"
  for p in "${pkgs[@]}"; do dpkg-query -W -f='package ${Package} ${Version}\n' "$p"; done
  echo "benchmark source: $src_note"
} > "$dest/MANIFEST.txt"

cat "$dest/MANIFEST.txt"
echo "prepare-device: $count files copied into $dest/usr ($(du -sh "$dest" | cut -f1) in all)"
echo "prepare-device: now run on the GPU machine, carrying .device: bash scripts/device-check.sh"
