#!/usr/bin/env bash
# Our model server beside the peers (KServe, Triton's own server with a python-backend model) in
# one run of the shared harness (../shared/peer-bench, see its README). Results land in
# bench/results/ (git-ignored). Extra arguments go to run_all.sh, e.g. --concurrency 1,8,32,64.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HARNESS=${PEER_BENCH:-$ROOT/../shared/peer-bench}
PY=$ROOT/.venv/bin/python
OURS="$PY -m modelserve_model_server --grpc-port {grpc_port} --grpc-host 127.0.0.1 --metrics-port {metrics_port} --model-repository $ROOT/models --load-models linear"
export BENCH_RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
exec "$HARNESS/run_all.sh" --peers kserve,triton-pybackend,ours,ours-w2 --concurrency 1,32,64 --duration 5 \
  --tag "${TAG:-ms-peers}" --custom "ours=$OURS" --custom "ours-w2=$OURS --workers 2" "$@"
