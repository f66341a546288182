"""Helpers of the observability tests: finding (or installing) Debian's prometheus/promtool, the
queries the dashboards and alert rules hold, metric names in a PromQL expression, and a running
Prometheus server with its HTTP API."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve_common.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
RULES = OBS / "rules" / "modelserve-alerts.yaml"
RULE_TESTS = OBS / "rules" / "modelserve-alerts.test.yaml"
DASHBOARDS = OBS / "dashboards"

_LABEL_NAMES = {"grpc_service", "grpc_method", "grpc_code", "grpc_type"}
_METRIC = re.compile(r"\b((?:modelserve|grpc)_[a-z0-9_]+|up)\b(?!\s*(?:=|!=|=~|!~))")


def tool(name: str) -> str:
    """The path of ``name`` (prometheus or promtool, both in Debian's ``prometheus`` package),
    installing the package with apt-get when it is missing and this user may; skips with the
    reason only when it is absent and cannot be installed."""
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"],
            env=env,
            capture_output=True,
            timeout=600,
            check=False,
        )
        found = shutil.which(name)
        if found:
            return found
        reason = done.stderr.decode(errors="replace")[-300:]
    else:
        reason = "not root and no apt-get"
    pytest.skip(f"{name} is absent and Debian's prometheus package could not be installed ({reason})")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (label names of our metrics excluded)."""
    names = {m.group(1) for m in _METRIC.finditer(expr)}
    return {n for n in names if n not in _LABEL_NAMES}


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        rules.extend(group["rules"])
    return rules


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str


def dashboard_queries() -> list[PanelQuery]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                out.append(PanelQuery(path.stem, panel["title"], target["expr"]))
    return out


def concrete(expr: str, model: str) -> str:
    """A dashboard query as Grafana would send it for ``model``, all versions, a 30 s rate window."""
    return expr.replace("$__rate_interval", "30s").replace("$model", model).replace("$version", ".*")


class Prometheus:
    """A Prometheus server on a free port (the caller stops it)."""

    def __init__(self, binary: str, workdir: Path, scrape: dict[str, int]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": service,
                    "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"service": service}}],
                }
                for service, port in scrape.items()
            ],
        }
        cfg = workdir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config))
        self._log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.log_path = workdir / "prometheus.log"

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as r:
            return json.loads(r.read())

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready after {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def names(self) -> set[str]:
        return set(self.get("/api/v1/label/__name__/values")["data"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        self._log.close()


def poll(check: Any, timeout: float, interval: float = 0.5) -> Any:
    """Calls ``check`` until it returns something truthy or ``timeout`` passes; returns the last
    answer either way (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    answer = check()
    while not answer and time.monotonic() < deadline:
        time.sleep(interval)
        answer = check()
    return answer


def running(prom: Prometheus) -> Iterator[Prometheus]:
    try:
        yield prom
    finally:
        prom.stop()
