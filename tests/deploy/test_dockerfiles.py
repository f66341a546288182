"""The service images: hadolint on the one Dockerfile (deploy/docker/Dockerfile, a shared build
stage and runtime base, one final stage per service), then the rules of the project's images
(STYLE.md B8, issue 9) read from that Dockerfile as each service's image sees it, the .dockerignore
that keeps the build context small, and the two helper scripts the images run."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from concurrent import futures
from pathlib import Path
from types import ModuleType

import pytest
from deploy_testlib import ROOT, SERVICES, Service
from dockerfile_lib import (
    DOCKERFILE,
    build_chain,
    build_stage,
    copy_sources,
    dependencies,
    image_of,
    parse_dockerfile,
    stages_of,
)

DOCKER_HELPERS = ROOT / "deploy" / "docker"
PINNED_IMAGE = re.compile(
    r"^(?P<repo>[\w./:-]+?)"  # registry/repository
    r"(?::(?P<tag>[\w.-]+))?"  # tag
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
EXACT_TAG = re.compile(r"^v?\d+\.\d+\.\d+")  # a full version, not a moving "3.11" or "slim"


@pytest.fixture(params=SERVICES, ids=[s.package for s in SERVICES])
def service(request: pytest.FixtureRequest) -> Service:
    return request.param


def test_one_dockerfile_with_a_final_stage_per_service() -> None:
    on_disk = {p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml")}
    assert on_disk == {s.package for s in SERVICES}
    copies = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("services/*/Dockerfile"))
    assert not copies, f"the images come from deploy/docker/Dockerfile, not per-service copies: {copies}"
    stages = parse_dockerfile(DOCKERFILE)
    names = [s.name for s in stages]
    for s in SERVICES:
        assert s.package in names, f"no final stage {s.package!r} (docker build --target {s.package})"
    assert names.count("build") == 1 and names.count("runtime") == 1
    build = {s.name: s for s in stages}["build"]
    assert [i.args for i in build.find("ARG")] == ["SERVICE"], "the build stage takes ARG SERVICE, no default"


def test_a_final_stage_refuses_another_services_code(service: Service) -> None:
    """--build-arg SERVICE=gateway --target registry must fail the build, not ship the gateway's
    code under the registry's entrypoint: each final stage imports its own package first."""
    final = {s.name: s for s in stages_of(service)}[service.package]
    checks = [i.exec_form() for i in final.find("RUN")]
    assert ["python", "-c", f"import {service.module}"] in checks


def test_hadolint(hadolint: str) -> None:
    path = DOCKERFILE
    out = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, f"hadolint {path.relative_to(ROOT)}:\n{out.stdout}{out.stderr}"


def test_multi_stage_with_pinned_bases(service: Service) -> None:
    stages = stages_of(service)
    assert len(stages) >= 2, "multi-stage: a build stage and a runtime stage"
    names = [s.name for s in stages]
    for stage in stages:
        if stage.image in names:  # FROM an earlier stage
            continue
        match = PINNED_IMAGE.match(stage.image)
        assert match, f"unreadable base image {stage.image!r}"
        tag, digest = match.group("tag"), match.group("digest")
        assert digest or (tag and EXACT_TAG.match(tag)), (
            f"base image {stage.image} must be pinned by digest or an exact version tag"
        )
        assert tag != "latest", f"base image {stage.image} uses latest"


def test_runtime_stage_runs_non_root_without_a_shell(service: Service) -> None:
    final = image_of(service)
    users = final.find("USER")
    assert users, "the runtime stage sets USER"
    user = users[-1].args.split(":")[0]
    assert user.isdigit() and int(user) >= 1000, (
        f"USER {users[-1].args}: a numeric non-root uid, so Kubernetes can verify runAsNonRoot"
    )
    entrypoint = final.find("ENTRYPOINT")
    assert entrypoint and entrypoint[-1].exec_form() == ["python", "-m", service.module]
    for keyword in ("CMD", "ENTRYPOINT"):
        for instruction in final.find(keyword):
            assert instruction.exec_form() is not None, f"line {instruction.line}: {keyword} in exec form"
    healthchecks = final.find("HEALTHCHECK")
    assert healthchecks, "a HEALTHCHECK for Docker and Compose (Kubernetes uses native gRPC probes)"
    command = healthchecks[-1].args.split(" CMD ", 1)
    assert len(command) == 2, f"line {healthchecks[-1].line}: HEALTHCHECK ... CMD [...]"
    probe = json.loads(command[1])
    assert probe[:2] == ["python", "/opt/modelserve/grpc_health_probe.py"], probe
    assert probe[probe.index("--env-prefix") + 1] == service.prefix


