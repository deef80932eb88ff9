#!/usr/bin/env bash
# scripts/device-check.sh - everything gcpo needs a GPU for, in one run (shared/guides/gpu.md):
#   1. prints the tools it found (nvcc, cmake, ninja, g++, driver + GPU via nvidia-smi, python3 +
#      torch + torch.cuda.is_available(), compute-sanitizer) and whether each carried library loads;
#   2. configures and builds with CUDA for sm_90 on every core: kernels (gcpo::cuda), tests (CPU
#      and CUDA) and the CUDA benchmarks (the host benchmarks only with GCPO_BUILD_ALL=1);
#   3. runs the CUDA tests (ctest -L cuda, or -R cuda where there is no label), the CPU tests, then
#      each CUDA test binary under compute-sanitizer --tool memcheck and --tool racecheck;
#   4. runs the CUDA benchmarks (scripts/run-cuda-bench.py: one process per operator family, JSON)
#      and the PyTorch-eager baseline (bench/baseline/torch_baseline.py);
#   5. builds the example trainer against the machine's libtorch (in the background, from step 3 on)
#      and runs 5 GCPO steps of the README demo with --device cuda (trainer-summary.json);
#   5b. Janus-Pro (issue 10), with the binaries of that build: janus-hf, our `forward` against
#      transformers' own Janus model (scripts/check_janus_transformers.py: a tiny random model in
#      the published layout, fp32, CPU); janus-1b, the random-weight Janus-Pro-1B written by
#      `janus_bench_pretrained write` and run in bf16 on the GPU (load time, one 576-token image
#      with CFG and the KV cache, a teacher-forced pass, a VQ decode, peak device memory); janus-rl,
#      `janus_bench_pretrained rl` on it: RL steps at the real shapes (N = 576, CFG 5, bf16, P 1 x
#      G 4, 2 steps) with step time, phases, tokens/s, the operators' share and peak memory;
#   5a. python (issue 12): the PyTorch extension built in the trainer's folder against the machine's
#      PyTorch with gcpo::cuda, its pytest suite with the CUDA tests (python/tests/test_cuda.py),
#      and python/bench/bench_official.py --device cuda in float32 and bf16;
#   5c. janus-dp (issue 11): with two GPUs or more, janus_trainer as 2 NCCL processes
#      (scripts/launch.sh, --dist-backend nccl) against 1 process on the README demo's warm start:
#      the per-step rollout digests must match; with one GPU (or a trainer built without c10d's
#      Gloo headers or NCCL) it says so and is skipped;
#   6. prints the stage results, then one summary table last (scripts/bench-summary.py): operator,
#      shape, dtype, time, GB/s, % of the copy bandwidth measured in the same run, floor, baseline,
#      speed-up; the goals of issue 3 just above it.
# Every stage has a time limit derived from one budget (GCPO_DEVICE_BUDGET_S, default 390 s), so
# the whole run ends in about 6.5 minutes on an H100 whatever hangs (about 5.5 expected); stages
# that run short of time are cut and reported, never silently dropped. The CPU tests run beside
# the CUDA tests, and the sanitizer runs 8 at a time.
#
# How to run it on the GPU machine (the device tool), from the repository root:
#   1. here, on the development machine, once per session:
#        bash scripts/prepare-device.sh
#      (copies Catch2, Google Benchmark, nlohmann-json and DLPack from the Debian packages into the
#      git-ignored .device/; with GCPO_BENCHMARK_SOURCE=<google/benchmark git dir or v1.7.1 tree>
#      it also carries Google Benchmark's source, built there only if the carried .so won't load)
#   2. run(command="bash scripts/device-check.sh", carry=[".device"], timeout_s=420)
#      That leaves room in the 15 device minutes for a rerun, even on a fresh machine (about 2
#      minutes to start each): run(command="GCPO_DEVICE_BUDGET_S=270 GCPO_SKIP=trainer bash scripts/device-check.sh",
#      carry=[".device"], timeout_s=300); on a still-warm machine the build folder is reused.
#      The trainer and Janus stages alone (no main build; the trainer build, the 1B directory of
#      a previous run on a still-warm machine are reused):
#      run(command="GCPO_SKIP='tests sanitizers bench baseline' bash scripts/device-check.sh",
#      carry=[".device"], timeout_s=420).
#   What comes back from $OUT (7 files): device-check.log (everything printed), summary.txt (the
#   full table, every shape), summary.json, bench_cuda.json (Google Benchmark JSON, merged),
#   baseline.jsonl (one JSON line per baseline case), logs.tar.gz (build, ctest, sanitizer,
#   benchmark and baseline logs), trainer-summary.json (the 5 GCPO steps with --device cuda).
#
# Without a GPU (a development machine) it says so, still configures and builds, runs the CPU
# tests, and exits 3. Exit status: 0 every stage ran and passed; 1 the build, a test or a
# sanitizer run failed (a test that hangs fails: ctest's per-test timeout is under its stage's
# limit); 3 no GPU (nothing failed); 4 nothing failed but some stage was not run or was cut by
# the time budget (listed with its reason: a stage out of time is SKIP, never FAIL). Before the
# sanitizer stages, compute-sanitizer checks a trivial kernel: a machine where it refuses the
# device ("Device not supported") gets memcheck/racecheck SKIP with the tool's own words. The
# trainer stage runs after the benchmarks but 75 s are kept back for it from the start of its build
# (GCPO_TRAINER_RESERVE_S). The Janus stages run last, in the time that is left (none is kept
# back for them unless GCPO_JANUS_RESERVE_S says so: that time comes out of the tests,
# sanitizers and benchmarks); with tests, sanitizers, bench and baseline all in GCPO_SKIP the
# main build is skipped too and the trainer build starts at once. Benchmark goals that are
# missed do not change the exit status (benchmarks are never tests).
#
# Environment: GCPO_DEVICE_BUDGET_S (390), GCPO_JOBS (nproc), GCPO_CUDA_ARCH (90),
#   GCPO_BUILD_DIR (build-device), GCPO_SANITIZER_FILTER (Catch2 test spec given to each CUDA test
#   binary under the sanitizers; default "~[slow]~[large]": cases tagged [slow] or [large] are
#   left out), GCPO_BENCH_REPS (5), GCPO_BENCH_FILTER (Python regex on benchmark names),
#   GCPO_SKIP (any of: tests sanitizers bench baseline trainer python janus-hf janus-1b janus-rl janus-dp),
#   GCPO_JANUS_RESERVE_S (0), GCPO_JANUS_RL_ARGS ("--prompts 1 --group 4 --steps 2": the
#   janus-rl stage's shape; --grad-checkpoint may be added), GCPO_BUILD_ALL=1 (also the host
#   benchmarks, otherwise not built here), GCPO_FORCE_BENCHMARK_SOURCE=1 (build
#   Google Benchmark from .device/benchmark-src even when the carried .so loads).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
T0=$SECONDS
BUDGET=${GCPO_DEVICE_BUDGET_S:-390}
JOBS=${GCPO_JOBS:-$(nproc 2>/dev/null || echo 4)}
ARCH=${GCPO_CUDA_ARCH:-90}
BUILD=${GCPO_BUILD_DIR:-build-device}
[[ $BUILD = /* ]] || BUILD=$ROOT/$BUILD
SAN_FILTER=${GCPO_SANITIZER_FILTER-"~[slow]~[large]"}
REPS=${GCPO_BENCH_REPS:-5}
SKIP=" ${GCPO_SKIP:-} "
OUTDIR=${OUT:-$BUILD/out}
mkdir -p "$OUTDIR" "$BUILD"
LOGS=$BUILD/device-logs
rm -rf "$LOGS"
mkdir -p "$LOGS"
DEV=$ROOT/.device/usr
for d in /usr/local/cuda/bin /usr/local/cuda/compute-sanitizer; do
  [[ -d $d && ":$PATH:" != *":$d:"* ]] && PATH=$PATH:$d
done
export PATH PYTHONUNBUFFERED=1

# the README demo's RL settings (demo_rl_args), shared with scripts/demo.sh
source "$ROOT/scripts/demo-settings.sh"

STAGES=()  # "name|status|seconds|note"
BUILD_CUT=0  # 1 when the build ran out of time (the stages that need its binaries are then not run)
FAILED=()   # stages whose code failed (a test, a sanitizer report, a build error)
NOT_RUN=()  # stages not run or cut short: no GPU, a refused tool, the time budget
# record <name> <PASS|FAIL|TIMEOUT|SKIP|INFO> <seconds> <note>
# A stage that ran out of the time budget (TIMEOUT) is not a failure of the code: it is shown as
# SKIP with the reason "out of time", and the verdict lists it among the stages not run. A test
# that hangs still fails: ctest's per-test timeout is shorter than its stage's limit.
record() {
  local st=$2 note=$4
  if [[ $st == TIMEOUT ]]; then
    st=SKIP
    note="out of time after $3 s of the ${BUDGET} s budget: $note"
  fi
  STAGES+=("$1|$st|$3|$note")
  case $st in
    FAIL) FAILED+=("$1") ;;
    SKIP) NOT_RUN+=("$1 (${note%%;*})") ;;
  esac
  printf '>>> %-22s %-7s %4ss  %s\n' "$1" "$st" "$3" "$note"
}
elapsed() { echo $((SECONDS - T0)); }
remaining() { echo $((BUDGET - (SECONDS - T0))); }
# Seconds kept back for the trainer stage, which runs last: every earlier stage's limit leaves
# them (set when the trainer build starts; 0 when there is no trainer stage).
TRAINER_RESERVE=0
# limit <wanted> <reserve>: seconds a stage may take: at most <wanted>, leaving <reserve> (plus
# the trainer's reserve) for the rest
limit() {
  local t=$(($(remaining) - $2 - TRAINER_RESERVE))
  ((t > $1)) && t=$1
  ((t < 0)) && t=0
  echo "$t"
}
section() { printf '\n===== %s (%ss elapsed, %ss left)\n' "$1" "$(elapsed)" "$(remaining)"; }
skipped() { [[ $SKIP == *" $1 "* ]]; }
# run_limited <seconds> <log> <command...>: runs with a time limit, output to <log>; returns the
# command's status (124 when it ran out of time)
run_limited() {
  local t=$1 log=$2
  shift 2
  if ((t < 1)); then
    echo "not run: no time left" >"$log"
    return 124
  fi
  timeout --kill-after=10 "$t" "$@" >"$log" 2>&1
}
# test_timeout <stage seconds>: ctest's per-test limit, 10 s under the stage's (at least 5 s), so a
# test that hangs is reported by ctest as failed before the stage itself is cut
test_timeout() {
  local t=$(($1 - 10))
  ((t > 120)) && t=120
  ((t < 5)) && t=5
  echo "$t"
}
# probe_sanitizer <tool> <array>: appends to <array> "" when compute-sanitizer's <tool> checks a
# trivial, correct kernel cleanly, otherwise the reason to skip it (its own words)
probe_sanitizer() {
  local tool=$1 dir=$BUILD/sanitizer-probe rc line
  local -n probe_out=$2
  if [[ ! -x $dir/probe ]]; then
    mkdir -p "$dir"
    cat >"$dir/probe.cu" <<'EOF'
// scripts/device-check.sh: a trivial, correct kernel for compute-sanitizer to check first.
#include <cstdio>
__global__ void fill(int* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] = i;
}
int main() {
  int* d = nullptr;
  int h[256];
  if (cudaMalloc(&d, sizeof h) != cudaSuccess) return 2;
  fill<<<2, 128>>>(d, 256);
  if (cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) != cudaSuccess) return 2;
  cudaFree(d);
  for (int i = 0; i < 256; ++i)
    if (h[i] != i) return 3;
  std::puts("probe ok");
  return 0;
}
EOF
    if ! nvcc -arch=sm_"$ARCH" -o "$dir/probe" "$dir/probe.cu" >"$LOGS/sanitizer-probe-build.log" 2>&1; then
      probe_out+=("the probe kernel did not build (sanitizer-probe-build.log)")
      return
    fi
  fi
  timeout --kill-after=5 60 "$SAN" --tool "$tool" --error-exitcode 99 "$dir/probe" >"$LOGS/sanitizer-probe-$tool.log" 2>&1
  rc=$?
  if ((rc == 0)) && grep -q 'probe ok' "$LOGS/sanitizer-probe-$tool.log"; then
    probe_out+=("")
    return
  fi
  line=$(grep -v -E '^========= *$' "$LOGS/sanitizer-probe-$tool.log" | grep -m1 -i -E 'not supported|error|fail' | sed 's/^========= //')
  probe_out+=("compute-sanitizer $tool refused a trivial correct kernel (exit $rc): ${line:-see sanitizer-probe-$tool.log}")
  echo "  $tool probe: ${probe_out[-1]}"
}
show_tail() { echo "----- last lines of $1:"; tail -n "${2:-25}" "$1"; echo "-----"; }

main() {
  echo "gcpo device-check: $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${BUDGET}s, $JOBS jobs, sm_$ARCH, build $BUILD"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || grep -m1 '^commit' "$ROOT/.device/MANIFEST.txt" 2>/dev/null || echo unknown)"

  # ---- 1. tools -------------------------------------------------------------------------------
  section "tools"
  echo "host: $(uname -srm), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
  SAN=$(command -v compute-sanitizer || true)
  for tool in nvcc cmake ninja g++ c++ python3 nvidia-smi compute-sanitizer; do
    printf '  %-18s %s\n' "$tool" "$(command -v "$tool" || echo MISSING)"
  done
  command -v nvcc >/dev/null && echo "  nvcc: $(nvcc --version | tail -n 2 | tr '\n' ' ')"
  command -v cmake >/dev/null && echo "  cmake: $(cmake --version | head -n 1)"
  command -v ninja >/dev/null && echo "  ninja: $(ninja --version)"
  command -v g++ >/dev/null && echo "  g++: $(g++ --version | head -n 1)"
  [[ -n $SAN ]] && echo "  compute-sanitizer: $($SAN --version 2>/dev/null | grep -i version | tail -n 1)"
  HAVE_GPU=0
  if command -v nvidia-smi >/dev/null; then
    if nvidia-smi -L >"$LOGS/nvidia-smi-L.txt" 2>&1 && grep -q '^GPU ' "$LOGS/nvidia-smi-L.txt"; then
      HAVE_GPU=1
      echo "  GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader 2>/dev/null | head -n 1)"
      nvidia-smi >"$LOGS/nvidia-smi.txt" 2>&1
    else
      echo "  nvidia-smi found no GPU: $(head -n 2 "$LOGS/nvidia-smi-L.txt" | tr '\n' ' ')"
    fi
  fi
  HAVE_TORCH=0
  if command -v python3 >/dev/null; then
    echo "  python3: $(python3 --version 2>&1)"
    if timeout 90 python3 -c 'import torch; c = torch.cuda.is_available(); print("  torch %s (CUDA %s), torch.cuda.is_available() = %s%s" % (torch.__version__, torch.version.cuda, c, (", " + torch.cuda.get_device_name()) if c else ""))' 2>"$LOGS/torch-import.txt"; then
      HAVE_TORCH=1
    else
      echo "  torch: not importable ($(tail -n 1 "$LOGS/torch-import.txt"))"
    fi
  fi
  if ((HAVE_GPU)); then
    echo "  => GPU found: every stage runs"
    record gpu INFO "$(elapsed)" "$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n 1); torch: $( ((HAVE_TORCH)) && echo yes || echo no)"
  else
    record gpu INFO "$(elapsed)" "NO GPU FOUND (build and CPU tests only)"
    echo "  => NO GPU FOUND on this machine: configure and build only, plus the CPU tests;"
    echo "     CUDA tests, sanitizers, CUDA benchmarks and the baseline are skipped (exit status 3)"
  fi

  # ---- carried libraries ------------------------------------------------------------------------
  section "carried libraries (.device, from scripts/prepare-device.sh)"
  if [[ -d $DEV ]]; then
    sed 's/^/  /' "$ROOT/.device/MANIFEST.txt" 2>/dev/null
    for h in catch2/catch.hpp nlohmann/json.hpp dlpack/dlpack.h benchmark/benchmark.h; do
      printf '  %-24s %s\n' "$h" "$([[ -f $DEV/include/$h ]] && echo present || echo MISSING)"
    done
  else
    echo "  .device/ is MISSING: run 'bash scripts/prepare-device.sh' on the development machine and carry .device;"
    echo "  trying the packages of this machine instead"
  fi
  BENCH_DIR=""
  BENCH_NOTE=""
  local so=$DEV/lib/x86_64-linux-gnu/libbenchmark.so.1debian
  if [[ -f $so ]]; then
    local why
    if why=$(python3 -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' "$so" 2>&1); then
      echo "  libbenchmark.so (Debian 1.7.1): loads"
      BENCH_DIR=$DEV/lib/x86_64-linux-gnu/cmake/benchmark
    else
      echo "  libbenchmark.so (Debian 1.7.1): does NOT load: $(echo "$why" | tail -n 1)"
    fi
  fi
  if [[ ${GCPO_FORCE_BENCHMARK_SOURCE:-0} == 1 || -z $BENCH_DIR ]] && [[ -d $ROOT/.device/benchmark-src/src ]]; then
    local t0=$SECONDS
    if build_benchmark_static >"$LOGS/benchmark-static.log" 2>&1; then
      BENCH_DIR=$BUILD/benchmark-static/lib/cmake/benchmark
      echo "  Google Benchmark built from .device/benchmark-src as a static library ($((SECONDS - t0)) s)"
    else
      echo "  building Google Benchmark from .device/benchmark-src FAILED"
      show_tail "$LOGS/benchmark-static.log" 10
    fi
  fi
  if [[ -z $BENCH_DIR ]]; then
    record libraries INFO 0 "Catch2/json/DLPack: $([[ -d $DEV ]] && echo carried || echo 'NOT carried'); Google Benchmark: no carried library usable"
  elif [[ $BENCH_DIR == "$BUILD"/* ]]; then
    record libraries INFO 0 "Catch2/json/DLPack carried; Google Benchmark built from source (carried .so did not load or was not used)"
  else
    record libraries INFO 0 "Catch2/json/DLPack carried; Google Benchmark: carried Debian libbenchmark.so loads"
  fi
  local bench_opt=ON
  if [[ -z $BENCH_DIR ]] && ! ls /usr/lib/*/cmake/benchmark/benchmarkConfig.cmake /usr/lib/cmake/benchmark/benchmarkConfig.cmake \
    /usr/local/lib*/cmake/benchmark/benchmarkConfig.cmake >/dev/null 2>&1; then
    bench_opt=OFF
    BENCH_NOTE="no usable Google Benchmark: benchmarks not built"
    echo "  => $BENCH_NOTE"
  fi

  # ---- 2. configure + build ---------------------------------------------------------------------------
  section "configure"
  local cuda=ON
  command -v nvcc >/dev/null || cuda=OFF
  local args=(-S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGCPO_ENABLE_CUDA="$cuda"
    -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DGCPO_BUILD_TESTS=ON -DGCPO_BUILD_BENCH="$bench_opt"
    -DGCPO_BUILD_EXAMPLES=OFF -DGCPO_CUDA_SIMULATOR=OFF -DCMAKE_POLICY_VERSION_MINIMUM=3.5)
  # (no simulator here: CI runs the simulated tests; on the GPU the real ones run, and the
  # sanitizers must see CUDA binaries only)
  [[ $cuda == ON ]] && args+=(-DCMAKE_CUDA_COMPILER="$(command -v nvcc)")
  if [[ -d $DEV ]]; then
    args+=(-DCMAKE_PREFIX_PATH="$DEV" -DGCPO_CATCH2_INCLUDE_DIR="$DEV/include")
    [[ -d $DEV/lib/cmake/Catch2 ]] && args+=(-DCatch2_DIR="$DEV/lib/cmake/Catch2")
    [[ -d $DEV/share/cmake/nlohmann_json ]] && args+=(-Dnlohmann_json_DIR="$DEV/share/cmake/nlohmann_json")
    [[ -d $DEV/lib/x86_64-linux-gnu/cmake/dlpack ]] && args+=(-Ddlpack_DIR="$DEV/lib/x86_64-linux-gnu/cmake/dlpack")
  fi
  [[ -n $BENCH_DIR ]] && args+=(-Dbenchmark_DIR="$BENCH_DIR")
  echo "cmake ${args[*]}"
  local t0=$SECONDS rc
  run_limited "$(limit 90 150)" "$LOGS/configure.log" cmake "${args[@]}"
  rc=$?
  grep -E '^-- (gcpo|The CUDA|The CXX|Found)' "$LOGS/configure.log" | sed 's/^/  /'
  if ((rc != 0)); then
    record configure FAIL $((SECONDS - t0)) "cmake exit $rc"
    show_tail "$LOGS/configure.log" 40
    finish
    return
  fi
  if [[ $cuda == OFF ]]; then
    record configure INFO $((SECONDS - t0)) "no nvcc: CUDA targets not configured"
  else
    record configure PASS $((SECONDS - t0)) ""
  fi

  section "build"
  t0=$SECONDS
  # reserve for the rest: tests 25, sanitizers 30, benchmarks 35, baseline 25, summary 5 (they
  # shrink when the build takes long; the build is what everything needs)
  local t
  t=$(limit "$BUDGET" 120)
  ((HAVE_GPU)) || t=$(limit "$BUDGET" 10)
  # every target but the host benchmarks (not needed here; GCPO_BUILD_ALL=1 builds them too)
  local targets=()
  if [[ ${GCPO_BUILD_ALL:-0} != 1 ]]; then
    mapfile -t targets < <(ninja -C "$BUILD" -t targets all 2>/dev/null |
      sed -n 's/^cmake_object_order_depends_target_\([A-Za-z0-9_]*\): phony$/\1/p' | grep -v -x gcpo_bench_host)
  fi
  if skipped tests && skipped sanitizers && skipped bench && skipped baseline; then
    # nothing below needs this build (the trainer builds in its own folder): straight to the
    # trainer build, for a run of the trainer and Janus stages alone
    record build SKIP 0 "GCPO_SKIP: tests, sanitizers, bench and baseline all skipped"
  else
    if ((${#targets[@]})); then
      echo "targets: ${targets[*]}"
      run_limited "$t" "$LOGS/build.log" cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}" -- -k 0
    else
      run_limited "$t" "$LOGS/build.log" cmake --build "$BUILD" -j "$JOBS" -- -k 0
    fi
    rc=$?
    ((rc == 124 || rc == 137)) && BUILD_CUT=1
    local warnings
    warnings=$(grep -c -E 'warning[: #]' "$LOGS/build.log")
    if ((rc == 0)); then
      record build PASS $((SECONDS - t0)) "$warnings warning lines (build.log in logs.tar.gz)"
    else
      record build "$( ((rc == 124)) && echo TIMEOUT || echo FAIL)" $((SECONDS - t0)) "exit $rc; $warnings warning lines; built what it could (-k 0)"
      grep -E 'FAILED:|error' "$LOGS/build.log" | head -n 20
      show_tail "$LOGS/build.log" 30
    fi
    [[ -x $BUILD/bench/cuda/gcpo_bench_cuda ]] && echo "gcpo_bench_cuda: built" || echo "gcpo_bench_cuda: NOT built"
  fi
  start_trainer_build

  # ---- 3. tests ------------------------------------------------------------------------------------
  section "tests"
  local sel=(-L cuda) nsel
  nsel=$(ctest --test-dir "$BUILD" -N -L cuda 2>/dev/null | sed -n 's/^Total Tests: //p')
  if [[ ${nsel:-0} == 0 ]]; then
    sel=(-R cuda)
    nsel=$(ctest --test-dir "$BUILD" -N -R cuda 2>/dev/null | sed -n 's/^Total Tests: //p')
  fi
  local cpu_sel=(-LE cuda)
  [[ ${sel[0]} == -R ]] && cpu_sel=(-E cuda)
  echo "CUDA tests: ctest ${sel[*]} (${nsel:-0} tests); CPU tests: ctest ${cpu_sel[*]} (at the same time: they use no GPU)"
  t0=$SECONDS
  local cpu_pid=""
  if ! skipped tests; then
    t=$(limit 90 90)
    ((HAVE_GPU)) || t=$(limit 600 5)
    run_limited "$t" "$LOGS/ctest-cpu.log" ctest --test-dir "$BUILD" "${cpu_sel[@]}" --output-on-failure \
      -j $(((JOBS + 1) / 2)) --timeout "$(test_timeout "$t")" &
    cpu_pid=$!
  fi
  if skipped tests; then
    record cuda-tests SKIP 0 "GCPO_SKIP"
  elif ((!HAVE_GPU)); then
    record cuda-tests SKIP 0 "no GPU"
  elif [[ ${nsel:-0} == 0 ]] && ((BUILD_CUT)); then
    record cuda-tests SKIP 0 "not built: the build ran out of time"
  elif [[ ${nsel:-0} == 0 ]]; then
    record cuda-tests FAIL 0 "no CUDA test registered (ctest -L cuda / -R cuda found none)"
  else
    t=$(limit 90 90)
    run_limited "$t" "$LOGS/ctest-cuda.log" ctest --test-dir "$BUILD" "${sel[@]}" --output-on-failure \
      -j 8 --timeout "$(test_timeout "$t")"
    rc=$?
    local summary
    summary=$(grep -E 'tests passed|tests failed' "$LOGS/ctest-cuda.log" | tail -n 1)
    if ((rc == 0)); then
      record cuda-tests PASS $((SECONDS - t0)) "$summary"
    else
      record cuda-tests "$( ((rc == 124)) && echo TIMEOUT || echo FAIL)" $((SECONDS - t0)) "${summary:-exit $rc}"
      sed -n '/The following tests FAILED/,$p' "$LOGS/ctest-cuda.log" | head -n 30
    fi
  fi
  if [[ -n $cpu_pid ]]; then
    wait "$cpu_pid"
    rc=$?
    local summary
    summary=$(grep -E 'tests passed|tests failed|No tests were found' "$LOGS/ctest-cpu.log" | tail -n 1)
    if ((rc == 0)); then
      record cpu-tests PASS $((SECONDS - t0)) "$summary"
    else
      record cpu-tests "$( ((rc == 124)) && echo TIMEOUT || echo FAIL)" $((SECONDS - t0)) "${summary:-exit $rc}"
      sed -n '/The following tests FAILED/,$p' "$LOGS/ctest-cpu.log" | head -n 30
    fi
  else
    record cpu-tests SKIP 0 "GCPO_SKIP"
  fi

  # ---- sanitizers: every (tool, CUDA test binary) pair, 8 at a time ---------------------------------
  section "compute-sanitizer"
  local bins=()
  if ((HAVE_GPU)) && [[ ${nsel:-0} != 0 ]]; then
    mapfile -t bins < <(ctest --test-dir "$BUILD" "${sel[@]}" --show-only=json-v1 2>/dev/null | python3 -c '
import json, os, sys
seen = []
for t in json.load(sys.stdin).get("tests", []):
    cmd = t.get("command") or []
    if cmd and cmd[0] not in seen and os.access(cmd[0], os.X_OK):
        seen.append(cmd[0])
print("\n".join(seen))' | grep .)
  fi
  echo "CUDA test binaries: ${bins[*]:-none}; Catch2 filter: '${SAN_FILTER}'"
  local why=""
  if skipped sanitizers; then
    why="GCPO_SKIP"
  elif ((!HAVE_GPU)); then
    why="no GPU"
  elif [[ -z $SAN ]]; then
    why="compute-sanitizer not found"
  elif ((${#bins[@]} == 0)); then
    why="no CUDA test binary found"
  fi
  local probe_why=()
  if [[ -z $why ]]; then
    # Some GPU machines refuse compute-sanitizer ("Device not supported", then error 999): ask it
    # to check a trivial, correct kernel first; a tool that refuses it is skipped, not failed.
    probe_sanitizer memcheck probe_why
    probe_sanitizer racecheck probe_why
  fi
  if [[ -n $why ]]; then
    local st=SKIP
    [[ $why == "compute-sanitizer not found" || $why == "no CUDA test binary found" ]] && ((!BUILD_CUT)) && st=FAIL
    ((BUILD_CUT)) && [[ $why == "no CUDA test binary found" ]] && why="not built: the build ran out of time"
    record memcheck "$st" 0 "$why"
    record racecheck "$st" 0 "$why"
  elif [[ -n ${probe_why[0]} && -n ${probe_why[1]} ]]; then
    record memcheck SKIP 0 "${probe_why[0]}"
    record racecheck SKIP 0 "${probe_why[1]}"
  else
    t0=$SECONDS
    local stage_end=$((SECONDS + $(limit 90 60))) tool b name left running=0
    local targs=() sargs=(--error-exitcode 99 --print-limit 20 --launch-timeout 60) rargs=()
    [[ -n $SAN_FILTER ]] && targs+=("$SAN_FILTER")
    # racecheck's analysis uses every core by default: share them between the parallel runs
    "$SAN" --help 2>/dev/null | grep -q -- '--racecheck-num-workers' && rargs+=(--racecheck-num-workers 2)
    local tools=() i=0
    for tool in memcheck racecheck; do
      if [[ -n ${probe_why[$i]} ]]; then
        record "$tool" SKIP 0 "${probe_why[$i]}"
      else
        tools+=("$tool")
      fi
      i=$((i + 1))
    done
    for tool in "${tools[@]}"; do
      for b in "${bins[@]}"; do
        name=$(basename "$b")
        while ((running >= 8)); do
          wait -n
          running=$((running - 1))
        done
        left=$((stage_end - SECONDS))
        (
          if [[ $tool == racecheck ]]; then
            run_limited "$left" "$LOGS/$tool-$name.log" "$SAN" --tool "$tool" "${sargs[@]}" "${rargs[@]}" "$b" "${targs[@]}"
          else
            run_limited "$left" "$LOGS/$tool-$name.log" "$SAN" --tool "$tool" "${sargs[@]}" "$b" "${targs[@]}"
          fi
          echo $? >"$LOGS/$tool-$name.rc"
        ) &
        running=$((running + 1))
      done
    done
    wait
    for tool in "${tools[@]}"; do
      local bad=0 cut=0 notes="" errs
      for b in "${bins[@]}"; do
        name=$(basename "$b")
        rc=$(cat "$LOGS/$tool-$name.rc" 2>/dev/null || echo 1)
        errs=$(grep -E '========= (ERROR SUMMARY|RACECHECK SUMMARY)' "$LOGS/$tool-$name.log" 2>/dev/null | tail -n 1 | sed 's/========= //')
        if ((rc == 0)); then
          notes+="$name ok; "
        elif ((rc == 124 || rc == 137)); then
          cut=1
          notes+="$name not finished; "
        else
          bad=1
          if ((rc == 99)); then
            notes+="$name: ${errs:-sanitizer errors}; "
            echo "--- $tool $name:"
            grep -E '^========= ' "$LOGS/$tool-$name.log" | head -n 15
          else
            notes+="$name: tests failed under the sanitizer (exit $rc); "
            show_tail "$LOGS/$tool-$name.log" 15
          fi
        fi
      done
      # a report or a failed test is a failure; binaries cut by the budget alone are not
      record "$tool" "$( ((bad)) && echo FAIL || { ((cut)) && echo TIMEOUT || echo PASS; })" $((SECONDS - t0)) "$notes"
    done
  fi

  # ---- 4. benchmarks + baseline -------------------------------------------------------------------
  section "CUDA benchmarks"
  if skipped bench; then
    record benchmarks SKIP 0 "GCPO_SKIP"
  elif ((!HAVE_GPU)); then
    record benchmarks SKIP 0 "no GPU"
  elif [[ ! -x $BUILD/bench/cuda/gcpo_bench_cuda ]]; then
    record benchmarks SKIP 0 "gcpo_bench_cuda not built ${BENCH_NOTE}"
  else
    t0=$SECONDS
    t=$(limit 90 30)
    local reps=$REPS
    ((t < 50 && reps > 3)) && reps=3
    python3 "$ROOT/scripts/run-cuda-bench.py" "$BUILD/bench/cuda/gcpo_bench_cuda" --out "$OUTDIR/bench_cuda.json" \
      --log "$LOGS/bench-cuda.log" --workdir "$LOGS/bench-json" --budget-s "$t" --reps "$reps" \
      ${GCPO_BENCH_FILTER:+--filter "$GCPO_BENCH_FILTER"}
    rc=$?
    # benchmarks are not tests: a crash or a cut is reported, it does not fail the run
    record benchmarks "$( ((rc == 0)) && echo PASS || echo INFO)" $((SECONDS - t0)) \
      "$( ((rc == 0)) && echo "all ran, $reps repetitions" || echo "some crashed or were cut (see the table's error list)")"
  fi

  section "PyTorch-eager baseline"
  if skipped baseline; then
    record baseline SKIP 0 "GCPO_SKIP"
  elif ((!HAVE_GPU || !HAVE_TORCH)); then
    record baseline SKIP 0 "$( ((HAVE_GPU)) && echo "torch not importable" || echo "no GPU")"
  else
    t0=$SECONDS
    run_limited "$(limit 30 30)" "$LOGS/baseline-conformance.log" python3 "$ROOT/bench/baseline/torch_baseline.py" \
      --check-conformance "$ROOT/tests/data/conformance"
    local conf=$?
    t=$(limit 80 5)
    : >"$OUTDIR/baseline.jsonl"
    timeout --kill-after=5 "$t" python3 "$ROOT/bench/baseline/torch_baseline.py" --budget-s $((t > 20 ? t - 12 : 8)) \
      --max-seconds-per-case 1 --out "$OUTDIR/baseline.jsonl" >/dev/null 2>"$LOGS/baseline.log"
    rc=$?
    local n
    n=$(grep -c median_us "$OUTDIR/baseline.jsonl")
    record baseline "$( ((rc == 0)) && echo PASS || echo INFO)" $((SECONDS - t0)) \
      "$n cases timed (exit $rc); official-way functions vs conformance vectors: $( ((conf == 0)) && echo match || echo MISMATCH)"
    ((rc == 0)) || show_tail "$LOGS/baseline.log" 8
  fi
  trainer_stage
  python_stage
  janus_stages
  janus_dp_stage
  finish
}

# ---- 6. the example trainer with --device cuda (issue 4) ------------------------------------------
# Configured against the libtorch of the machine's PyTorch (CUDA) in its own build folder and
# built in the background (half the cores, niced) while the tests, sanitizers and benchmarks run;
# then a short GCPO run from the shipped warm start on the GPU. GCPO_SKIP=trainer leaves it out
# (the build still runs when a Janus stage wants its binaries).
TRAINER_BUILD=${BUILD}-trainer
TRAINER_PID=""
TRAINER_BUILD_RC=""  # the background build's exit status once waited for (124: cut by the budget)
JANUS_RESERVE=0      # seconds kept back for the Janus stages (section 7)
janus_wanted() { ! skipped janus-hf || ! skipped janus-1b || ! skipped janus-rl; }
start_trainer_build() {
  skipped trainer && ! janus_wanted && skipped python && return
  ((HAVE_GPU && HAVE_TORCH)) || return
  local prefix
  prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null) || return
  local args=(-S "$ROOT" -B "$TRAINER_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGCPO_ENABLE_CUDA=ON
    -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" -DGCPO_BUILD_TESTS=OFF
    -DGCPO_BUILD_BENCH=OFF -DGCPO_BUILD_EXAMPLES=ON -DGCPO_BUILD_TRAINER=ON -DCMAKE_POLICY_VERSION_MINIMUM=3.5
    -DCMAKE_PREFIX_PATH="$prefix;$DEV" -DGCPO_BUILD_PYTHON="$(skipped python && echo OFF || echo ON)")
  local targets=(janus_trainer)
  janus_wanted && targets+=(janus_bench_pretrained)
  skipped python || targets+=(gcpo_python_package)
  skipped trainer || TRAINER_RESERVE=${GCPO_TRAINER_RESERVE_S:-75}
  janus_wanted && JANUS_RESERVE=${GCPO_JANUS_RESERVE_S:-0}
  echo "trainer: building ${targets[*]} in the background ($TRAINER_BUILD, libtorch from $prefix);"
  echo "         $TRAINER_RESERVE s of the budget kept back for its stage (GCPO_TRAINER_RESERVE_S),"
  echo "         $JANUS_RESERVE s for the Janus stages (GCPO_JANUS_RESERVE_S)"
  # a binary there afterwards is this build's (a failed target leaves none, not last run's)
  rm -f "$TRAINER_BUILD/examples/janus/janus_trainer" "$TRAINER_BUILD/examples/janus/janus_bench_pretrained" \
    "$TRAINER_BUILD/python/gcpo/_gcpo_ops.so"
  (
    export TORCH_CUDA_ARCH_LIST="${ARCH:0:1}.${ARCH:1}"
    nice -n 5 cmake "${args[@]}" && nice -n 5 cmake --build "$TRAINER_BUILD" -j $(((JOBS + 1) / 2)) --target "${targets[@]}" -- -k 0
  ) >"$LOGS/trainer-build.log" 2>&1 &
  TRAINER_PID=$!
  TRAINER_RESERVE=$((TRAINER_RESERVE + JANUS_RESERVE))
}

# wait_trainer_build <seconds>: waits for the background build at most that long (once; later
# calls return at once) and sets TRAINER_BUILD_RC (124 when it was still building: then stopped)
wait_trainer_build() {
  [[ -n $TRAINER_BUILD_RC || -z $TRAINER_PID ]] && return
  local t=$1 t0=$SECONDS
  while kill -0 "$TRAINER_PID" 2>/dev/null && ((SECONDS - t0 < t)); do sleep 2; done
  if kill -0 "$TRAINER_PID" 2>/dev/null; then
    kill -- "$TRAINER_PID" 2>/dev/null
    TRAINER_BUILD_RC=124
    return
  fi
  wait "$TRAINER_PID"
  TRAINER_BUILD_RC=$?
}

# not_for_trainer_build <stage>: true (and the stage recorded SKIP with the reason) when the stage
# is in GCPO_SKIP or there is no trainer build (folder of the machine's PyTorch) to run it with
not_for_trainer_build() {
  if skipped "$1"; then
    record "$1" SKIP 0 "GCPO_SKIP"
  elif [[ -z $TRAINER_PID ]]; then
    record "$1" SKIP 0 "$( ((HAVE_GPU)) && echo "torch not importable: no PyTorch to build against" || echo "no GPU")"
  else
    return 1
  fi
  return 0
}

trainer_stage() {
  section "example trainer (--device cuda)"
  TRAINER_RESERVE=$JANUS_RESERVE  # what was kept back for this stage is its own now; the Janus stages' is not
  not_for_trainer_build trainer && return
  local t0=$SECONDS rc t
  t=$(limit 240 5)
  # wait for the background build, at most what the budget leaves
  wait_trainer_build $((t - 40))
  rc=$TRAINER_BUILD_RC
  if ((rc == 124)); then
    record trainer TIMEOUT $((SECONDS - t0)) "janus_trainer still building when the budget ran out (trainer-build.log)"
    show_tail "$LOGS/trainer-build.log" 15
    return
  fi
  local bin=$TRAINER_BUILD/examples/janus/janus_trainer run=$BUILD/trainer-run
  if ((rc != 0)) && [[ ! -x $bin ]]; then
    record trainer FAIL $((SECONDS - t0)) "janus_trainer build failed (exit $rc, trainer-build.log)"
    grep -E 'error|FAILED' "$LOGS/trainer-build.log" | head -n 20
    return
  fi
  ((rc != 0)) && echo "  janus_trainer built; another target of that build failed (trainer-build.log)"
  rm -rf "$run"
  # the README demo's settings, a few steps, on the GPU
  run_limited "$(limit 60 5)" "$LOGS/trainer-run.log" "$bin" -q rl --device cuda --algo gcpo \
    --init "$ROOT/examples/janus/checkpoints/demo-8x8.safetensors" $(demo_rl_args) --steps 5 --out "$run"
  rc=$?
  grep -E 'summary|held-out|train reward|steps ' "$LOGS/trainer-run.log" | sed 's/^/  /'
  [[ -f $run/summary.json ]] && cp "$run/summary.json" "$OUTDIR/trainer-summary.json"
  if ((rc == 0)); then
    record trainer PASS $((SECONDS - t0)) "5 GCPO steps with --device cuda ($(python3 -c 'import json,sys; print("%.2f s/step" % json.load(open(sys.argv[1]))["mean_step_seconds"])' "$run/summary.json" 2>/dev/null))"
  else
    record trainer FAIL $((SECONDS - t0)) "janus_trainer rl --device cuda exit $rc (trainer-run.log)"
    show_tail "$LOGS/trainer-run.log" 20
  fi
}

# ---- 6b. the Python extension on the GPU (issue 12) -------------------------------------------------
# torch.ops.gcpo built in the trainer's build folder against the machine's PyTorch (with
# gcpo::cuda, on PyTorch's current stream): the whole pytest suite (python/tests; test_cuda.py,
# skipped on CPU machines, runs here: every operator and drop-in on CUDA tensors against the
# references and the CPU twins, the current stream, the caching allocator, a CUDA graph), then
# python/bench/bench_official.py on the GPU in float32 and bf16. Logs: python-pytest.log,
# python-bench.log (its tables are printed here too).
python_stage() {
  section "Python extension on the GPU (python)"
  not_for_trainer_build python && return
  local t0=$SECONDS rc t pkg=$TRAINER_BUILD/python
  wait_trainer_build "$(limit 200 5)"
  if [[ ! -f $pkg/gcpo/_gcpo_ops.so ]]; then
    if ((TRAINER_BUILD_RC == 124)); then
      record python TIMEOUT $((SECONDS - t0)) "the extension was still building (trainer-build.log)"
    else
      record python FAIL $((SECONDS - t0)) "the extension did not build (trainer-build.log)"
      grep -E -A3 'gcpo_ops|FAILED' "$LOGS/trainer-build.log" | head -n 30
    fi
    return
  fi
  local env=(env PYTHONPATH="$pkg" PYTHONDONTWRITEBYTECODE=1 GCPO_REPO_CONFORMANCE_DIR="$ROOT/tests/data/conformance")
  if ! "${env[@]}" python3 -c 'import sys, torch, gcpo; sys.exit(0 if gcpo.cuda_enabled() and torch.cuda.is_available() else 1)' \
      >"$LOGS/python-import.log" 2>&1; then
    record python FAIL $((SECONDS - t0)) "import gcpo with CUDA failed: $(tail -n 1 "$LOGS/python-import.log")"
    return
  fi
  t=$(limit 150 5)
  run_limited "$t" "$LOGS/python-pytest.log" "${env[@]}" python3 -m pytest -q -p no:cacheprovider -rs "$ROOT/python/tests"
  rc=$?
  local summary
  summary=$(grep -E '^[0-9]+ (passed|failed)|[0-9]+ passed|[0-9]+ failed' "$LOGS/python-pytest.log" | tail -n 1)
  echo "  pytest: ${summary:-no summary line}"
  if ((rc == 124)); then
    record python TIMEOUT $((SECONDS - t0)) "pytest cut (python-pytest.log)"
    return
  elif ((rc != 0)); then
    record python FAIL $((SECONDS - t0)) "pytest: ${summary:-exit $rc} (python-pytest.log)"
    grep -E '^(FAILED|ERROR)' "$LOGS/python-pytest.log" | head -n 20
    show_tail "$LOGS/python-pytest.log" 30
    return
  fi
  # the drop-ins against the official blocks on the GPU, float32 then bf16 (figures for docs/performance.md)
  run_limited "$(limit 90 5)" "$LOGS/python-bench.log" bash -c '"$@" --dtype float32 && "$@" --dtype bfloat16' _ \
    "${env[@]}" python3 "$ROOT/python/bench/bench_official.py" --device cuda --threads 1 --repeats 20
  rc=$?
  sed 's/^/  /' "$LOGS/python-bench.log"
  record python PASS $((SECONDS - t0)) "pytest on CUDA: $summary; bench_official.py --device cuda exit $rc (python-bench.log)"
}

# ---- 7. Janus-Pro (issue 10): our forward against transformers; the random-weight 1B in bf16 ------
# With the binaries of the trainer build (section 6), after the trainer stage, in the time left
# (GCPO_JANUS_RESERVE_S keeps some back from the start of that build), each SKIP with its reason
# when the budget runs out. Logs: janus-hf.log, janus-1b-write.log, janus-1b-run.log, janus-rl.log.
#   janus-hf   scripts/check_janus_transformers.py --trainer janus_trainer: `forward` against
#              transformers' JanusForConditionalGeneration (tiny, random, in the published layout;
#              logits within 1e-4 relative, VQ images within 1 level), fp32 on the CPU
#   janus-1b   janus_bench_pretrained write DIR --size 1b (kept as $BUILD/janus-1b: a rerun on a
#              warm machine reuses it), then run DIR --device cuda --dtype bf16 --tokens 576
#   janus-rl   janus_bench_pretrained rl DIR --device cuda --dtype bf16 --grid 24x24 $GCPO_JANUS_RL_ARGS
JANUS_DIR=${BUILD}/janus-1b
# janus_1b_dir <seconds>: the random-weight Janus-Pro-1B directory, written when absent; returns
# the writer's status (124: out of time)
janus_1b_dir() {
  [[ -f $JANUS_DIR/.complete ]] && return 0
  rm -rf "$JANUS_DIR"
  run_limited "$1" "$LOGS/janus-1b-write.log" "$TRAINER_BUILD/examples/janus/janus_bench_pretrained" write "$JANUS_DIR" --size 1b
  local rc=$?
  sed 's/^/  /' "$LOGS/janus-1b-write.log" | tail -n 3
  ((rc == 0)) && touch "$JANUS_DIR/.complete"
  return "$rc"
}

# Records Janus stage $1 as skipped or failed and returns 0 when it cannot run: named in
# GCPO_SKIP, blocked for the reason in the caller's $why / $why_st (no GPU, no build), or its
# binary $2 (called $3) missing.
janus_stage_blocked() {
  local name=$1 file=$2 what=$3
  if skipped "$name"; then
    record "$name" SKIP 0 "GCPO_SKIP"
  elif [[ -n $why ]]; then
    record "$name" "$why_st" 0 "$why"
  elif [[ ! -x $file ]]; then
    record "$name" FAIL 0 "$what was not built (trainer-build.log)"
  else
    return 1
  fi
  return 0
}

janus_stages() {
  section "Janus-Pro: forward vs transformers; random-weight 1B in bf16 on the GPU"
  TRAINER_RESERVE=0
  local bin=$TRAINER_BUILD/examples/janus/janus_trainer bench=$TRAINER_BUILD/examples/janus/janus_bench_pretrained
  local why="" why_st=SKIP t0 rc t note
  if ((!HAVE_GPU)); then
    why="no GPU"
  elif ((!HAVE_TORCH)); then
    why="torch not importable: no libtorch to build against"
  elif [[ -z $TRAINER_PID ]]; then
    why="the trainer build was not started"
  else
    wait_trainer_build $(($(limit 240 5) - 30))  # at once when the trainer stage waited for it
    if ((TRAINER_BUILD_RC == 124)); then
      why="the trainer build was still running when the budget ran out (trainer-build.log)"
      why_st=TIMEOUT
    elif ((TRAINER_BUILD_RC != 0)); then
      echo "trainer build: exit $TRAINER_BUILD_RC (trainer-build.log):"
      grep -E 'error|FAILED' "$LOGS/trainer-build.log" | head -n 10
    fi
  fi
  # time the later stages keep back from the earlier ones
  local keep_rl=0 keep_1b=0
  skipped janus-rl || keep_rl=75
  skipped janus-1b || keep_1b=45

  # (a) forward against transformers
  if janus_stage_blocked janus-hf "$bin" janus_trainer; then
    :
  elif ! note=$(python3 -c 'import transformers; print(transformers.__version__)' 2>&1); then
    record janus-hf SKIP 0 "transformers not importable: $(echo "$note" | tail -n 1)"
  else
    t0=$SECONDS
    run_limited "$(limit 60 $((keep_1b + keep_rl)))" "$LOGS/janus-hf.log" python3 "$ROOT/scripts/check_janus_transformers.py" \
      --trainer "$bin" --workdir "$BUILD/janus-hf"
    rc=$?
    grep -E '^(janus_trainer forward|check_janus_transformers)' "$LOGS/janus-hf.log" | sed 's/^/  /'
    note=$(grep -m1 '^check_janus_transformers:' "$LOGS/janus-hf.log" | sed 's/^check_janus_transformers: //' | cut -c1-240)
    if ((rc == 0)); then
      record janus-hf PASS $((SECONDS - t0)) "${note#PASS: }"
    elif ((rc == 124 || rc == 137)); then
      record janus-hf TIMEOUT $((SECONDS - t0)) "check_janus_transformers.py (janus-hf.log)"
    else
      record janus-hf FAIL $((SECONDS - t0)) "${note:-exit $rc} (janus-hf.log)"
      show_tail "$LOGS/janus-hf.log" 20
    fi
  fi

  # (b) the random-weight 1B: load, generation, teacher-forced pass, VQ decode, in bf16 on the GPU
  if ! janus_stage_blocked janus-1b "$bench" janus_bench_pretrained; then
    t0=$SECONDS
    note=""
    [[ -f $JANUS_DIR/.complete ]] && note="1B directory reused; "
    janus_1b_dir "$(limit 60 $((keep_rl + 30)))"
    rc=$?
    if ((rc == 0)); then
      run_limited "$(limit 90 "$keep_rl")" "$LOGS/janus-1b-run.log" "$bench" run "$JANUS_DIR" --device cuda --dtype bf16 --tokens 576
      rc=$?
    fi
    local figures
    figures=$(python3 - "$LOGS/janus-1b-run.log" <<'PYEOF' 2>/dev/null
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):text.rindex("}") + 1])
def gb(k):
    v = j.get(k)
    return "%.2f GB" % (v / 1e9) if isinstance(v, (int, float)) else str(v)
print("load %.1f s; %.2f ms per CFG token (%d tokens: %.3g images/s); teacher-forced pass %.3f s; VQ decode %.3f s; "
      "peak CUDA allocated %s, device used %s" % (j["load_seconds"], 1e3 * j["seconds_per_token"], j["generate_tokens"],
      j["images_per_second_estimate"], j["teacher_forced_seconds"], j["vq_decode_seconds"],
      gb("peak_cuda_allocated_bytes"), gb("peak_device_used_bytes")))
PYEOF
    )
    [[ -n $figures ]] && echo "  Janus-Pro-1B (random weights, bf16, cuda): $figures"
    if ((rc == 0)) && [[ -n $figures ]]; then
      record janus-1b PASS $((SECONDS - t0)) "$note$figures"
    elif ((rc == 124 || rc == 137)); then
      record janus-1b TIMEOUT $((SECONDS - t0)) "${note}janus_bench_pretrained write/run (janus-1b-*.log)"
    else
      record janus-1b FAIL $((SECONDS - t0)) "${note}janus_bench_pretrained write/run exit $rc (janus-1b-*.log)"
      if [[ -f $LOGS/janus-1b-run.log ]]; then show_tail "$LOGS/janus-1b-run.log" 20; else show_tail "$LOGS/janus-1b-write.log" 20; fi
    fi
  fi

  # (c) RL steps of the 1B at the real shapes, with the trainer's own code
  if ! janus_stage_blocked janus-rl "$bench" janus_bench_pretrained; then
    t0=$SECONDS
    local rl_args=()
    read -r -a rl_args <<<"${GCPO_JANUS_RL_ARGS:---prompts 1 --group 4 --steps 2}"
    janus_1b_dir "$(limit 60 30)"
    rc=$?
    if ((rc == 0)); then
      run_limited "$(limit 300 5)" "$LOGS/janus-rl.log" "$bench" rl "$JANUS_DIR" --device cuda --dtype bf16 --grid 24x24 "${rl_args[@]}"
      rc=$?
      grep -E '^rl ' "$LOGS/janus-rl.log" | sed 's/^/  /'
    fi
    note=$(grep -m1 '^rl summary:' "$LOGS/janus-rl.log" 2>/dev/null | sed 's/^rl summary: //')
    if ((rc == 0)) && [[ -n $note ]]; then
      record janus-rl PASS $((SECONDS - t0)) "${rl_args[*]}: $note"
    elif ((rc == 124 || rc == 137)); then
      record janus-rl TIMEOUT $((SECONDS - t0)) "${rl_args[*]}: $(grep -c '^rl step' "$LOGS/janus-rl.log" 2>/dev/null || echo 0) steps done (janus-rl.log)"
    else
      record janus-rl FAIL $((SECONDS - t0)) "janus_bench_pretrained write/rl exit $rc (janus-rl.log, janus-1b-write.log)"
      if [[ -f $LOGS/janus-rl.log ]]; then show_tail "$LOGS/janus-rl.log" 20; else show_tail "$LOGS/janus-1b-write.log" 20; fi
    fi
  fi
}

# ---- 8. data parallelism on NCCL (issue 11) --------------------------------------------------------
# 2 processes of janus_trainer (scripts/launch.sh: torchrun's variables, one GPU each by LOCAL_RANK)
# against 1 on the same global batch; the rollouts must be the same (metrics' rollout_digest).
# Needs 2 GPUs and a trainer whose janus_dist has NCCL ("janus_dist: c10d Gloo ON, NCCL ON" in
# trainer-build.log); otherwise SKIP with the reason. Logs: janus-dp-1.log, janus-dp-2.log.
janus_dp_stage() {
  section "data parallelism: 2 NCCL processes vs 1 (janus-dp)"
  local bin=$TRAINER_BUILD/examples/janus/janus_trainer gpus t0=$SECONDS rc
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
  if skipped janus-dp; then
    record janus-dp SKIP 0 "GCPO_SKIP"
  elif ((gpus < 2)); then
    record janus-dp SKIP 0 "this machine has $gpus GPU(s): 2 NCCL processes need 2 (the CPU CI runs 2 Gloo processes)"
  elif [[ ! -x $bin ]]; then
    record janus-dp SKIP 0 "janus_trainer was not built (trainer-build.log)"
  elif ! grep -q 'janus_dist: c10d Gloo ON, NCCL ON' "$LOGS/trainer-build.log" 2>/dev/null; then
    record janus-dp SKIP 0 "the trainer was built without NCCL in janus_dist ($(grep -m1 -E 'janus_dist' "$LOGS/trainer-build.log" 2>/dev/null || echo 'no janus_dist line'); trainer-build.log)"
  else
    local run=$BUILD/janus-dp args
    rm -rf "$run"
    args=(-q rl --device cuda --init "$ROOT/examples/janus/checkpoints/demo-8x8.safetensors" --grid 8
      --tags single_object,two_object --reward clean --prompts 4 --group 16 --steps 3 --save-every 0
      --image-every 0 --eval-samples 4)
    run_limited "$(limit 60 5)" "$LOGS/janus-dp-1.log" "$bin" "${args[@]}" --out "$run/one"
    rc=$?
    if ((rc == 0)); then
      run_limited "$(limit 90 5)" "$LOGS/janus-dp-2.log" bash "$ROOT/scripts/launch.sh" 2 "$bin" "${args[@]}" \
        --dist-backend nccl --dist-timeout 60 --out "$run/two"
      rc=$?
    fi
    local d1 d2
    d1=$(grep -o '"rollout_digest":"[0-9a-f]*"' "$run/one/metrics.jsonl" 2>/dev/null | tr '\n' ' ')
    d2=$(grep -o '"rollout_digest":"[0-9a-f]*"' "$run/two/metrics.jsonl" 2>/dev/null | tr '\n' ' ')
    if ((rc == 0)) && [[ -n $d1 && $d1 == "$d2" ]]; then
      record janus-dp PASS $((SECONDS - t0)) "2 NCCL processes sampled the rollouts of 1 over 3 steps; s/step $(python3 -c 'import json,sys; print("%.2f (1) vs %.2f (2)" % tuple(json.load(open(p))["mean_step_seconds"] for p in sys.argv[1:]))' "$run/one/summary.json" "$run/two/summary.json" 2>/dev/null)"
    elif ((rc == 124 || rc == 137)); then
      record janus-dp TIMEOUT $((SECONDS - t0)) "janus-dp-*.log"
    else
      record janus-dp FAIL $((SECONDS - t0)) "exit $rc; digests: 1 process [$d1], 2 processes [$d2] (janus-dp-*.log)"
      show_tail "$LOGS/janus-dp-2.log" 20
    fi
  fi
}

build_benchmark_static() {
  local src=$ROOT/.device/benchmark-src dst=$BUILD/benchmark-static cxx
  cxx=$(command -v c++ || command -v g++)
  rm -rf "$dst"
  mkdir -p "$dst/obj" "$dst/lib/cmake/benchmark" "$dst/include"
  cp -r "$src/include/benchmark" "$dst/include/"
  # shellcheck disable=SC2016
  find "$src/src" -name '*.cc' -print0 | xargs -0 -P "$JOBS" -I{} sh -c \
    '"$1" -O2 -std=c++17 -include cstdint -DNDEBUG -DHAVE_STD_REGEX -DHAVE_STEADY_CLOCK -DBENCHMARK_STATIC_DEFINE -I"$2/include" -I"$2/src" -c "$3" -o "$4/obj/$(basename "$3" .cc).o"' \
    _ "$cxx" "$src" {} "$dst" || return 1
  local objs=() o
  for o in "$dst"/obj/*.o; do [[ $o == */benchmark_main.o ]] || objs+=("$o"); done
  ar rcs "$dst/lib/libbenchmark.a" "${objs[@]}" || return 1
  ar rcs "$dst/lib/libbenchmark_main.a" "$dst/obj/benchmark_main.o" || return 1
  cat >"$dst/lib/cmake/benchmark/benchmarkConfig.cmake" <<'EOF'
# Google Benchmark built from source by scripts/device-check.sh (static; the carried Debian
# libbenchmark.so did not load here).
include(CMakeFindDependencyMacro)
find_dependency(Threads)
get_filename_component(_gcpo_bm_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET benchmark::benchmark)
  add_library(benchmark::benchmark STATIC IMPORTED)
  set_target_properties(benchmark::benchmark PROPERTIES
    IMPORTED_LOCATION "${_gcpo_bm_prefix}/lib/libbenchmark.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_gcpo_bm_prefix}/include"
    INTERFACE_COMPILE_DEFINITIONS "BENCHMARK_STATIC_DEFINE"
    INTERFACE_LINK_LIBRARIES "Threads::Threads")
  add_library(benchmark::benchmark_main STATIC IMPORTED)
  set_target_properties(benchmark::benchmark_main PROPERTIES
    IMPORTED_LOCATION "${_gcpo_bm_prefix}/lib/libbenchmark_main.a"
    INTERFACE_LINK_LIBRARIES "benchmark::benchmark")
endif()
set(benchmark_VERSION 1.7.1)
EOF
}

finish() {
  # the merged benchmark JSON, the summary and the logs
  section "summary"
  if [[ -f $OUTDIR/bench_cuda.json || -s ${OUTDIR}/baseline.jsonl ]]; then
    python3 "$ROOT/scripts/bench-summary.py" --cuda "$OUTDIR/bench_cuda.json" --baseline "$OUTDIR/baseline.jsonl" \
      --txt "$OUTDIR/summary.txt" --json "$OUTDIR/summary.json" \
      --gpu "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)" >"$LOGS/summary-console.txt" 2>&1
  else
    echo "(no benchmark results: nothing to summarise)" >"$LOGS/summary-console.txt"
  fi
  tar -czf "$OUTDIR/logs.tar.gz" -C "$LOGS" . 2>/dev/null

  echo
  echo "Stages:"
  local s
  for s in "${STAGES[@]}"; do
    IFS='|' read -r name status secs note <<<"$s"
    printf '  %-14s %-7s %5ss  %s\n' "$name" "$status" "$secs" "$note"
  done
  echo
  cat "$LOGS/summary-console.txt"
  echo
  local timed=0 cases=0
  [[ -f $OUTDIR/summary.json ]] && read -r timed cases < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
rows = d.get("rows", [])
print(sum(1 for r in rows if r.get("time_us") is not None), sum(1 for r in rows if r.get("baseline_us") is not None))' "$OUTDIR/summary.json" 2>/dev/null)
  echo "benchmarks: ${timed:-0} CUDA results, ${cases:-0} baseline cases (summary.txt, summary.json)"
  # the verdict: failures of the code apart from stages that were not run (and why)
  local notrun=""
  if ((${#NOT_RUN[@]})); then
    notrun=$(printf '%s; ' "${NOT_RUN[@]}")
    notrun="; not run: ${notrun%; }"
  fi
  if ((${#FAILED[@]})); then
    echo "device-check: FAILED in ${FAILED[*]}$notrun ($(elapsed)s; logs: logs.tar.gz)"
    RC=1
  elif ((!HAVE_GPU)); then
    echo "device-check: NO GPU - built and ran the CPU tests only ($(elapsed)s)"
    RC=3
  elif [[ -n $notrun ]]; then
    echo "device-check: PASSED what ran, INCOMPLETE$notrun ($(elapsed)s)"
    RC=4
  else
    echo "device-check: OK, every stage ran and passed ($(elapsed)s)"
    RC=0
  fi
  echo "$RC" >"$LOGS/.rc"
}

RC=1
main 2>&1 | tee "$OUTDIR/device-check.log"
rc=$(cat "$LOGS/.rc" 2>/dev/null || echo 1)
exit "$rc"
