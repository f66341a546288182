#!/usr/bin/env bash
# buf breaking against a git ref (default main), offline: the ref's protos are built into an image
# with the same locally installed googleapis protos (which are git-ignored, so a plain
# '.git#branch=main' input lacks them).
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${1:-main}
BUF=node_modules/.bin/buf
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if ! git rev-parse --verify -q "$REF" >/dev/null; then
  echo "buf breaking: no ref $REF, nothing to compare"; exit 0
fi
git archive "$REF" buf.yaml protos | tar -x -C "$TMP"
mkdir -p "$TMP/.build" && cp -r .build/googleapis "$TMP/.build/"
(cd "$TMP" && "$OLDPWD/$BUF" build -o image.binpb)
$BUF build -o "$TMP/current.binpb"
$BUF breaking "$TMP/current.binpb" --against "$TMP/image.binpb" --exclude-imports
echo "buf breaking: no breaking change against $REF"
