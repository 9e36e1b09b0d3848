#!/usr/bin/env bash
# Train on a Slurm cluster, one task per GPU.
#   GPUS=16 tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] \
#       [train.py options]
# GPUS (default 8), GPUS_PER_NODE (default 8), CPUS_PER_TASK (default 5)
# SRUN_ARGS (extra srun options) and PYTHON (default: .venv/bin/python of
# this checkout) are read from the environment.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py options]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
WORK_DIR_ARGS=()
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
    WORK_DIR_ARGS=(--work-dir "$1")
    shift
fi
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
tools_dir=$(cd "$(dirname "$0")" && pwd)
# The checkout's virtual environment (make setup) unless PYTHON is set.
default_python=python
if [ -x "$tools_dir/../.venv/bin/python" ]; then
    default_python="$tools_dir/../.venv/bin/python"
fi
PYTHON=${PYTHON:-$default_python}

# shellcheck disable=SC2086  # SRUN_ARGS holds several options on purpose.
PYTHONPATH="$tools_dir/..${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$tools_dir/train.py" "$CONFIG" "${WORK_DIR_ARGS[@]}" \
    --launcher slurm "$@"
