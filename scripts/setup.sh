#!/usr/bin/env bash
# make setup: a fresh Debian machine with Python 3.11 -> everything the project needs.
# Idempotent, and quick when nothing changed (a stamp keyed on the lock and the pyprojects).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

SUDO=""
[[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && SUDO="sudo"

# --- Debian packages the tests and benchmarks need, only when missing --------------------------
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v npm >/dev/null || need+=(nodejs npm)
[[ -x /usr/bin/chromium ]] || need+=(chromium)  # the console's browser tests (playwright-core drives it)
command -v promtool >/dev/null || need+=(prometheus)  # tests/observability: promtool and a real Prometheus
command -v runuser >/dev/null || need+=(util-linux)
"$PYTHON" -m venv --help >/dev/null 2>&1 && "$PYTHON" -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
fresh_postgres=0
[[ " ${need[*]} " == *" postgresql "* ]] && fresh_postgres=1
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 && -z $SUDO ]]; then
    echo "setup: these Debian packages are missing and this user can neither install them nor sudo: ${need[*]}" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- PostgreSQL and Redis on loopback for the tests (started when not answering) ---------------
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    echo "setup: starting PostgreSQL"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
fi
# A PostgreSQL that this script just installed gets the tests' access: trust for loopback
# connections of user postgres (Debian's default asks for a password the tests do not have).
if ((fresh_postgres)); then
  for hba in /etc/postgresql/*/main/pg_hba.conf; do
    grep -q "modelserve-tests" "$hba" || $SUDO sed -i '1i host all postgres 127.0.0.1/32 trust # modelserve-tests\nhost all postgres ::1/128 trust # modelserve-tests' "$hba"
  done
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main restart || true
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  echo "setup: starting Redis"
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
fi

# --- Python: one virtualenv, pinned dependencies, our packages editable ------------------------
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
STAMP=.venv/.modelserve-setup
WANT=$(cat requirements.lock libs/*/pyproject.toml services/*/pyproject.toml clients/*/pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ ! -f $STAMP || $(cat $STAMP) != "$WANT" ]]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check uv==0.13.9
  .venv/bin/uv pip install -q -p .venv/bin/python -r requirements.lock
  .venv/bin/uv pip install -q -p .venv/bin/python --no-deps \
    -e libs/contracts -e libs/common \
    -e services/registry -e services/model_server -e services/orchestrator -e services/gateway -e clients/python
  echo "$WANT" > $STAMP
fi

# --- buf (npm, offline at run time) -------------------------------------------------------------
if [[ ! -x node_modules/.bin/buf ]]; then
  npm install --no-audit --no-fund --loglevel=error
fi

# --- the web console (console/: Preact + Vite, its own lock): npm ci when the lock changed, a build
# when the lock or the sources changed; the build lands in the gateway package (git-ignored there)
CONSOLE_OUT=services/gateway/src/modelserve_gateway/assets/console
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  echo "setup: WARNING: the console needs Node.js >= 20.19 (Vite 8), this is $(node --version);" \
       "install a newer nodejs (Debian 13, or NodeSource for Debian 12) and run make setup again;" \
       "until then /console is not served and its tests skip" >&2
else
  CONSOLE_WANT=$(cat console/package-lock.json | sha256sum | cut -d' ' -f1)
  if [[ ! -f console/node_modules/.modelserve-setup || $(cat console/node_modules/.modelserve-setup) != "$CONSOLE_WANT" ]]; then
    (cd console && npm ci --no-audit --no-fund --loglevel=error)
    echo "$CONSOLE_WANT" > console/node_modules/.modelserve-setup
  fi
  CONSOLE_BUILD=$( (cat console/package-lock.json; find console/src console/docs console/scripts console/index.html console/vite.config.ts console/tsconfig.json -type f -print0 | sort -z | xargs -0 cat) | sha256sum | cut -d' ' -f1)
  if [[ ! -f $CONSOLE_OUT/.modelserve-build || $(cat $CONSOLE_OUT/.modelserve-build) != "$CONSOLE_BUILD" ]]; then
    (cd console && npm run --silent build)
    echo "$CONSOLE_BUILD" > $CONSOLE_OUT/.modelserve-build
  fi
fi

# --- generated code: googleapis protos for buf, then a freshness check -------------------------
scripts/gen_proto.sh --check

# --- example models (ONNX classifier etc.), tools for the deploy checks --------------------------
if [[ -x scripts/make_examples.py ]]; then .venv/bin/python scripts/make_examples.py; fi
if [[ -x scripts/setup_deploy_tools.sh ]]; then scripts/setup_deploy_tools.sh; fi
echo "setup: done"
