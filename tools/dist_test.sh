#!/usr/bin/env bash
# Evaluate on several processes of one machine (or several, with NNODES,
# NODE_RANK and MASTER_ADDR) with torchrun.
#   tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [test.py options]
# PORT: rendezvous port; a free one is picked when unset.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NUM_PROCESSES [test.py options]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
tools_dir=$(cd "$(dirname "$0")" && pwd)
# The checkout's virtual environment (make setup) unless PYTHON is set.
default_python=python
if [ -x "$tools_dir/../.venv/bin/python" ]; then
    default_python="$tools_dir/../.venv/bin/python"
fi
PYTHON=${PYTHON:-$default_python}

PORT=$("$PYTHON" "$tools_dir/misc/check_port.py" "$MASTER_ADDR" "${PORT:-}" \
    --nnodes "$NNODES" --node-rank "$NODE_RANK")

PYTHONPATH="$tools_dir/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" \
    --master_port="$PORT" \
    "$tools_dir/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
