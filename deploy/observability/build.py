# ruff: noqa: E501  (panel definitions read best one per line)
"""Builds what deploy/observability publishes from one description each:

* ``dashboards/*.json``: the Grafana dashboards (overview, one per service, one per model) from
  DASHBOARDS below;
* ``../k8s/overlays/monitoring/prometheus-rule.yaml``: the PrometheusRule (Prometheus Operator)
  carrying ``rules/modelserve-alerts.yaml`` unchanged.

``python deploy/observability/build.py`` writes them; ``--check`` fails when a written file is
stale (tests/observability runs it). Queries use Grafana's ``$__rate_interval`` and the dashboard
variables ``$model``/``$version``; every series carries a ``service`` label set by the scrape
config (the PodMonitor and prometheus.yml here set it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "rules" / "modelserve-alerts.yaml"
DASHBOARD_DIR = HERE / "dashboards"
PROMETHEUS_RULE = HERE.parent / "k8s" / "overlays" / "monitoring" / "prometheus-rule.yaml"
R = "$__rate_interval"


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: tuple[Panel, ...]
    variables: tuple[tuple[str, str], ...] = field(default=())  # (name, label_values query)


def p(
    title: str, *exprs: tuple[str, str], unit: str = "short", kind: str = "timeseries", desc: str = ""
) -> Panel:
    return Panel(title, exprs, unit, kind, desc)


def p99(metric: str, by: str, selector: str = "") -> str:
    return f"histogram_quantile(0.99, sum by (le{', ' + by if by else ''}) (rate({metric}_bucket{selector}[{R}])))"


def grpc_panels(service: str) -> tuple[Panel, ...]:
    sel = f'{{service="{service}"}}'
    return (
        p(
            "RPCs/s by method and code",
            (
                f"sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{sel}[{R}]))",
                "{{grpc_method}} {{grpc_code}}",
            ),
            unit="reqps",
        ),
        p(
            "RPC p99 latency by method",
            (p99("grpc_server_handling_seconds", "grpc_method", sel), "{{grpc_method}}"),
            unit="s",
        ),
        p("Ready (1 = SERVING)", (f"min by (instance) (modelserve_ready{sel})", "{{instance}}"), kind="stat"),
        p(
            "Readiness transitions (15m)",
            (f"sum by (to) (increase(modelserve_readiness_transitions_total{sel}[15m]))", "{{to}}"),
        ),
    )


def db_panels(service: str) -> tuple[Panel, ...]:
    sel = f'{{service="{service}"}}'
    return (
        p(
            "Database p99 latency",
            (p99("modelserve_db_operation_seconds", "dialect", sel), "{{dialect}}"),
            unit="s",
        ),
        p("Database errors/s", (f"sum by (error) (rate(modelserve_db_errors_total{sel}[{R}]))", "{{error}}")),
        p(
            "PostgreSQL pool use",
            (f"sum(modelserve_db_pool_in_use_connections{sel})", "in use"),
            (f"max(modelserve_db_pool_max_connections{sel})", "max"),
        ),
    )


OVERVIEW = Dashboard(
    "modelserve-overview",
    "modelserve / overview",
    (
        p(
            "RPCs/s by service",
            (f"sum by (service) (rate(grpc_server_handled_total[{R}]))", "{{service}}"),
            unit="reqps",
        ),
        p(
            "REST requests/s by status",
            (f"sum by (code) (rate(modelserve_gateway_requests_total[{R}]))", "{{code}}"),
            unit="reqps",
        ),
        p(
            "REST 5xx ratio",
            (
                f'(sum(rate(modelserve_gateway_requests_total{{code=~"5.."}}[{R}])) or vector(0)) '
                f"/ sum(rate(modelserve_gateway_requests_total[{R}]))",
                "5xx",
            ),
            unit="percentunit",
        ),
        p(
            "REST p99 latency by route",
            (p99("modelserve_gateway_http_request_seconds", "route"), "{{route}}"),
            unit="s",
        ),
        p("Ready by service", ("min by (service) (modelserve_ready)", "{{service}}"), kind="stat"),
        p("Targets up", ("sum by (service) (up)", "{{service}}"), kind="stat"),
        p("Failed models", ("sum(modelserve_model_server_failed_models)", "failed"), kind="stat"),
        p("Executions by state", ("max by (state) (modelserve_orchestrator_executions)", "{{state}}")),
        p(
            "Oldest queued execution",
            ("max(modelserve_orchestrator_oldest_queued_age_seconds)", "age"),
            unit="s",
        ),
        p(
            "Inference requests/s by outcome",
            (f"sum by (outcome) (rate(modelserve_model_server_requests_total[{R}]))", "{{outcome}}"),
            unit="reqps",
        ),
    ),
)

REGISTRY = Dashboard(
    "modelserve-registry",
    "modelserve / registry",
    (
        p(
            "Writes/s by kind",
            (
                f"sum by (kind, change_type) (rate(modelserve_registry_writes_total[{R}]))",
                "{{kind}} {{change_type}}",
            ),
        ),
        p("Watch streams open", ("sum(modelserve_registry_watch_streams)", "streams")),
        p(
            "Watch lag p99 (commit to send)",
            (p99("modelserve_registry_watch_lag_seconds", ""), "p99"),
            unit="s",
        ),
        *grpc_panels("registry"),
        *db_panels("registry"),
    ),
)

ORCHESTRATOR = Dashboard(
    "modelserve-orchestrator",
    "modelserve / orchestrator",
    (
        p("Executions by state", ("max by (state) (modelserve_orchestrator_executions)", "{{state}}")),
        p("Queue depth", ("max(modelserve_orchestrator_queue_depth)", "queued")),
        p(
            "Oldest queued execution",
            ("max(modelserve_orchestrator_oldest_queued_age_seconds)", "age"),
            unit="s",
        ),
        p(
            "Node p99 latency",
            (p99("modelserve_orchestrator_node_seconds", "pipeline, node"), "{{pipeline}}/{{node}}"),
            unit="s",
        ),
        p(
            "Node retries/s",
            (
                f"sum by (pipeline, node) (rate(modelserve_orchestrator_node_retries_total[{R}]))",
                "{{pipeline}}/{{node}}",
            ),
        ),
        p(
            "Webhook attempts/s by outcome",
            (f"sum by (outcome) (rate(modelserve_orchestrator_webhook_attempts_total[{R}]))", "{{outcome}}"),
        ),
        p(
            "Webhook attempt p99 latency",
            (p99("modelserve_orchestrator_webhook_attempt_seconds", ""), "p99"),
            unit="s",
        ),
        p(
            "Webhook backlog",
            ("max(modelserve_orchestrator_webhook_backlog)", "pending"),
            ("max(modelserve_orchestrator_webhook_oldest_due_age_seconds)", "oldest overdue (s)"),
        ),
        *grpc_panels("orchestrator"),
        *db_panels("orchestrator"),
    ),
)

GATEWAY = Dashboard(
    "modelserve-gateway",
    "modelserve / gateway",
    (
        p(
            "Requests/s by route",
            (f"sum by (route) (rate(modelserve_gateway_requests_total[{R}]))", "{{route}}"),
            unit="reqps",
        ),
        p(
            "Requests/s by status",
            (f"sum by (code) (rate(modelserve_gateway_requests_total[{R}]))", "{{code}}"),
            unit="reqps",
        ),
        p(
            "Requests/s by tenant",
            (f"sum by (tenant) (rate(modelserve_gateway_requests_total[{R}]))", "{{tenant}}"),
            unit="reqps",
        ),
        p(
            "p99 latency by route",
            (p99("modelserve_gateway_http_request_seconds", "route"), "{{route}}"),
            unit="s",
        ),
        p(
            "Auth failures/s by reason",
            (f"sum by (reason) (rate(modelserve_gateway_auth_failures_total[{R}]))", "{{reason}}"),
        ),
        p(
            "Rate-limit decisions/s",
            (
                f"sum by (scope, decision) (rate(modelserve_gateway_rate_limit_decisions_total[{R}]))",
                "{{scope}} {{decision}}",
            ),
        ),
        p(
            "Rate-limit store errors/s",
            (f"sum by (mode) (rate(modelserve_gateway_rate_limiter_errors_total[{R}]))", "{{mode}}"),
        ),
        p("Shed requests/s", (f"sum(rate(modelserve_gateway_shed_total[{R}]))", "shed")),
        p("In flight", ("sum by (instance) (modelserve_gateway_in_flight)", "{{instance}}")),
        p(
            "Upstream p99 latency by service",
            (p99("grpc_client_handling_seconds", "grpc_service", '{service="gateway"}'), "{{grpc_service}}"),
            unit="s",
        ),
        p(
            "Upstream calls/s by code",
            (
                f'sum by (grpc_service, grpc_code) (rate(grpc_client_handled_total{{service="gateway"}}[{R}]))',
                "{{grpc_service}} {{grpc_code}}",
            ),
        ),
        *grpc_panels("gateway"),
    ),
)

MODEL_SERVER = Dashboard(
    "modelserve-model-server",
    "modelserve / model server",
    (
        p(
            "Requests/s by outcome",
            (f"sum by (outcome) (rate(modelserve_model_server_requests_total[{R}]))", "{{outcome}}"),
            unit="reqps",
        ),
        p(
            "Queue p99 by model",
            (p99("modelserve_model_server_queue_seconds", "model"), "{{model}}"),
            unit="s",
        ),
        p(
            "Compute p99 by model",
            (p99("modelserve_model_server_compute_seconds", "model"), "{{model}}"),
            unit="s",
        ),
        p("Queue depth by model", ("sum by (model) (modelserve_model_server_queue_depth)", "{{model}}")),
        p(
            "Failed models",
            ("sum by (instance) (modelserve_model_server_failed_models)", "{{instance}}"),
            kind="stat",
        ),
        p("Models ready", ("sum(modelserve_model_server_model_ready)", "ready"), kind="stat"),
        p(
            "Triton calls/s by code",
            (f"sum by (code) (rate(modelserve_model_server_triton_requests_total[{R}]))", "{{code}}"),
        ),
        p("Triton p99 latency", (p99("modelserve_model_server_triton_request_seconds", ""), "p99"), unit="s"),
        p(
            "Triton replicas",
            ("sum(modelserve_model_server_triton_replicas_available)", "available"),
            ("sum(increase(modelserve_model_server_triton_replica_ejections_total[1h]))", "ejections (1h)"),
        ),
        p(
            "Artifact cache events/s",
            (f"sum by (event) (rate(modelserve_model_server_artifact_cache_total[{R}]))", "{{event}}"),
        ),
        p(
            "Prediction log records/s by sink",
            (
                f"sum by (sink, outcome) (rate(modelserve_model_server_prediction_log_sink_records_total[{R}]))",
                "{{sink}} {{outcome}}",
            ),
            desc="Records each prediction-log sink (registry, jsonl, cloudevents) wrote or dropped (queue_full, sink_unavailable).",
        ),
        *grpc_panels("model-server"),
    ),
)

MODEL_SEL = '{model="$model", version=~"$version"}'
MODEL = Dashboard(
    "modelserve-model",
    "modelserve / model",
    (
        p(
            "Requests/s by outcome",
            (
                f"sum by (version, outcome) (rate(modelserve_model_server_requests_total{MODEL_SEL}[{R}]))",
                "v{{version}} {{outcome}}",
            ),
            unit="reqps",
        ),
        p(
            "Queue p99",
            (p99("modelserve_model_server_queue_seconds", "version", MODEL_SEL), "v{{version}}"),
            unit="s",
        ),
        p(
            "Compute p99",
            (p99("modelserve_model_server_compute_seconds", "version", MODEL_SEL), "v{{version}}"),
            unit="s",
        ),
        p(
            "Mean batch size",
            (
                f"sum by (version) (rate(modelserve_model_server_batch_size_sum{MODEL_SEL}[{R}])) "
                f"/ sum by (version) (rate(modelserve_model_server_batch_size_count{MODEL_SEL}[{R}]))",
                "v{{version}}",
            ),
        ),
        p(
            "Queue depth",
            (f"sum by (version) (modelserve_model_server_queue_depth{MODEL_SEL})", "v{{version}}"),
        ),
        p(
            "Ready",
            (f"max by (version) (modelserve_model_server_model_ready{MODEL_SEL})", "v{{version}}"),
            kind="stat",
        ),
        p(
            "Dropped/s by reason",
            (
                f"sum by (version, reason) (rate(modelserve_model_server_dropped_total{MODEL_SEL}[{R}]))",
                "v{{version}} {{reason}}",
            ),
        ),
        p(
            "Feature drift (PSI)",
            (
                f"max by (version, feature) (modelserve_registry_feature_drift_score{MODEL_SEL})",
                "v{{version}} {{feature}}",
            ),
            desc="Population stability index per feature against the version's drift reference; above 0.2 alerts.",
        ),
    ),
    variables=(
        ("model", "label_values(modelserve_model_server_requests_total, model)"),
        ("version", 'label_values(modelserve_model_server_requests_total{model="$model"}, version)'),
    ),
)

DASHBOARDS = {
    "overview": OVERVIEW,
    "registry": REGISTRY,
    "orchestrator": ORCHESTRATOR,
    "gateway": GATEWAY,
    "model-server": MODEL_SERVER,
    "model": MODEL,
}


def _panel_json(i: int, panel: Panel) -> dict[str, object]:
    width = 8 if panel.kind == "stat" else 12
    per_row = 24 // width
    return {
        "id": i + 1,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": width, "x": (i % per_row) * width, "y": (i // 2) * 8},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {},
        "targets": [
            {
                "refId": chr(ord("A") + n),
                "expr": expr,
                "legendFormat": legend,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for n, (expr, legend) in enumerate(panel.exprs)
        ],
    }


def dashboard_json(d: Dashboard) -> dict[str, object]:
    variables: list[dict[str, object]] = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}
    ]
    for name, query in d.variables:
        variables.append(
            {
                "name": name,
                "type": "query",
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "query": {"query": query, "refId": "var"},
                "definition": query,
                "refresh": 2,
                "includeAll": name == "version",
                "allValue": ".*",
            }
        )
    return {
        "uid": d.uid,
        "title": d.title,
        "tags": ["modelserve"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": variables},
        "panels": [_panel_json(i, panel) for i, panel in enumerate(d.panels)],
    }


def prometheus_rule() -> dict[str, object]:
    rules = yaml.safe_load(RULES.read_text())
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "modelserve-alerts", "labels": {"app.kubernetes.io/name": "modelserve-alerts"}},
        "spec": {"groups": rules["groups"]},
    }


def outputs() -> dict[Path, str]:
    out = {
        DASHBOARD_DIR / f"{name}.json": json.dumps(dashboard_json(d), indent=2) + "\n"
        for name, d in DASHBOARDS.items()
    }
    header = "# Generated by deploy/observability/build.py from deploy/observability/rules/modelserve-alerts.yaml.\n"
    out[PROMETHEUS_RULE] = header + yaml.safe_dump(prometheus_rule(), sort_keys=False, width=1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when a generated file is stale")
    args = parser.parse_args()
    stale = []
    for path, text in outputs().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(HERE.parent.parent)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("stale (run python deploy/observability/build.py):", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
