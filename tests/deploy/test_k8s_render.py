"""Every kustomize overlay renders (kubectl's built-in kustomize) and every rendered object is valid
against the Kubernetes OpenAPI schemas, offline (kubernetes-validate ships them), in strict mode so a
misspelt field fails too. Checked against the oldest Kubernetes these manifests target (1.30: native
preStop sleep, matchLabelKeys) and the newest schema kubernetes-validate has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_testlib import K8S, OVERLAYS, ROOT, SETUP_HINT

OLDEST_SUPPORTED = "1.30.0"


def _kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ModuleNotFoundError:
        pytest.fail(f"kubernetes-validate is not installed (PyPI, in requirements.lock): {SETUP_HINT}")
    return kubernetes_validate


def _versions() -> list[str]:
    try:
        import kubernetes_validate
    except ModuleNotFoundError:
        return [OLDEST_SUPPORTED, "newest"]
    return [OLDEST_SUPPORTED, kubernetes_validate.latest_version() + ".0"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    docs = rendered[overlay]
    assert docs, f"{overlay} rendered nothing"
    keys = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), f"{overlay}: duplicate objects"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "modelserve", f"{overlay}: {keys}"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "modelserve"


@pytest.mark.parametrize("version", _versions())
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_objects_match_the_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, version: str
) -> None:
    kv = _kubernetes_validate()
    failures = []
    for doc in rendered[overlay]:
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kv.validate(doc, version, strict=True)
        except kv.SchemaNotFoundError:
            failures.append(
                f"{what}: no schema for {doc['apiVersion']} {doc['kind']} in Kubernetes {version}"
            )
        except kv.ValidationError as exc:
            path = "/".join(map(str, exc.absolute_path)) or "(top)"
            failures.append(f"{what} at {path}: {exc.message}")
    assert not failures, f"{overlay} against Kubernetes {version}:\n" + "\n".join(failures)


def test_the_validator_catches_a_misspelt_field() -> None:
    kv = _kubernetes_validate()
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"prots": []}}
    with pytest.raises(kv.ValidationError):
        kv.validate(service, OLDEST_SUPPORTED, strict=True)


def _referenced(kustomization: Path) -> set[Path]:
    spec = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
    refs = list(spec.get("resources", []))
    refs += [p["path"] for p in spec.get("patches", []) if "path" in p]
    refs += spec.get("patchesStrategicMerge", [])
    return {(kustomization.parent / r).resolve() for r in refs}


def test_no_orphan_manifests() -> None:
    """Every YAML file under deploy/k8s is a kustomization or is used by one (no dead manifests)."""
    kustomizations = list(K8S.rglob("kustomization.yaml"))
    used = set().union(*(_referenced(k) for k in kustomizations))
    for path in K8S.rglob("*.yaml"):
        if path.name != "kustomization.yaml":
            assert path.resolve() in used, f"{path.relative_to(ROOT)} is referenced by no kustomization"
    for ref in used:
        assert ref.exists(), f"referenced but missing: {ref}"


def test_no_secret_generators_with_values() -> None:
    """Secrets are referenced by name and created out of band; none is generated from the repo."""
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
        assert not spec.get("secretGenerator"), f"{kustomization.relative_to(ROOT)} generates a Secret"
