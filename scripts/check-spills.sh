#!/usr/bin/env bash
# scripts/check-spills.sh - compiles every kernels/*.cu with `ptxas -v` for each architecture
# (default: sm_80 and sm_90), prints one line per kernel (registers, stack, spill bytes) and
# fails when any kernel spills registers (spill stores or loads > 0).
#
# usage: scripts/check-spills.sh [arch...]        e.g. scripts/check-spills.sh 90
# env:   NVCC (default nvcc), NVCC_FLAGS (extra flags), GCPO_SPILL_ALLOW (extended regex of
#        kernel names whose spills are tolerated; default: none)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nvcc=${NVCC:-nvcc}
archs=("$@")
[ ${#archs[@]} -eq 0 ] && archs=(80 90)
allow=${GCPO_SPILL_ALLOW:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

demangle() { if command -v cu++filt >/dev/null 2>&1; then cu++filt; elif command -v c++filt >/dev/null 2>&1; then c++filt; else cat; fi; }

status=0
printf '%-6s %-14s %5s %6s %7s %7s  %s\n' arch file regs stack spill_st spill_ld kernel
for arch in "${archs[@]}"; do
  for src in "$root"/kernels/*.cu; do
    name=$(basename "$src" .cu)
    log="$tmp/$name.$arch.log"
    # The library's own flags (kernels/CMakeLists.txt), one architecture at a time.
    if ! "$nvcc" -std=c++17 -O3 --expt-relaxed-constexpr -I"$root/include" \
        -gencode "arch=compute_$arch,code=sm_$arch" -Xptxas -v ${NVCC_FLAGS:-} \
        -c "$src" -o "$tmp/$name.o" >"$log" 2>&1; then
      cat "$log"
      echo "check-spills: compiling $src for sm_$arch failed" >&2
      exit 2
    fi
    # ptxas prints, per entry: "Compiling entry function 'X' for 'sm_NN'", then a line with
    # "N bytes stack frame, N bytes spill stores, N bytes spill loads", then "Used N registers".
    awk -v arch="$arch" -v file="$name" '
      /Compiling entry function/ { match($0, /function .[^'"'"']*/); fn = substr($0, RSTART + 10, RLENGTH - 10); st = 0; ss = 0; sl = 0; next }
      /bytes stack frame/ { st = $(1+0); for (i = 1; i <= NF; ++i) { if ($(i+1) == "bytes" && $(i+2) == "stack") st = $i; if ($(i+2) == "spill" && $(i+3) == "stores,") ss = $i; if ($(i+2) == "spill" && $(i+3) == "loads") sl = $i } next }
      /Used [0-9]+ registers/ { if (fn == "") next; match($0, /Used [0-9]+ registers/); regs = substr($0, RSTART + 5, RLENGTH - 15); print arch "\t" file "\t" regs "\t" st "\t" ss "\t" sl "\t" fn; fn = "" }
    ' "$log" >"$tmp/$name.$arch.tsv"
    while IFS=$'\t' read -r a f regs st ss sl fn; do
      pretty=$(printf '%s' "$fn" | demangle)
      short=$(printf '%s' "$pretty" | sed -E 's/\(.*$//; s/^.*gcpo::detail::cuda_impl:://')
      targs=$(printf '%s' "$pretty" | sed -nE 's/^[^<]*(<.*>)\(.*$/\1/p' | sed -E 's/gcpo:://g; s/std:://g; s/ //g')
      printf 'sm_%-3s %-14s %5s %6s %7s %7s  %s\n' "$a" "$f" "$regs" "$st" "$ss" "$sl" "${short%%<*}$targs"
      if [ "$ss" != "0" ] || [ "$sl" != "0" ]; then
        if [ -n "$allow" ] && printf '%s' "$pretty" | grep -Eq "$allow"; then
          echo "  (spill tolerated by GCPO_SPILL_ALLOW)"
        else
          echo "  ^ SPILL in ${short%%<*}$targs (sm_$a)"
          status=1
        fi
      fi
    done <"$tmp/$name.$arch.tsv"
  done
done
if [ $status -ne 0 ]; then
  echo "check-spills: FAILED: register spills in the kernels above" >&2
else
  echo "check-spills: no register spills"
fi
exit $status