def test_runtime_stage_carries_only_the_virtualenv_and_the_probe(service: Service) -> None:
    final = image_of(service)
    for instruction in final.find("COPY") + final.find("ADD"):
        flags, sources, _ = copy_sources(instruction)
        from_stage = flags.get("from")
        if from_stage is not None:
            assert from_stage == "build", f"line {instruction.line}"
            assert sources == ["/opt/venv"], f"line {instruction.line}: only the virtualenv from the build"
        else:
            assert sources == ["deploy/docker/grpc_health_probe.py"], f"line {instruction.line}"
    exposed = {int(p.split("/")[0]) for i in final.find("EXPOSE") for p in i.args.split()}
    assert exposed == {service.grpc_port, service.metrics_port, *service.other_ports}
    env = " ".join(i.args for i in final.find("ENV"))
    assert f"{service.prefix}GRPC_PORT={service.grpc_port}" in env
    assert f"{service.prefix}DATA_DIR=" in env, "DATA_DIR points at a writable folder"


def test_dependencies_are_installed_before_the_code(service: Service) -> None:
    build = build_stage(service)
    allowed_early = {
        "requirements.lock",
        "libs/contracts/pyproject.toml",
        "libs/common/pyproject.toml",
        f"services/{service.package}/pyproject.toml",
        "deploy/docker/runtime_requirements.py",
    }
    code = {"libs/contracts", "libs/common", f"services/{service.package}"}
    seen_deps_install = False
    copied_code: set[str] = set()
    for instruction in build.instructions:
        if instruction.keyword == "RUN" and "pip install" in instruction.args:
            if "--no-deps" in instruction.args:
                assert copied_code == code, f"line {instruction.line}: our packages installed after the code"
            else:
                assert not copied_code, f"line {instruction.line}: dependencies installed after code"
                assert "-r " in instruction.args
                seen_deps_install = True
        if instruction.keyword in {"COPY", "ADD"}:
            assert instruction.keyword == "COPY", f"line {instruction.line}: COPY, not ADD"
            _, sources, _ = copy_sources(instruction)
            for source in sources:
                source = source.rstrip("/")
                if source in code:
                    assert seen_deps_install, f"line {instruction.line}: {source} copied before deps"
                    copied_code.add(source)
                else:
                    assert source in allowed_early, (
                        f"line {instruction.line}: {source} is not something this service needs"
                    )
    assert seen_deps_install and copied_code == code
    env = " ".join(i.args for i in build.find("ENV"))
    assert "PIP_CONSTRAINT=/src/requirements.lock" in env, "dependency versions come from the lock"
    workdir = build.find("WORKDIR")
    assert workdir and workdir[0].args == "/src"


# ---- .dockerignore ------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore matching (Go filepath.Match plus ``**``), anchored at the context root."""
    pattern = pattern.strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "(?:/.*)?$")  # a folder's pattern covers what is inside it


def load_dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern_regex(line.lstrip("!"))))
    return rules


