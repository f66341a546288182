"""The `modelserve` CLI as a user's shell sees it (a subprocess per command) against the real
suite: login writes a private profile, commands print tables/JSON/YAML, refusals are one line
with status and request id and exit 1, usage errors exit 2, `executions watch` exits with the
execution's outcome; and the SDK README's example runs as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from modelserve_client import Client

from .conftest import ADMIN, FEATURES, Suite, model_ready, wait_until

pytestmark = [pytest.mark.e2e]

README = Path(__file__).resolve().parents[1] / "README.md"
MODELSERVE = shutil.which("modelserve", path=str(Path(sys.executable).parent)) or "modelserve"


class Cli:
    def __init__(self, config_dir: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
        self.env.update({"MODELSERVE_CONFIG_DIR": str(config_dir), "COLUMNS": "200", "NO_COLOR": "1"})

    def __call__(self, *args: str, rc: int = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([MODELSERVE, *args], capture_output=True, text=True, env=self.env, timeout=120)
        assert r.returncode == rc, f"modelserve {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def json(self, *args: str) -> Any:
        return json.loads(self("-o", "json", *args).stdout)


@pytest.fixture(scope="module")
def cli(suite: Suite, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(tmp_path_factory.mktemp("cfg") / "modelserve")


@pytest.fixture(scope="module")
def tenant_key(suite: Suite, cli: Cli) -> str:
    r = cli("login", "--url", suite.url, "--api-key", ADMIN)
    cfg = Path(cli.env["MODELSERVE_CONFIG_DIR"]) / "config.toml"
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600 and ADMIN in cfg.read_text()
    assert "config.toml" in r.stdout
    cli("tenants", "create", "cli-t", "--display-name", "CLI tenant")
    assert "cli-t" in [t["name"] for t in cli.json("tenants", "list")]
    created = cli("-o", "json", "keys", "create", "cli-t", "--scope", "tenant-admin")
    assert "shown only once" in created.stderr
    secret: str = json.loads(created.stdout)["secret"]
    return secret


def test_login_refuses_a_wrong_key_without_writing(suite: Suite, tmp_path: Path) -> None:
    c = Cli(tmp_path / "cfg2")
    r = c("login", "--url", suite.url, "--api-key", "wrong", rc=1)
    assert r.stderr.startswith("error: UNAUTHENTICATED") and "request id" in r.stderr
    assert not (tmp_path / "cfg2" / "config.toml").exists()


def test_models_deploy_infer_and_outputs(suite: Suite, cli: Cli, tenant_key: str, tmp_path: Path) -> None:
    k = ("--api-key", tenant_key)
    cli(*k, "models", "create", "cli-clf", "--description", "via cli")
    with Client(suite.url, api_key=tenant_key) as c:
        c.create_version("cli-clf", **suite.onnx_version_fields())
    cli(*k, "deploy", "cli-clf", "--version", "1=100")
    with Client(suite.url, api_key=tenant_key) as c:
        wait_until(lambda: model_ready(c, "cli-clf"), 60, "cli-clf ready")
    assert "cli-clf" in [m["name"] for m in cli.json(*k, "models", "list")]
    assert (
        yaml.safe_load(cli(*k, "-o", "yaml", "models", "get", "cli-clf").stdout)["description"] == "via cli"
    )
    assert [v["version"] for v in cli.json(*k, "versions", "list", "cli-clf")] == ["1"]
    table = cli(*k, "versions", "list", "cli-clf").stdout
    assert "onnx" in table and "version" in table

    inline = cli.json(*k, "infer", "cli-clf", "--input", f"features={json.dumps(FEATURES)}")
    label = inline["outputs"]["label"]
    assert label["shape"] == [1, 1] and label["datatype"] == "INT64"
    assert inline["outputs"]["probabilities"]["datatype"] == "FP32"
    npy = tmp_path / "x.npy"
    np.save(npy, np.asarray(FEATURES, np.float32))
    assert cli.json(*k, "infer", "cli-clf", "--input", f"features=@{npy}")["outputs"]["label"] == label
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4],
                                           "data": FEATURES[0]}]}))  # fmt: skip
    assert cli.json(*k, "infer", "cli-clf", "--json", f"@{req}")["outputs"]["label"] == label
    assert (
        "probabilities" in cli(*k, "infer", "cli-clf", "--input", f"features={json.dumps(FEATURES)}").stdout
    )
    cli(*k, "aliases", "set", "cli-clf", "production", "1")
    assert [a["alias"] for a in cli.json(*k, "aliases", "list", "cli-clf")] == ["production"]


def test_errors_are_one_line_with_status_and_request_id(cli: Cli, tenant_key: str) -> None:
    k = ("--api-key", tenant_key)
    r = cli(*k, "infer", "no-such-model", "--input", "features=[[1,2,3,4]]", rc=1)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(
        r"error: NOT_FOUND: .*no-such-model.*\(request id [0-9a-f]{32}\)$", lines[0]
    )
    assert "Traceback" not in r.stderr and r.stdout == ""
    debug = cli(*k, "--debug", "models", "get", "no-such-model", rc=1)
    assert "Traceback" in debug.stderr and "error: NOT_FOUND" in debug.stderr
    assert cli("--api-key", "wrong", "models", "list", rc=1).stderr.startswith("error: UNAUTHENTICATED")
    assert "usage error" in cli(*k, "infer", "cli-clf", "--input", "features", rc=2).stderr
    assert "usage error" in cli(*k, "infer", "cli-clf", "--input", "features=[[1,", rc=2).stderr
    assert "usage error" in cli(*k, "deploy", "cli-clf", "--version", "1=x", rc=2).stderr
    cli(*k, "models", "frobnicate", rc=2)
    cli(*k, "-o", "xml", "models", "list", rc=2)


def test_pipelines_and_executions(cli: Cli, tenant_key: str, tmp_path: Path) -> None:
    k = ("--api-key", tenant_key)
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "cli-pipe",
                "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
                "nodes": [
                    {
                        "name": "clf",
                        "model": {
                            "model": {"name": "cli-clf"},
                            "inputs": [{"name": "features", "source": "inputs.features"}],
                            "outputs": ["label"],
                        },
                    }
                ],
                "outputs": [{"name": "label", "sources": ["clf.label"]}],
            }
        )
    )
    v1 = cli.json(*k, "pipelines", "apply", "-f", str(spec))
    v2 = cli.json(*k, "pipelines", "apply", "-f", str(spec))
    assert int(v2["version"]) == int(v1["version"]) + 1
    assert "cli-pipe" in [p["name"] for p in cli.json(*k, "pipelines", "list")]
    run = cli.json(*k, "pipelines", "run", "cli-pipe", "--input", f"features={json.dumps(FEATURES)}")
    assert run["outputs"]["label"]["shape"] == [1, 1] and run["trace"][0]["node"] == "clf"
    table = cli(*k, "pipelines", "run", "cli-pipe", "--input", f"features={json.dumps(FEATURES)}").stdout
    assert "NODE_STATUS_SUCCEEDED" in table
    ex = cli.json(*k, "executions", "submit", "cli-pipe", "--input", f"features={json.dumps(FEATURES)}")
    watched = cli(*k, "executions", "watch", ex["execution"], "--timeout", "60")
    assert "EXECUTION_STATE_SUCCEEDED" in watched.stdout
    assert cli.json(*k, "executions", "get", ex["execution"])["state"] == "EXECUTION_STATE_SUCCEEDED"
    assert ex["execution"] in [e["execution"] for e in cli.json(*k, "executions", "list")]
    cli(*k, "pipelines", "delete", "cli-pipe")
    cli(*k, "pipelines", "get", "cli-pipe", rc=1)


def test_keys_rotate_and_revoke(suite: Suite, cli: Cli, tenant_key: str) -> None:
    created = cli.json("keys", "create", "cli-t", "--scope", "read")
    key = created["api_key"]["key"]
    rotated = cli("-o", "json", "keys", "rotate", "cli-t", key, "--grace", "0")
    assert "shown only once" in rotated.stderr
    new = json.loads(rotated.stdout)["secret"]
    cli("--api-key", new, "models", "list")
    cli("keys", "revoke", "cli-t", key)

    def refused() -> bool:
        argv = [MODELSERVE, "--api-key", new, "models", "list"]
        return subprocess.run(argv, env=cli.env, capture_output=True, timeout=60).returncode == 1

    wait_until(refused, 30, "revoked key refused")


def test_status_shows_server_and_models(cli: Cli, tenant_key: str) -> None:
    rows = cli.json("--api-key", tenant_key, "status")
    assert rows[0] == {"what": "server", "ready": True}


def test_readme_example_runs(suite: Suite, tmp_path: Path) -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    blob = suite.artifacts / "clf.onnx"
    fields = suite.onnx_version_fields()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    with Client(suite.url, api_key=ADMIN) as admin:
        admin.create_tenant("readme-t")
        secret = admin.create_key("readme-t", ["tenant-admin"])["secret"]
    env.update({"MODELSERVE_URL": suite.url, "MODELSERVE_API_KEY": secret, "ARTIFACT": blob.as_uri()})
    env.update({"SHA256": str(fields["artifact_sha256"]), "MODELSERVE_CONFIG_DIR": str(tmp_path)})
    r = subprocess.run(
        [sys.executable, "-c", code.group(1)], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert re.search(r"^label \[\[\d\]\] probabilities", r.stdout, re.M), r.stdout
    assert "trace [('clf', 'NODE_STATUS_SUCCEEDED')]" in r.stdout
    assert "execution EXECUTION_STATE_SUCCEEDED" in r.stdout and "refused: NOT_FOUND True" in r.stdout
