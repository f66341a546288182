"""compose.yaml: valid against the Compose Specification's JSON schema (offline: the schema file
that PyPI check-jsonschema vendors), and health-gated, pinned and secret-free."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml
from deploy_testlib import ROOT, SERVICES, SETUP_HINT

SHUTDOWN_GRACE_S = 10


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    try:
        from importlib.resources import files

        text = (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text("utf-8")
    except ModuleNotFoundError:
        pytest.fail(
            "check-jsonschema is not installed: it ships the Compose Specification schema these tests "
            f"validate against (PyPI check-jsonschema, in requirements.lock): {SETUP_HINT}"
        )
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _errors(validator: jsonschema.protocols.Validator, document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_compose_file_matches_the_compose_schema(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    errors = _errors(validator, compose)
    assert not errors, "compose.yaml does not match the Compose schema:\n" + "\n".join(errors)


def test_the_schema_rejects_a_broken_file(validator: jsonschema.protocols.Validator) -> None:
    broken = {"services": {"x": {"image": "busybox:1.36.1", "depends_on": {"y": {"condition": "up"}}}}}
    assert _errors(validator, broken), "a schema that accepts anything proves nothing"
    assert _errors(validator, {"services": {"x": {"imagee": "busybox:1.36.1"}}})


def test_start_order_is_health_gated(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on in the long form, with conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            assert spec.get("condition") == "service_healthy", f"{name} -> {target} waits for healthy"
            check = services[target].get("healthcheck")
            assert check and not check.get("disable") and check.get("test"), f"{target} needs a healthcheck"
    expected = {
        "registry": {"postgres"},
        "model-server": {"registry", "triton"},
        "orchestrator": {"postgres", "redis", "registry", "model-server"},
        "gateway": {"redis", "registry", "model-server", "orchestrator"},
    }
    for name, targets in expected.items():
        assert set(services[name]["depends_on"]) == targets, name
    # Triton exists only under the gpu profile, so the model server must not require it.
    assert services["model-server"]["depends_on"]["triton"].get("required") is False


def test_our_services_are_built_from_their_dockerfiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for s in SERVICES:
        service = services[s.name]
        assert service["build"] == {
            "context": ".",
            "dockerfile": "deploy/docker/Dockerfile",
            "target": s.package,
            "args": {"SERVICE": s.package},
        }, f"{s.name}: the one Dockerfile, its own final stage and code"
        environment = service["environment"]
        assert environment[f"{s.prefix}GRPC_PORT"] == str(s.grpc_port)
        assert service["healthcheck"]["test"][-1] == s.prefix
        assert service.get("read_only") is True and service.get("cap_drop") == ["ALL"]
        grace = service["stop_grace_period"]
        assert re.fullmatch(r"\d+s", grace) and int(grace[:-1]) > SHUTDOWN_GRACE_S, (
            f"{s.name}: stop_grace_period {grace} must exceed SHUTDOWN_GRACE_S"
        )
        assert not service.get("profiles"), f"{s.name} runs in every profile"


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        tag = image.split("/")[-1].partition(":")[2]
        assert tag and tag != "latest" and re.match(r"^(\$\{[A-Z_]+:-)?\d", tag), f"{name}: {image}"


def test_triton_runs_on_the_gpu_profile(compose: dict[str, Any]) -> None:
    triton = compose["services"]["triton"]
    assert triton["profiles"] == ["gpu"]
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d{2}\.\d{2}-py3", triton["image"])
    assert "--model-control-mode=explicit" in triton["command"]
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    model_repo = {v.split(":")[0] for v in triton["volumes"]}
    assert model_repo & {v.split(":")[0] for v in compose["services"]["model-server"]["volumes"]}


def test_no_secret_values_are_committed(compose: dict[str, Any]) -> None:
    secret_like = re.compile(r"(API_KEY|JWT_KEY|JWT_SECRET|PASSWORD|TOKEN)$")
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secret_like.search(key):
                assert value is None or str(value).startswith("${"), (
                    f"{name}: {key} must come from the caller's environment, not compose.yaml"
                )


def test_only_the_gateway_is_published_on_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        ports = service.get("ports", [])
        if name != "gateway":
            assert not ports, f"{name} is internal"
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is published beyond loopback"
