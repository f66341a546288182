#!/usr/bin/env bash
# Generates the gateway's test-only proto (tests/proto) into tests/gen (committed; deterministic).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../../.. && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
SITE=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
GRPC_TOOLS_PROTO=$($PY -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
rm -rf gen && mkdir -p gen
(cd proto && $PY -m grpc_tools.protoc -I . -I "$SITE" -I "$GRPC_TOOLS_PROTO" \
  --python_out=../gen --pyi_out=../gen --grpc_python_out=../gen gwtest/v1/template_service.proto)
touch gen/gwtest/__init__.py gen/gwtest/v1/__init__.py
