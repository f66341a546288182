"""Helpers of the deploy tests (imported by conftest.py and the test modules; the folder is put on
sys.path by conftest.py because the suite runs with --import-mode=importlib)."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod", "gpu")

SETUP_HINT = "run `make setup` (or scripts/setup_deploy_tools.sh for the CLI tools only)"


@dataclass(frozen=True)
class Service:
    """One of our four services, as the deploy files name it."""

    package: str  # services/<package>, modelserve_<package>
    name: str  # Kubernetes and Compose name
    prefix: str  # settings env prefix
    grpc_port: int
    metrics_port: int
    other_ports: tuple[int, ...] = ()

    @property
    def module(self) -> str:
        return f"modelserve_{self.package}"


SERVICES = (
    Service("registry", "registry", "REGISTRY_", 50051, 9091),
    Service("model_server", "model-server", "MODEL_SERVER_", 50053, 9093),
    Service("orchestrator", "orchestrator", "ORCHESTRATOR_", 50052, 9092),
    Service("gateway", "gateway", "GATEWAY_", 50050, 9090, (8080,)),
)
BY_NAME = {s.name: s for s in SERVICES}


def find_tool(name: str) -> str | None:
    """The tool from this interpreter's virtualenv first (where the pinned ones live), then PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


class Objects:
    """The rendered objects of one overlay, with the look-ups the policy tests need."""

    def __init__(self, name: str, docs: list[dict[str, Any]]) -> None:
        self.name = name
        self.docs = docs

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert found, f"{self.name}: no {kind} {name}"
        return found[0]

    def has(self, kind: str, name: str) -> bool:
        return any(d["metadata"]["name"] == name for d in self.of_kind(kind))

    def workloads(self) -> list[dict[str, Any]]:
        kinds = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
        return [d for d in self.docs if d["kind"] in kinds]

    def config_of(self, service: Service) -> dict[str, str]:
        """The settings a service's main container gets from its ConfigMap and plain env values."""
        deployment = self.get("Deployment", service.name)
        container = main_container(deployment, service.name)
        values: dict[str, str] = {}
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef")
            if ref:
                values.update(self.get("ConfigMap", ref["name"]).get("data", {}))
        for env in container.get("env", []):
            if "value" in env:
                values[env["name"]] = env["value"]
        return values


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def all_containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def main_container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    containers = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    assert containers, f"{workload['metadata']['name']}: no container named {name}"
    return containers[0]
