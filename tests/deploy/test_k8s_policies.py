"""Policies asserted on the rendered overlays (what a reviewer would check by hand, STYLE.md B8):
probes, drain time, pod hardening, resources, pinned images, Secrets, NetworkPolicies that allow
exactly DESIGN.md's traffic paths, and what each overlay promises (dev, prod, gpu)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from deploy_testlib import SERVICES, Objects, Service, all_containers, main_container, pod_spec

SECRET_LIKE = re.compile(r"(DATABASE_URL|REDIS_URL|API_KEY|JWT_KEY|JWT_SECRET|PASSWORD|TOKEN)$")
DEFAULT_SHUTDOWN_GRACE_S = 10.0


def _seconds(value: Any) -> float:
    return float(value)


# ---- our four services ------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
def test_grpc_probes(overlay: Objects, service: Service) -> None:
    container = main_container(overlay.get("Deployment", service.name), service.name)
    readiness = container["readinessProbe"]["grpc"]
    liveness = container["livenessProbe"]["grpc"]
    startup = container["startupProbe"]["grpc"]
    assert readiness["port"] == liveness["port"] == startup["port"] == service.grpc_port
    assert readiness.get("service", "") == "", "readiness follows the overall status"
    assert liveness.get("service") == "liveness", "liveness must not follow dependencies"
    assert startup.get("service") == "liveness"
    config = overlay.config_of(service)
    assert config[f"{service.prefix}GRPC_PORT"] == str(service.grpc_port)


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
def test_termination_grace_exceeds_the_drain(overlay: Objects, service: Service) -> None:
    deployment = overlay.get("Deployment", service.name)
    container = main_container(deployment, service.name)
    grace = _seconds(
        overlay.config_of(service).get(f"{service.prefix}SHUTDOWN_GRACE_S", DEFAULT_SHUTDOWN_GRACE_S)
    )
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    period = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert period > grace + pre_stop, f"{period}s <= preStop {pre_stop}s + SHUTDOWN_GRACE_S {grace}s"


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
def test_ports_are_named_and_scraped(overlay: Objects, service: Service) -> None:
    deployment = overlay.get("Deployment", service.name)
    container = main_container(deployment, service.name)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == service.grpc_port and ports["metrics"] == service.metrics_port
    svc = overlay.get("Service", service.name)
    service_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert service_ports["grpc"]["port"] == service.grpc_port
    assert service_ports["grpc"]["targetPort"] == "grpc"
    assert svc["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(service.metrics_port)
    assert overlay.config_of(service)[f"{service.prefix}METRICS_PORT"] == str(service.metrics_port)


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
def test_settings_use_the_service_prefix(overlay: Objects, service: Service) -> None:
    container = main_container(overlay.get("Deployment", service.name), service.name)
    names = set(overlay.config_of(service)) | {e["name"] for e in container.get("env", [])}
    strays = {n for n in names if not n.startswith((service.prefix, "MODELSERVE_", "OTEL_"))}
    assert not strays, f"{service.name}: settings the service does not read: {sorted(strays)}"
    assert container["image"].split("/")[-1].startswith(f"{service.name}:") or container["image"].startswith(
        f"modelserve-{service.name}:"
    )


def test_service_accounts_exist_and_mount_no_token(overlay: Objects) -> None:
    for workload in overlay.workloads():
        spec = pod_spec(workload)
        account = spec.get("serviceAccountName")
        assert account and overlay.has("ServiceAccount", account), workload["metadata"]["name"]
        assert spec.get("automountServiceAccountToken") is False, workload["metadata"]["name"]


# ---- every workload ---------------------------------------------------------------------------------


def test_pods_are_hardened(overlay: Objects) -> None:
    for workload in overlay.workloads():
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        for container in all_containers(workload):
            where = f"{overlay.name}: {workload['metadata']['name']}/{container['name']}"
            ctx = container.get("securityContext", {})

            def effective(key: str, ctx: dict[str, Any] = ctx, pod: dict[str, Any] = pod) -> Any:
                return ctx.get(key, pod.get(key))

            assert effective("runAsNonRoot") is True, f"{where}: runAsNonRoot"
            assert effective("runAsUser") not in (None, 0), f"{where}: a non-zero runAsUser"
            assert ctx.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
            assert ctx.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
            assert ctx.get("privileged") in (None, False), f"{where}: privileged"
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: drop ALL capabilities"
            assert not ctx.get("capabilities", {}).get("add"), f"{where}: adds capabilities"
            assert (effective("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{where}: seccomp"
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(flag), f"{workload['metadata']['name']}: {flag}"
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], workload["metadata"]["name"]


def test_requests_and_limits(overlay: Objects) -> None:
    for workload in overlay.workloads():
        for container in all_containers(workload):
            resources = container.get("resources", {})
            where = f"{overlay.name}: {workload['metadata']['name']}/{container['name']}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}: {kind} cpu and memory"


def test_images_are_pinned(overlay: Objects) -> None:
    for workload in overlay.workloads():
        for container in all_containers(workload):
            image = container["image"]
            name = image.split("/")[-1]
            tag = name.partition("@")[0].partition(":")[2]
            assert "@sha256:" in image or (tag and tag != "latest"), f"{overlay.name}: {image} is not pinned"
            assert container.get("imagePullPolicy") != "Always" or "@sha256:" not in image


def test_secrets_are_referenced_never_committed(overlay: Objects) -> None:
    assert not overlay.of_kind("Secret"), f"{overlay.name}: Secret objects are created out of band"
    for config_map in overlay.of_kind("ConfigMap"):
        leaked = {k for k in config_map.get("data", {}) if SECRET_LIKE.search(k)}
        assert not leaked, f"{config_map['metadata']['name']} holds secrets: {leaked}"
    for workload in overlay.workloads():
        for container in all_containers(workload):
            for env in container.get("env", []):
                if SECRET_LIKE.search(env["name"]):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    assert ref and "value" not in env, f"{container['name']}: {env['name']} from a Secret"


def test_namespace_enforces_restricted_pod_security(overlay: Objects) -> None:
    labels = overlay.get("Namespace", "modelserve")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# ---- NetworkPolicies: exactly DESIGN.md's paths -------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    name: str
    namespace: str | None  # None: outside the cluster (an IP address)
    labels: tuple[tuple[str, str], ...]
    ports: tuple[tuple[int, str], ...]  # what it listens on
    ip: str = "10.0.0.10"

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def _external_peers() -> list[Peer]:
    return [
        Peer("postgres", "data", (("app.kubernetes.io/name", "postgresql"),), ((5432, "TCP"),)),
        Peer("redis", "data", (("app.kubernetes.io/name", "redis"),), ((6379, "TCP"),)),
        Peer("prometheus", "monitoring", (("app.kubernetes.io/name", "prometheus"),), ((9090, "TCP"),)),
        Peer("kube-dns", "kube-system", (("k8s-app", "kube-dns"),), ((53, "UDP"), (53, "TCP"))),
        Peer("client-pod", "apps", (("app", "client"),), ((8080, "TCP"),)),
        Peer("internet", None, (), ((443, "TCP"), (80, "TCP")), ip="203.0.113.7"),
        Peer("cloud-metadata", None, (), ((80, "TCP"), (443, "TCP")), ip="169.254.169.254"),
    ]


def _our_peers(objects: Objects) -> list[Peer]:
    peers = []
    for workload in objects.workloads():
        template = workload["spec"]["template"] if workload["kind"] != "CronJob" else None
        assert template is not None
        labels = template["metadata"]["labels"]
        ports = tuple(
            (p["containerPort"], p.get("protocol", "TCP"))
            for c in all_containers(workload)
            for p in c.get("ports", [])
        )
        peers.append(
            Peer(labels["app.kubernetes.io/name"], "modelserve", tuple(sorted(labels.items())), ports)
        )
    return peers


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert not selector.get("matchExpressions"), "extend this evaluator for matchExpressions"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _ip_in(ip: str, block: dict[str, Any]) -> bool:
    import ipaddress

    address = ipaddress.ip_address(ip)
    if address not in ipaddress.ip_network(block["cidr"]):
        return False
    return not any(address in ipaddress.ip_network(e) for e in block.get("except", []))


def _peer_matches(rule_peers: list[dict[str, Any]] | None, peer: Peer, policy_ns: str) -> bool:
    if not rule_peers:
        return True  # no from/to: every source or destination
    for entry in rule_peers:
        if "ipBlock" in entry:
            if peer.namespace is None and _ip_in(peer.ip, entry["ipBlock"]):
                return True
            continue
        if peer.namespace is None:
            continue
        ns_selector = entry.get("namespaceSelector")
        if ns_selector is None:
            ns_ok = peer.namespace == policy_ns
        else:
            ns_ok = _selects(ns_selector, {"kubernetes.io/metadata.name": peer.namespace})
        pod_ok = _selects(entry.get("podSelector", {}), peer.label_map)
        if ns_ok and pod_ok:
            return True
    return False


def _port_matches(rule_ports: list[dict[str, Any]] | None, port: tuple[int, str]) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        assert isinstance(entry.get("port"), int | None), "use port numbers in NetworkPolicies"
        if entry.get("protocol", "TCP") == port[1] and entry.get("port") in (None, port[0]):
            return True
    return False


def _allowed(
    policies: list[dict[str, Any]], direction: str, subject: Peer, other: Peer, port: tuple[int, str]
) -> bool:
    """Whether NetworkPolicies let ``subject`` send (Egress) or receive (Ingress) this traffic."""
    if subject.namespace != "modelserve":
        return True  # not governed by our policies
    relevant = [
        p
        for p in policies
        if direction in p["spec"].get("policyTypes", ["Ingress"])
        and _selects(p["spec"]["podSelector"], subject.label_map)
    ]
    if not relevant:
        return True
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    return any(
        _peer_matches(rule.get(peers_key), other, p["metadata"]["namespace"])
        and _port_matches(rule.get("ports"), port)
        for p in relevant
        for rule in p["spec"].get(key, [])
    )


def allowed_paths(objects: Objects) -> set[tuple[str, str, int]]:
    policies = objects.of_kind("NetworkPolicy")
    peers = _our_peers(objects) + _external_peers()
    paths = set()
    for src in peers:
        for dst in peers:
            if src is dst or (src.namespace != "modelserve" and dst.namespace != "modelserve"):
                continue
            for port in dst.ports:
                if _allowed(policies, "Egress", src, dst, port) and _allowed(
                    policies, "Ingress", dst, src, port
                ):
                    paths.add((src.name, dst.name, port[0]))
    return paths


def expected_paths(objects: Objects) -> set[tuple[str, str, int]]:
    ours = {p.name for p in _our_peers(objects)}
    paths = {(src, "kube-dns", 53) for src in ours}
    for client in _external_peers():  # the front door is open to every client, in or outside the cluster
        paths |= {(client.name, "gateway", 8080), (client.name, "gateway", 50050)}
    paths |= {
        ("gateway", "registry", 50051),
        ("gateway", "orchestrator", 50052),
        ("gateway", "model-server", 50053),
        ("gateway", "redis", 6379),
        ("orchestrator", "registry", 50051),
        ("orchestrator", "model-server", 50053),
        ("orchestrator", "postgres", 5432),
        ("orchestrator", "redis", 6379),
        ("orchestrator", "internet", 443),  # signed webhooks, public addresses only
        ("model-server", "registry", 50051),
        ("registry", "postgres", 5432),
    }
    paths |= {("prometheus", s.name, s.metrics_port) for s in SERVICES}
    if "modelserve-migrate" in ours:
        paths.add(("modelserve-migrate", "postgres", 5432))
    if "triton" in ours:
        paths |= {("model-server", "triton", 8001), ("prometheus", "triton", 8002)}
    return paths


def test_default_deny(overlay: Objects) -> None:
    deny = [
        p
        for p in overlay.of_kind("NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, f"{overlay.name}: a default-deny NetworkPolicy for every pod, both directions"


def test_network_policies_allow_exactly_the_designed_paths(overlay: Objects) -> None:
    allowed, expected = allowed_paths(overlay), expected_paths(overlay)
    assert not expected - allowed, f"{overlay.name}: blocked paths: {sorted(expected - allowed)}"
    assert not allowed - expected, f"{overlay.name}: paths beyond the design: {sorted(allowed - expected)}"


# ---- per overlay ------------------------------------------------------------------------------------


@pytest.fixture
def dev(rendered: dict[str, list[dict[str, Any]]]) -> Objects:
    return Objects("dev", rendered["dev"])


@pytest.fixture
def prod(rendered: dict[str, list[dict[str, Any]]]) -> Objects:
    return Objects("prod", rendered["prod"])


@pytest.fixture
def gpu(rendered: dict[str, list[dict[str, Any]]]) -> Objects:
    return Objects("gpu", rendered["gpu"])


def test_dev_runs_one_replica_each_on_embedded_defaults(dev: Objects) -> None:
    for service in SERVICES:
        deployment = dev.get("Deployment", service.name)
        assert deployment["spec"]["replicas"] == 1
        container = main_container(deployment, service.name)
        settings = set(dev.config_of(service)) | {e["name"] for e in container.get("env", [])}
        assert not {s for s in settings if s.endswith(("DATABASE_URL", "REDIS_URL"))}, service.name
    assert not dev.of_kind("HorizontalPodAutoscaler")


@pytest.mark.parametrize("name", ["prod", "gpu"])
def test_prod_takes_datastores_from_secrets(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    objects = Objects(name, rendered[name])
    wanted = {
        "registry": {"REGISTRY_DATABASE_URL"},
        "orchestrator": {"ORCHESTRATOR_DATABASE_URL", "ORCHESTRATOR_REDIS_URL"},
        "gateway": {"GATEWAY_REDIS_URL"},
    }
    for service_name, env_names in wanted.items():
        container = main_container(objects.get("Deployment", service_name), service_name)
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env", []) if "valueFrom" in e
        }
        for env in env_names:
            assert refs[env]["name"] == "modelserve-datastores", f"{service_name}: {env}"
            assert not refs[env].get("optional"), f"{service_name}: {env} is required in prod"


def test_prod_autoscales_model_server_and_gateway(prod: Objects) -> None:
    targets = {}
    for hpa in prod.of_kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and prod.has("Deployment", ref["name"])
        targets[ref["name"]] = hpa
    assert set(targets) == {"model-server", "gateway"}
    for name, hpa in targets.items():
        spec = hpa["spec"]
        assert 2 <= spec["minReplicas"] < spec["maxReplicas"]
        kinds = {m["type"]: m for m in spec["metrics"]}
        assert kinds["Resource"]["resource"]["name"] == "cpu"
        assert kinds["Pods"]["pods"]["metric"]["name"] == "grpc_server_in_flight", "in-flight RPCs per pod"
        assert "replicas" not in prod.get("Deployment", name)["spec"], f"{name}: the HPA owns replicas"


def test_prod_replicas_pdbs_and_spread(prod: Objects) -> None:
    budgets = {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]: p
        for p in prod.of_kind("PodDisruptionBudget")
    }
    for service in SERVICES:
        deployment = prod.get("Deployment", service.name)
        assert deployment["spec"].get("replicas", 2) >= 2, f"{service.name}: more than one replica"
        assert service.name in budgets, f"{service.name}: no PodDisruptionBudget"
        assert budgets[service.name]["spec"].get("maxUnavailable") == 1
        spread = pod_spec(deployment).get("topologySpreadConstraints", [])
        keys = {c["topologyKey"] for c in spread}
        assert {"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys, service.name
        for constraint in spread:
            assert "app.kubernetes.io/name" in constraint.get("matchLabelKeys", []), "spread per service"
        strategy = deployment["spec"]["strategy"]["rollingUpdate"]
        assert strategy["maxUnavailable"] == 0, f"{service.name}: rolls without losing capacity"


def test_prod_migration_job_precedes_the_roll(prod: Objects) -> None:
    job = prod.get("Job", "modelserve-migrate")
    spec = pod_spec(job)
    steps = spec.get("initContainers", []) + spec["containers"]
    images = [c["image"] for c in steps]
    assert [i.split("/")[-1].split(":")[0] for i in images] == ["registry", "orchestrator"], images
    for step in steps:
        assert step["args"] == ["migrate"], step["name"]
    assert spec["restartPolicy"] == "Never"
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    # `kubectl apply -l app.kubernetes.io/component=migration` must bring everything the Job needs.
    selected = {
        (d["kind"], d["metadata"]["name"])
        for d in prod.docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "migration"
    }
    assert ("ServiceAccount", spec["serviceAccountName"]) in selected
    assert ("Job", "modelserve-migrate") in selected
    assert any(kind == "NetworkPolicy" for kind, _ in selected)
    for step in steps:
        assert not step.get("envFrom"), "ConfigMaps may not exist yet when the Job runs first"


def test_prod_shares_the_model_repository(prod: Objects) -> None:
    claim = prod.get("PersistentVolumeClaim", "model-repository")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    volumes = {v["name"]: v for v in pod_spec(prod.get("Deployment", "model-server"))["volumes"]}
    assert volumes["model-repository"] == {
        "name": "model-repository",
        "persistentVolumeClaim": {"claimName": "model-repository"},
    }


def test_gpu_runs_triton_on_gpu_nodes(gpu: Objects) -> None:
    deployment = gpu.get("Deployment", "triton")
    spec = pod_spec(deployment)
    container = main_container(deployment, "triton")
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d{2}\.\d{2}-py3", container["image"])
    args = container["command"] + container["args"]
    assert "--model-control-mode=explicit" in args
    assert "--model-repository=/models" in args
    for kind in ("requests", "limits"):
        assert int(container["resources"][kind]["nvidia.com/gpu"]) >= 1
    assert spec["nodeSelector"], "pinned to GPU nodes"
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in spec["tolerations"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/models"]]["persistentVolumeClaim"]["claimName"] == "model-repository"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8001, "http": 8000, "metrics": 8002}
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    service = gpu.get("Service", "triton")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"] == 8001
    model_server = BY_NAME_MODEL_SERVER
    assert gpu.config_of(model_server)["MODEL_SERVER_TRITON_URL"] == "triton:8001"
    assert gpu.has("PodDisruptionBudget", "triton")


def test_only_gpu_has_triton(dev: Objects, prod: Objects) -> None:
    for objects in (dev, prod):
        assert not objects.has("Deployment", "triton")
        assert "MODEL_SERVER_TRITON_URL" not in objects.config_of(BY_NAME_MODEL_SERVER)


BY_NAME_MODEL_SERVER = next(s for s in SERVICES if s.name == "model-server")
