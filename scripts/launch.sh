#!/usr/bin/env bash
# scripts/launch.sh K COMMAND [ARGS...] - start K processes of COMMAND on this host the way
# `torchrun --nproc-per-node K --no-python COMMAND ARGS...` does (static rendezvous, one node),
# for machines where torchrun cannot run (Debian's torch 1.13 launcher under Python 3.11).
#
# Each process gets the variables torchrun 1.13's local agent sets
# (torch/distributed/elastic/agent/server/local_elastic_agent.py):
#   RANK=LOCAL_RANK=ROLE_RANK=i, WORLD_SIZE=LOCAL_WORLD_SIZE=ROLE_WORLD_SIZE=K, GROUP_RANK=0,
#   GROUP_WORLD_SIZE=1, ROLE_NAME=default, MASTER_ADDR (default 127.0.0.1), MASTER_PORT (default:
#   a free port), TORCHELASTIC_RESTART_COUNT=0, TORCHELASTIC_MAX_RESTARTS=0,
#   TORCHELASTIC_RUN_ID=none, NCCL_ASYNC_ERROR_HANDLING (default 1), OMP_NUM_THREADS (default 1
#   when K > 1, as torchrun) and TORCHELASTIC_USE_AGENT_STORE=False: there is no agent here, so
#   rank 0 serves the rendezvous store itself (torchrun's static agent would say True).
# MASTER_ADDR, MASTER_PORT, OMP_NUM_THREADS and NCCL_ASYNC_ERROR_HANDLING already set in the
# environment are kept.
#
# Output: every line of a process's stdout and stderr is prefixed with "[rank i] ".
# Exit: 0 when every process exits 0. When one exits non-zero (or is killed by a signal),
# the others get SIGTERM, then SIGKILL after LAUNCH_GRACE_S seconds (default 10), and
# launch.sh exits with that process's code (1 if it died by a signal), naming its rank on
# stderr. SIGINT / SIGTERM to launch.sh are passed on to the processes the same way.
set -uo pipefail

usage() { echo "usage: scripts/launch.sh K COMMAND [ARGS...]   (K >= 1 processes)" >&2; exit 64; }
[[ $# -ge 2 ]] || usage
nproc_arg=$1
shift
if ! [[ $nproc_arg =~ ^[1-9][0-9]*$ ]]; then
  echo "launch.sh: K (\"$nproc_arg\") must be a positive integer" >&2
  usage
fi
grace=${LAUNCH_GRACE_S:-10}
if ! [[ $grace =~ ^[0-9]+$ ]]; then
  echo "launch.sh: LAUNCH_GRACE_S (\"$grace\") must be a non-negative integer" >&2
  exit 64
fi
if (( BASH_VERSINFO[0] < 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] < 1) )); then
  echo "launch.sh: needs bash >= 5.1 (wait -n -p), this is $BASH_VERSION" >&2
  exit 69
fi

master_addr=${MASTER_ADDR:-127.0.0.1}
master_port=${MASTER_PORT:-}
if [[ -z $master_port ]]; then
  # A port the kernel hands out as free now (the small race until rank 0 binds it is torchrun's too).
  master_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') || {
    echo "launch.sh: could not find a free port (python3 missing?); set MASTER_PORT" >&2
    exit 69
  }
fi
omp=${OMP_NUM_THREADS:-}
if [[ -z $omp && $nproc_arg -gt 1 ]]; then omp=1; fi

fifo_dir=$(mktemp -d "${TMPDIR:-/tmp}/launch.XXXXXX") || exit 69
declare -a pids=() filters=()
declare -A rank_of=()
for ((i = 0; i < nproc_arg; i++)); do
  # The prefixing filters read named pipes, so launch.sh can wait for them to drain.
  mkfifo "$fifo_dir/out$i" "$fifo_dir/err$i" || exit 69
  sed -u "s/^/[rank $i] /" < "$fifo_dir/out$i" &
  filters+=($!)
  sed -u "s/^/[rank $i] /" < "$fifo_dir/err$i" >&2 &
  filters+=($!)
  (
    export RANK=$i LOCAL_RANK=$i ROLE_RANK=$i GROUP_RANK=0
    export WORLD_SIZE=$nproc_arg LOCAL_WORLD_SIZE=$nproc_arg ROLE_WORLD_SIZE=$nproc_arg GROUP_WORLD_SIZE=1
    export ROLE_NAME=default MASTER_ADDR=$master_addr MASTER_PORT=$master_port
    export TORCHELASTIC_RESTART_COUNT=0 TORCHELASTIC_MAX_RESTARTS=0 TORCHELASTIC_RUN_ID=none
    export TORCHELASTIC_USE_AGENT_STORE=False NCCL_ASYNC_ERROR_HANDLING=${NCCL_ASYNC_ERROR_HANDLING:-1}
    if [[ -n $omp ]]; then export OMP_NUM_THREADS=$omp; fi
    exec "$@"
  ) > "$fifo_dir/out$i" 2> "$fifo_dir/err$i" &
  pids+=($!)
  rank_of[$!]=$i
done
# The filters drain once every process (the pipes' only writers) has exited.
finish() { wait "${filters[@]}" 2>/dev/null; rm -rf "$fifo_dir"; }

# Stops every process still running: SIGTERM, then SIGKILL after $grace seconds.
stop_all() {
  local pid alive
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for ((t = 0; t < grace * 10; t++)); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "launch.sh: rank ${rank_of[$pid]} (pid $pid) still running after ${grace} s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null
    fi
  done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
}
trap 'echo "launch.sh: interrupted, stopping every rank" >&2; stop_all; finish; exit 130' INT TERM

remaining=$nproc_arg
while ((remaining > 0)); do
  finished=
  wait -n -p finished "${pids[@]}"
  code=$?
  [[ -n $finished ]] || continue
  remaining=$((remaining - 1))
  rank=${rank_of[$finished]}
  # Leave only the processes still running in pids.
  declare -a running=()
  for pid in "${pids[@]}"; do [[ $pid != "$finished" ]] && running+=("$pid"); done
  pids=("${running[@]}")
  if ((code != 0)); then
    if ((code > 128)); then
      echo "launch.sh: rank $rank (pid $finished) exited with code $code (signal $((code - 128))); stopping the other ranks" >&2
      code=1
    else
      echo "launch.sh: rank $rank (pid $finished) exited with code $code; stopping the other ranks" >&2
    fi
    ((${#pids[@]} > 0)) && stop_all
    finish
    echo "launch.sh: failed: rank $rank exited non-zero" >&2
    exit "$code"
  fi
done
finish
exit 0