def in_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether a file reaches the build context: the last matching rule decides."""
    included = True
    for negate, regex in rules:
        if regex.match(path):
            included = negate
    return included


def test_dockerignore_sends_only_what_the_images_copy() -> None:
    rules = load_dockerignore()
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        "node_modules/x/index.js",
        "tests/e2e/test_suite_starts.py",
        "services/registry/tests/unit/test_x.py",
        "libs/common/tests/test_config.py",
        "services/registry/src/modelserve_registry/__pycache__/x.cpython-311.pyc",
        "services/registry/src/modelserve_registry.egg-info/PKG-INFO",
        "data/registry.sqlite3",
        "deploy/k8s/base/registry.yaml",
        "protos/modelserve/registry/v1/registry_service.proto",
        "compose.yaml",
    ):
        assert not in_context(path, rules), f"{path} should stay out of the build context"
    for path in (
        "requirements.lock",
        "libs/contracts/pyproject.toml",
        "libs/contracts/src/modelserve/__init__.py",
        "libs/common/src/modelserve_common/config.py",
        "services/gateway/pyproject.toml",
        "services/gateway/src/modelserve_gateway/__main__.py",
        "deploy/docker/runtime_requirements.py",
        "deploy/docker/grpc_health_probe.py",
    ):
        assert in_context(path, rules), f"{path} is needed by the images"


def test_dockerignore_sends_the_console_sources_only() -> None:
    rules = load_dockerignore()
    for path in (
        "console/package.json",
        "console/package-lock.json",
        "console/index.html",
        "console/vite.config.ts",
        "console/tsconfig.json",
        "console/src/main.tsx",
        "console/src/components/TryIt.tsx",
        "console/docs/init.js",
        "console/scripts/copy-docs.mjs",
    ):
        assert in_context(path, rules), f"{path} is needed to build the console"
    for path in (
        "console/node_modules/vite/package.json",
        "console/node_modules/.modelserve-setup",
        "console/e2e/screenshots/02-overview.png",
        "console/tests/weights.test.ts",
        # a local build: the image makes its own, so a stale one never ships
        "services/gateway/src/modelserve_gateway/assets/console/index.html",
        "services/gateway/src/modelserve_gateway/assets/console/assets/index-abc123.js",
    ):
        assert not in_context(path, rules), f"{path} should stay out of the build context"


def test_every_copied_path_reaches_the_context(service: Service) -> None:
    rules = load_dockerignore()
    for stage in stages_of(service):
        for instruction in stage.find("COPY"):
            flags, sources, _ = copy_sources(instruction)
            if "from" in flags:
                continue
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"line {instruction.line}: {source} does not exist"
                files = [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file())
                sent = any(in_context(str(f.relative_to(ROOT)), rules) for f in files)
                assert sent, f"line {instruction.line}: .dockerignore leaves out all of {source}"


# ---- the web console (gateway image only) ---------------------------------------------------------

CONSOLE_BUILD = "services/gateway/src/modelserve_gateway/assets/console"


def _vite_out_dir() -> str:
    """Where ``npm run build`` writes, relative to the repository root (vite.config.ts OUT_DIR)."""
    config = (ROOT / "console" / "vite.config.ts").read_text(encoding="utf-8")
    match = re.search(r'OUT_DIR\s*=\s*"([^"]+)"', config)
    assert match, 'console/vite.config.ts: export const OUT_DIR = "..."'
    return os.path.normpath(f"console/{match.group(1)}")


def _console_stage() -> tuple[str, list[str]]:
    """(name, RUN commands) of the stage that runs ``npm run build`` in console/."""
    stages = parse_dockerfile(DOCKERFILE, {"SERVICE": "gateway"})
    found = [s for s in stages if any("npm run build" in i.args for i in s.find("RUN"))]
    assert len(found) == 1, "one stage builds the console (npm ci, npm run build)"
    stage = found[0]
    assert stage.name, "the console stage is named, so the gateway can COPY --from it"
    assert stage.image.startswith("node:20."), f"Node 20 builds the console, not {stage.image}"
    assert [i.args for i in stage.find("WORKDIR")] == ["/src/console"]
    runs = [i.args for i in stage.find("RUN")]
    copies = [copy_sources(i)[1] for i in stage.find("COPY")]
    assert copies[0] == ["console/package.json", "console/package-lock.json"], (
        "package.json and the lock first, so npm ci is cached until the lock changes"
    )
    assert runs[0].startswith("npm ci") and runs[-1].startswith("npm run build"), runs
    return stage.name, runs


def test_gateway_build_has_the_console_before_its_install() -> None:
    assert _vite_out_dir() == CONSOLE_BUILD
    console, _ = _console_stage()
    gateway = next(s for s in SERVICES if s.package == "gateway")
    copied_before_install = False
    for instruction in build_chain(gateway):
        if instruction.keyword == "COPY":
            flags, sources, dest = copy_sources(instruction)
            if flags.get("from") == console:
                assert sources == [f"/src/{CONSOLE_BUILD}"], f"line {instruction.line}: the Vite build"
                assert dest.rstrip("/") in {CONSOLE_BUILD, f"/src/{CONSOLE_BUILD}"}, (
                    f"line {instruction.line}"
                )
                copied_before_install = True
        if instruction.keyword == "RUN" and "--no-deps" in instruction.args:
            assert copied_before_install, f"line {instruction.line}: the gateway installed before the console"
            assert "./services/gateway" in instruction.args
            break
    else:
        pytest.fail("no pip install of the gateway in its build")
    pyproject = (ROOT / "services/gateway/pyproject.toml").read_text(encoding="utf-8")
    assert '"assets/console/**/*"' in pyproject, "the gateway package ships the console as package data"


def test_only_the_gateway_image_depends_on_the_console_stage(service: Service) -> None:
    console, _ = _console_stage()
    needed = dependencies(stages_of(service), service.package)
    assert "build" in needed and "runtime" in needed, needed
    if service.package == "gateway":
        assert console in needed, "--target gateway builds the console"
    else:
        assert console not in needed, f"--target {service.package} must not need Node or console/"


# ---- helper scripts run inside the images ----------------------------------------------------------


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"deploy_docker_{name}", DOCKER_HELPERS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _locked_names() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if match:
            names.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return names


def test_runtime_requirements_are_third_party_and_locked(service: Service, tmp_path: Path) -> None:
    runtime_requirements = _load("runtime_requirements")
    folders = [ROOT / "libs/contracts", ROOT / "libs/common", ROOT / "services" / service.package]
    out = tmp_path / "requirements.txt"
    assert runtime_requirements.main(["-o", str(out), *map(str, folders)]) == 0
    requirements = out.read_text().splitlines()
    names = {
        runtime_requirements.canonical(re.split(r"[\[<>=!~;\s]", r, maxsplit=1)[0]) for r in requirements
    }
    assert "grpcio" in names and "grpcio-health-checking" in names, "the health probe needs these"
    assert not {n for n in names if n.startswith("modelserve-")}, "our own packages come from source"
    unlocked = names - _locked_names()
    assert not unlocked, f"runtime dependencies missing from requirements.lock: {sorted(unlocked)}"


@pytest.fixture
def health_server() -> tuple[int, object]:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    servicer.set("liveness", health_pb2.HealthCheckResponse.SERVING)
    try:
        yield port, servicer
    finally:
        server.stop(None)


def test_health_probe_reports_grpc_health(
    health_server: tuple[int, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    from grpc_health.v1 import health_pb2

    port, servicer = health_server
    probe = _load("grpc_health_probe")
    monkeypatch.setenv("REGISTRY_GRPC_PORT", str(port))
    assert probe.main(["--env-prefix", "REGISTRY_"]) == 1, "overall NOT_SERVING"
    assert probe.main(["--env-prefix", "REGISTRY_", "--service", "liveness"]) == 0
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)  # type: ignore[attr-defined]
    assert probe.main(["--env-prefix", "REGISTRY_"]) == 0
    assert probe.main(["--port", str(port), "--service", "no.such.Service"]) == 1, "NOT_FOUND"
    with pytest.raises(SystemExit):
        probe.main(["--env-prefix", "NOT_SET_"])  # no port: a usage error, not a silent pass


def test_health_probe_exit_status_as_docker_sees_it(health_server: tuple[int, object]) -> None:
    port, _ = health_server
    script = str(DOCKER_HELPERS / "grpc_health_probe.py")
    ok = subprocess.run([sys.executable, script, "--port", str(port), "--service", "liveness"], timeout=30)
    assert ok.returncode == 0
    with socket_closed_port() as closed:
        down = subprocess.run(
            [sys.executable, script, "--port", str(closed), "--timeout", "1"], capture_output=True, timeout=30
        )
    assert down.returncode == 1 and b"UNAVAILABLE" in down.stderr


class socket_closed_port:
    """A loopback port with nothing listening on it (bound, then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None
