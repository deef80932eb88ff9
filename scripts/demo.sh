#!/usr/bin/env bash
# The README demo: on a fresh Debian machine, installs what is missing (apt-get), builds the
# example trainer (libtorch, CPU) and runs a short GCPO run of a small Janus-Pro-architecture
# model on the task "shapes", from the shipped warm start (examples/janus/checkpoints/), then
# prints the held-out accuracy before and after and where the pictures, metrics and summary are.
#
#   scripts/demo.sh               # GCPO, DEMO_STEPS (60) steps, all cores
#   scripts/demo.sh --operators   # only the operator demo: one GCPO step's operators at
#                                 # Janus-Pro shapes (examples/gcpo_demo.cpp), no libtorch
# Environment: JOBS=<n> build jobs (nproc), DEMO_STEPS=<n>, DEMO_OUT=<dir> (runs/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
source scripts/demo-settings.sh

# configure_and_build <target> [cmake options]: Release, CPU only, no tests or benchmarks.
configure_and_build() {
  local target=$1
  shift
  cmake -S . -B build-demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DGCPO_ENABLE_CUDA=OFF \
    -DGCPO_BUILD_TESTS=OFF -DGCPO_BUILD_BENCH=OFF -DGCPO_BUILD_EXAMPLES=ON "$@" >/dev/null
  cmake --build build-demo -j "$JOBS" --target "$target"
}

if [[ "${1:-}" == "--operators" ]]; then
  bash scripts/install-deps.sh
  configure_and_build gcpo_demo
  exec ./build-demo/examples/gcpo_demo
elif [[ $# -gt 0 ]]; then
  echo "demo.sh: unknown argument '$1' (use --operators, or nothing)" >&2
  exit 2
fi

t0=$SECONDS
bash scripts/install-deps.sh --trainer
echo "== building janus_trainer (libtorch, CPU; the first build takes a few minutes)"
configure_and_build janus_trainer -DGCPO_BUILD_TRAINER=ON
echo "== built in $((SECONDS - t0)) s"

OUTDIR=${DEMO_OUT:-runs/demo}
# An earlier demo run is kept: --replace moves its files into $OUTDIR.replaced-<time> first.
echo "== GCPO: $DEMO_STEPS steps from $DEMO_INIT -> $OUTDIR"
# shellcheck disable=SC2046
./build-demo/examples/janus/janus_trainer rl --algo gcpo --seed 0 --init "$DEMO_INIT" --steps "$DEMO_STEPS" \
  $(demo_rl_args) --out "$OUTDIR" --replace

cat <<MSG

== what to look at ($((SECONDS - t0)) s in all)
  $OUTDIR/summary.json             the run's summary: held-out accuracy at start and end, rewards, timing
  $OUTDIR/metrics.jsonl            one JSON line per step: reward, reward std, per-tag accuracy, KL,
                                   critical fraction, mean entropy, step time
  $OUTDIR/images/step-*.png        the sampled groups every 20 steps (green frame: correct, red: wrong)
  $OUTDIR/eval/step-000000.png     held-out prompts before training ...
  $OUTDIR/eval/step-$(printf '%06d' "$DEMO_STEPS").png     ... and after (prompts and verdicts in the .txt beside each)
  $OUTDIR/model.safetensors        the trained policy (janus_trainer sample --model ... --prompt ...)
MSG
