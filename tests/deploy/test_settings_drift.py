"""Every environment variable the deploy files give a service is one its settings class reads, so a
renamed or misspelt setting fails here instead of being silently ignored in a cluster."""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest
import yaml
from deploy_testlib import ROOT, SERVICES, Objects, Service, main_container
from dockerfile_lib import stages_of

# Settings named in the suite's deployment contract that a service's settings class does not define
# yet (its issue is in progress). Remove a name once the service reads it; the test then guards it.
PENDING: dict[str, set[str]] = {}


def accepted_env(service: Service) -> set[str]:
    """The variables the service's settings class reads (its prefixed fields and their aliases)."""
    try:
        module = importlib.import_module(f"{service.module}.settings")
        from modelserve_common.config import BaseServiceSettings
    except ImportError as exc:
        pytest.fail(f"cannot import {service.module}.settings to check the deploy files against it: {exc}")
    classes = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, BaseServiceSettings) and v is not BaseServiceSettings
    ]
    assert len(classes) == 1, f"{service.module}.settings: expected one settings class, found {classes}"
    cls = classes[0]
    prefix = str(cls.model_config.get("env_prefix", ""))
    assert prefix == service.prefix, f"{cls.__name__} reads {prefix}*, the deploy files use {service.prefix}*"
    names = set()
    for field, info in cls.model_fields.items():
        choices = getattr(info.validation_alias, "choices", None)
        if choices:
            names |= {c for c in choices if isinstance(c, str) and c != field}
        else:
            names.add(f"{prefix}{field}".upper())
            names |= _nested(f"{prefix}{field}__", info.annotation)
    return names | PENDING.get(service.package, set())


def _nested(prefix: str, annotation: Any) -> set[str]:
    """The ``__``-delimited variables of a nested settings model (REGISTRY_ARTIFACTS__S3__BUCKET)."""
    from pydantic import BaseModel

    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return set()
    names: set[str] = set()
    for field, info in annotation.model_fields.items():
        names.add(f"{prefix}{field}".upper())
        names |= _nested(f"{prefix}{field}__", info.annotation)
    return names


def _check(service: Service, given: set[str], where: str) -> None:
    ours = {n for n in given if not n.startswith("OTEL_")}
    unknown = ours - accepted_env(service)
    assert not unknown, f"{where}: {service.name} does not read {sorted(unknown)}"


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
def test_kubernetes_settings_exist(overlay: Objects, service: Service) -> None:
    container = main_container(overlay.get("Deployment", service.name), service.name)
    given = set(overlay.config_of(service)) | {e["name"] for e in container.get("env", [])}
    _check(service, given, f"deploy/k8s ({overlay.name})")


def test_migration_job_settings_exist(rendered: dict[str, list[dict[str, Any]]]) -> None:
    job = Objects("prod", rendered["prod"]).get("Job", "modelserve-migrate")
    spec = job["spec"]["template"]["spec"]
    by_name = {s.name: s for s in SERVICES}
    for step in spec.get("initContainers", []) + spec["containers"]:
        _check(by_name[step["name"]], {e["name"] for e in step.get("env", [])}, "migration Job")


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
def test_compose_settings_exist(service: Service) -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    _check(service, set(compose["services"][service.name].get("environment") or {}), "compose.yaml")


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
def test_dockerfile_settings_exist(service: Service) -> None:
    final = {s.name: s for s in stages_of(service)}[service.package]
    text = "\n".join(i.args for i in final.instructions)
    given = set(re.findall(rf"\b({re.escape(service.prefix)}[A-Z_]+)=", text))
    assert given, "the image sets at least its port and data directory"
    _check(service, given, f"deploy/docker/Dockerfile (target {service.package})")
