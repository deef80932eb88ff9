#!/usr/bin/env bash
# scripts/slurm_env.sh COMMAND [ARGS...] - run COMMAND as one rank of a SLURM job step with the
# variables torchrun would set, derived from SLURM's, so that
#
#   srun --nodes 2 --ntasks-per-node 8 --gpus-per-node 8 scripts/slurm_env.sh janus_trainer rl ...
#
# starts a data-parallel run (one task per GPU; janus_trainer picks its GPU by LOCAL_RANK).
#   RANK             = SLURM_PROCID
#   WORLD_SIZE       = SLURM_NTASKS
#   LOCAL_RANK       = SLURM_LOCALID
#   LOCAL_WORLD_SIZE = the tasks on this node: SLURM_NTASKS_PER_NODE, else the first count of
#                      SLURM_TASKS_PER_NODE ("8(x2)" -> 8)
#   MASTER_ADDR      = kept when set, else the first host of SLURM_JOB_NODELIST (scontrol)
#   MASTER_PORT      = kept when set, else 20000 + SLURM_JOB_ID mod 10000 (one port per job)
#   TORCHELASTIC_USE_AGENT_STORE=False (rank 0 serves the rendezvous store), OMP_NUM_THREADS=1
#   when unset and more than one task runs on the node.
# A SLURM variable missing or not a number is named, and the script exits 64 without starting
# COMMAND.
set -euo pipefail

[[ $# -ge 1 ]] || { echo "usage: scripts/slurm_env.sh COMMAND [ARGS...]   (run under srun)" >&2; exit 64; }

need_number() {  # name value
  if ! [[ ${2:-} =~ ^[0-9]+$ ]]; then
    echo "slurm_env.sh: $1 (\"${2:-}\") is not set or not a non-negative integer: run this under srun" >&2
    exit 64
  fi
}

need_number SLURM_PROCID "${SLURM_PROCID:-}"
need_number SLURM_NTASKS "${SLURM_NTASKS:-}"
need_number SLURM_LOCALID "${SLURM_LOCALID:-}"
local_world=${SLURM_NTASKS_PER_NODE:-}
if [[ -z $local_world && -n ${SLURM_TASKS_PER_NODE:-} ]]; then
  local_world=${SLURM_TASKS_PER_NODE%%[(,]*}
fi
need_number "SLURM_NTASKS_PER_NODE / SLURM_TASKS_PER_NODE" "$local_world"

if [[ -z ${MASTER_ADDR:-} ]]; then
  [[ -n ${SLURM_JOB_NODELIST:-} ]] || { echo "slurm_env.sh: neither MASTER_ADDR nor SLURM_JOB_NODELIST is set" >&2; exit 64; }
  command -v scontrol >/dev/null || { echo "slurm_env.sh: scontrol not found to expand SLURM_JOB_NODELIST; set MASTER_ADDR" >&2; exit 64; }
  MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
fi
if [[ -z ${MASTER_PORT:-} ]]; then
  need_number SLURM_JOB_ID "${SLURM_JOB_ID:-}"
  MASTER_PORT=$((20000 + SLURM_JOB_ID % 10000))
fi

export RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS LOCAL_RANK=$SLURM_LOCALID LOCAL_WORLD_SIZE=$local_world
export MASTER_ADDR MASTER_PORT TORCHELASTIC_USE_AGENT_STORE=False TORCHELASTIC_RESTART_COUNT=0
if [[ -z ${OMP_NUM_THREADS:-} && $local_world -gt 1 ]]; then export OMP_NUM_THREADS=1; fi
exec "$@"
