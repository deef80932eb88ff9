#!/usr/bin/env bash
# Builds and runs gcpo's main demo on a fresh Debian machine (installing what is missing):
# one GCPO step's operators (token statistics, group similarity, critical-token selection,
# advantages, loss, backward to the logits) on realistic synthetic data at Janus-Pro shapes.
# Usage: scripts/demo.sh      (environment: JOBS=<n> parallel jobs, default nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
bash scripts/install-deps.sh
cmake -S . -B build-demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DGCPO_ENABLE_CUDA=OFF \
  -DGCPO_BUILD_TESTS=OFF -DGCPO_BUILD_BENCH=OFF -DGCPO_BUILD_EXAMPLES=ON
cmake --build build-demo -j "$JOBS" --target gcpo_demo
./build-demo/examples/gcpo_demo
