#!/usr/bin/env bash
# Builds and runs every gcpo test on a fresh Debian machine (installing what is missing):
#  1. the normal build (Release): host tests, conformance, consumer (find_package) test,
#     example-trainer tests when libtorch is present, the Python extension (python/, built with
#     -DGCPO_BUILD_PYTHON=ON) and its pytest suite (CTest "python: pytest"),
#     every CUDA test run by the SIMT simulator
#     (tests/sim: the real kernels on CPU threads, CTest names "sim: ..."), and, when nvcc is
#     found, every CUDA target compiled for sm_80 and sm_90 (the GPU tests are reported skipped
#     by CTest without a GPU);
#  2. the same host tests built with AddressSanitizer + UndefinedBehaviorSanitizer;
#  3. the simulated CUDA tests built with ThreadSanitizer (the block's threads as free OS
#     threads: shared- and global-memory races between threads of a block are reported);
#  4. with nvcc: the ptxas register-spill check of the hot kernels.
# Usage: scripts/test.sh     (environment: JOBS=<n> parallel jobs, default nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

bash scripts/install-deps.sh --trainer --compare

cuda=OFF
if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then
  cuda=ON
  export PATH="/usr/local/cuda/bin:$PATH"
fi

echo "== gcpo: build (Release, CUDA=$cuda) =="
# JANUS_REQUIRE_DIST: the data-parallel tests must build here (install-deps brings Gloo's headers);
# JANUS_REQUIRE_IO: so must the tokenizer and the reward client (PCRE2, libcurl, libjpeg-turbo).
# GCPO_BUILD_PYTHON: the PyTorch extension and the gcpo package in build/python (install-deps
# brings python3-torch and python3-pytest); CTest runs its pytest suite.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGCPO_ENABLE_CUDA=$cuda -DCMAKE_CUDA_ARCHITECTURES="80;90" \
  -DJANUS_REQUIRE_DIST=ON -DJANUS_REQUIRE_IO=ON -DGCPO_BUILD_PYTHON=ON
cmake --build build -j "$JOBS"
echo "== gcpo: tests =="
ctest --test-dir build --output-on-failure -j "$JOBS"

echo "== gcpo: tests under AddressSanitizer + UndefinedBehaviorSanitizer =="
# (The simulator's serial schedule switches stacks between fibers, which ASan does not follow:
# the simulated tests run in stages 1 and 3.)
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGCPO_SANITIZE=address,undefined \
  -DGCPO_ENABLE_CUDA=OFF -DGCPO_BUILD_BENCH=OFF -DGCPO_BUILD_EXAMPLES=OFF -DGCPO_CUDA_SIMULATOR=OFF
cmake --build build-asan -j "$JOBS"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$JOBS"

echo "== gcpo: simulated CUDA tests under ThreadSanitizer =="
# Every block's threads run as free OS threads (GCPO_SIM_SCHEDULE=concurrent, the default under
# TSan); any report fails the test (halt_on_error). The cases tagged [slow] (the wide sweeps,
# the same kernels on more shapes) and the conformance chain are left to stage 1: under TSan a
# 1024-thread block costs seconds.
cmake -S . -B build-sim-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGCPO_SANITIZE=thread \
  -DGCPO_ENABLE_CUDA=OFF -DGCPO_BUILD_BENCH=OFF -DGCPO_BUILD_EXAMPLES=OFF -DGCPO_INSTALL=OFF
cmake --build build-sim-tsan -j "$JOBS" --target gcpo_sim_tests
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  ctest --test-dir build-sim-tsan -L cuda-sim --output-on-failure -j "$JOBS"

if [[ $cuda == ON && -x scripts/check-spills.sh ]]; then
  echo "== gcpo: ptxas register-spill check =="
  bash scripts/check-spills.sh
fi
echo "== gcpo: all tests passed =="
