#!/usr/bin/env bash
# Installs the Debian packages gcpo's build, tests, benchmarks and examples need, skipping
# those already present (apt-get update runs only when something is missing).
#   scripts/install-deps.sh            # library, tests, benchmarks, demo
#   scripts/install-deps.sh --trainer  # also libtorch for the example trainer, PyTorch + pytest for python/
#   scripts/install-deps.sh --compare  # also matplotlib for scripts/compare.py's figure
set -euo pipefail

pkgs=(cmake ninja-build g++ pkg-config catch2 libbenchmark-dev nlohmann-json3-dev libdlpack-dev
      libcli11-dev libfmt-dev libpng-dev libstb-dev)
for arg in "$@"; do
  case "$arg" in
    # libopenblas0-pthread: without it libtorch's matrix products run ~30x slower. libgloo-dev:
    # Gloo's headers, which c10d's ProcessGroupGloo.hpp includes (data parallelism, issue 11).
    # python3-torch, python3-pytest: the Python extension's tests (python/, issue 12), the same
    # PyTorch 1.13 as libtorch-dev. Real prompts and rewards (issue 13): libpcre2-dev (the
    # tokenizer's regexes), libcurl4-openssl-dev + libturbojpeg0-dev (the reward-server client),
    # python3-flask (the loopback reward server), nodejs (npm: Hugging Face's tokenizers, the
    # tokenizer's reference in the tests).
    --trainer) pkgs+=(libtorch-dev libopenblas0-pthread libgloo-dev python3-torch python3-pytest
                      libpcre2-dev libcurl4-openssl-dev libturbojpeg0-dev python3-flask nodejs) ;;
    --compare) pkgs+=(python3 python3-matplotlib) ;;
    *) echo "install-deps.sh: unknown option '$arg' (use --trainer and/or --compare)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "gcpo: installing ${missing[*]}" >&2
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
