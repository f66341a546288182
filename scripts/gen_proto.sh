#!/usr/bin/env bash
# Regenerates libs/contracts/src from protos/ with the pinned grpcio-tools (the only way generated
# code gets there). With --check, generates into a temporary folder and fails when the committed
# code differs (stale or hand-edited).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$PWD/.venv/bin/python}
SITE=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
GRPC_TOOLS_PROTO=$($PY -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')

# googleapis protos come from the installed googleapis-common-protos package (buf reads them too).
mkdir -p .build/googleapis/google/api .build/googleapis/google/rpc
cp "$SITE"/google/api/*.proto .build/googleapis/google/api/
cp "$SITE"/google/rpc/*.proto .build/googleapis/google/rpc/

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
mapfile -t PROTOS < <(cd protos && find modelserve -name '*.proto' | sort)
(cd protos && $PY -m grpc_tools.protoc -I . -I ../.build/googleapis -I "$GRPC_TOOLS_PROTO" \
  --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" "${PROTOS[@]}")
find "$OUT" -type d -exec touch {}/__init__.py \;
rm -f "$OUT/__init__.py"
touch "$OUT/modelserve/py.typed"
# The sources the code was generated from, by content: any change to protos/ (comments included,
# which the generated code does not carry) shows up here, so freshness is checkable from git alone.
(cd protos && sha256sum "${PROTOS[@]}") > "$OUT/modelserve/PROTOS.sha256"

if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r -x __pycache__ -x "*.egg-info" "$OUT" libs/contracts/src >/dev/null; then
    diff -r -x __pycache__ -x "*.egg-info" "$OUT" libs/contracts/src | head -20
    echo "libs/contracts is stale or hand-edited: run 'make proto' and commit the result" >&2
    exit 1
  fi
  echo "libs/contracts is up to date"
  # The SDK carries the contracts' descriptors (its own pool, see clients/python/scripts).
  if ! $PY clients/python/scripts/gen_descriptors.py --check; then
    echo "clients/python's descriptors are stale: run 'make proto' and commit the result" >&2
    exit 1
  fi
else
  rm -rf libs/contracts/src/modelserve
  mkdir -p libs/contracts/src
  cp -r "$OUT"/. libs/contracts/src/
  echo "generated $(find libs/contracts/src -name '*_pb2.py' | wc -l) modules into libs/contracts/src"
  $PY clients/python/scripts/gen_descriptors.py
fi

# The proto comments for the gateway's /openapi.json (descriptions of operations and fields): the
# generated code drops SourceCodeInfo, so a descriptor set with it is written and turned into JSON
# inside the gateway package. --check fails when the committed JSON differs from the protos.
COMMENTS=services/gateway/src/modelserve_gateway/proto_comments.json
COMMENTS_TMP=$(mktemp -d)
trap 'rm -rf "$OUT" "$COMMENTS_TMP"' EXIT
(cd protos && $PY -m grpc_tools.protoc -I . -I ../.build/googleapis -I "$GRPC_TOOLS_PROTO" \
  --include_source_info --descriptor_set_out="$COMMENTS_TMP/protos.pb" "${PROTOS[@]}")
$PY scripts/proto_comments.py "$COMMENTS_TMP/protos.pb" "$COMMENTS_TMP/proto_comments.json"
if [[ "${1:-}" == "--check" ]]; then
  if ! cmp -s "$COMMENTS" "$COMMENTS_TMP/proto_comments.json"; then
    diff -u "$COMMENTS" "$COMMENTS_TMP/proto_comments.json" | head -20 || true
    echo "$COMMENTS is stale: run 'make proto' and commit the result" >&2
    exit 1
  fi
  echo "$COMMENTS is up to date"
else
  cp "$COMMENTS_TMP/proto_comments.json" "$COMMENTS"
  echo "wrote $(grep -c '^ "' "$COMMENTS") proto comments into $COMMENTS"
fi
