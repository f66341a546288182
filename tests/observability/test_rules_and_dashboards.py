"""Static checks of deploy/observability: promtool validates the alert rules and runs their unit
tests (every alert has one); the generated files (dashboards, PrometheusRule) are fresh; every
alert carries a runbook section; the Kubernetes monitoring overlay scrapes every service the way
its pods declare."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from promlib import OBS, ROOT, RULE_TESTS, RULES, alert_rules, dashboard_queries, metric_names, tool

K8S = ROOT / "deploy" / "k8s"
SERVICES = ("registry", "model-server", "orchestrator", "gateway")


def test_promtool_checks_the_rules() -> None:
    done = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass_and_cover_every_alert() -> None:
    done = subprocess.run(
        [tool("promtool"), "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        cwd=RULE_TESTS.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tested: dict[str, set[str]] = {}
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            tested.setdefault(check["alertname"], set()).add("fires" if check["exp_alerts"] else "quiet")
    for rule in alert_rules():
        assert tested.get(rule["alert"]) == {"fires", "quiet"}, (
            f"{rule['alert']}: needs a firing and a quiet test"
        )


def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests can fail: the same tests against rules whose thresholds were raised tenfold."""
    text = re.sub(r"> (\d+(?:\.\d+)?)\n", lambda m: f"> {float(m.group(1)) * 10 + 1}\n", RULES.read_text())
    (tmp_path / "modelserve-alerts.yaml").write_text(text)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    done = subprocess.run(
        [tool("promtool"), "test", "rules", RULE_TESTS.name], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode != 0 and "FAILED" in done.stdout + done.stderr


def test_every_alert_has_severity_summary_and_a_runbook_section() -> None:
    runbook = (OBS / "RUNBOOK.md").read_text().lower()
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], rule["alert"]
        anchor = rule["alert"].lower()
        assert ann["runbook_url"].endswith(f"RUNBOOK.md#{anchor}"), rule["alert"]
        assert f"## {anchor}" in runbook, f"RUNBOOK.md has no section for {rule['alert']}"


def test_generated_files_are_fresh() -> None:
    done = subprocess.run([sys.executable, str(OBS / "build.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_dashboards_are_grafana_json_with_named_queries() -> None:
    boards = {p.stem: json.loads(p.read_text()) for p in (OBS / "dashboards").glob("*.json")}
    assert {"overview", "registry", "orchestrator", "gateway", "model-server", "model"} <= set(boards)
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)
    for name, board in boards.items():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(set(ids)) == len(ids), name
    for q in dashboard_queries():
        assert metric_names(q.expr), f"{q.dashboard}/{q.panel}: no metric in {q.expr}"


def _render(kubectl: str, path: Path) -> list[dict[str, Any]]:
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_monitoring_overlay_carries_the_rules_and_scrapes_every_service() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found (make setup installs it): the monitoring overlay is not rendered")
    docs = {d["kind"]: d for d in _render(kubectl, K8S / "overlays" / "monitoring")}
    assert docs["PrometheusRule"]["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    monitor = docs["PodMonitor"]["spec"]
    endpoint = monitor["podMetricsEndpoints"][0]
    assert {
        "targetLabel": "service",
        "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
    } in (endpoint["relabelings"])
    selector = monitor["selector"]["matchLabels"]
    deployments = [d for d in _render(kubectl, K8S / "overlays" / "prod") if d["kind"] == "Deployment"]
    seen = set()
    for d in deployments:
        template = d["spec"]["template"]
        labels = template["metadata"]["labels"]
        name = labels.get("app.kubernetes.io/name")
        if name not in SERVICES:
            continue
        seen.add(name)
        assert selector.items() <= labels.items(), f"{name}: the PodMonitor does not select its pods"
        ports = {
            p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])
        }
        assert endpoint["port"] in ports, f"{name}: no container port named {endpoint['port']}"
        ann = template["metadata"].get("annotations", {})
        assert ann.get("prometheus.io/scrape") == "true", name
        assert ann.get("prometheus.io/port") == str(ports[endpoint["port"]]), (
            f"{name}: annotation port differs"
        )
        assert ann.get("prometheus.io/path") == endpoint["path"], name
    assert seen == set(SERVICES)


def test_the_annotation_scrape_config_keeps_annotated_pods_and_sets_the_service_label() -> None:
    """deploy/observability/prometheus.yml (Debian's promtool lacks Kubernetes discovery, so it
    is read here): its rule file exists, it keeps pods annotated for scraping, and labels each
    series with the pod's app.kubernetes.io/name as `service`."""
    config = yaml.safe_load((OBS / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert (OBS / rule_file).is_file(), rule_file
    relabel = config["scrape_configs"][0]["relabel_configs"]
    keep = {
        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
        "action": "keep",
        "regex": "true",
    }
    assert relabel[0] == keep
    assert {
        "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
        "target_label": "service",
    } in relabel
    port = next(r for r in relabel if r.get("target_label") == "__address__")
    assert (
        re.sub(port["regex"], port["replacement"].replace("$", "\\"), "10.0.0.7:50051;9093")
        == "10.0.0.7:9093"
    )
