# ruff: noqa: E501  (test series are long strings)
"""Writes rules/modelserve-alerts.test.yaml (promtool unit tests: each alert fires on a breaking
input after its `for`, not before, and stays quiet on a healthy input). Run it after changing an
alert, then `promtool test rules rules/modelserve-alerts.test.yaml`."""

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
rules = yaml.safe_load((HERE / "rules" / "modelserve-alerts.yaml").open())
static = {}
for g in rules["groups"]:
    for r in g["rules"]:
        static[r["alert"]] = r


def ann(alert, summary, description=None):
    r = static[alert]
    return {
        "summary": summary,
        "description": description or r["annotations"]["description"],
        "runbook_url": r["annotations"]["runbook_url"],
    }


def case(alert, series, quiet_at, fire_at, labels, summary, description=None, healthy=None):
    sev = static[alert]["labels"]["severity"]
    t = {
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series],
        "alert_rule_test": [
            {"eval_time": quiet_at, "alertname": alert, "exp_alerts": []},
            {
                "eval_time": fire_at,
                "alertname": alert,
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": sev, **labels},
                        "exp_annotations": ann(alert, summary, description),
                    }
                ],
            },
        ],
    }
    out = [t]
    if healthy:
        out.append(
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in healthy[0]],
                "alert_rule_test": [{"eval_time": healthy[1], "alertname": alert, "exp_alerts": []}],
            }
        )
    return out


R = 'service="registry",instance="registry:9091"'
ORC = 'service="orchestrator",instance="orchestrator:9092"'
G = 'service="gateway",instance="gateway:9090"'
M = 'service="model-server",instance="model-server:9093"'
tests = []
tests += case(
    "ModelServeTargetDown",
    [(f"up{{{R}}}", "0x10")],
    "4m",
    "6m",
    {"service": "registry", "instance": "registry:9091"},
    "registry target registry:9091 is not answering scrapes",
    "Prometheus could not scrape registry:9091 for 5 minutes: the process is down, restarting or unreachable.",
    healthy=([(f"up{{{R}}}", "1x10")], "10m"),
)
tests += case(
    "ModelServeReadinessFlapping",
    [(f'modelserve_readiness_transitions_total{{{ORC},to="not_serving"}}', "0 0 0 0 0 0 0 0 0 0 0+1x10")],
    "12m",
    "20m",
    {"service": "orchestrator", "instance": "orchestrator:9092"},
    "orchestrator orchestrator:9092 went NOT_SERVING 10 times in 15 minutes",
    healthy=([(f'modelserve_readiness_transitions_total{{{ORC},to="not_serving"}}', "1x30")], "30m"),
)
tests += case(
    "ModelServeNotReady",
    [(f"modelserve_ready{{{ORC}}}", "0x15"), (f"up{{{ORC}}}", "1x15")],
    "9m",
    "11m",
    {"service": "orchestrator", "instance": "orchestrator:9092"},
    "orchestrator orchestrator:9092 has been NOT_SERVING for 10 minutes",
    healthy=([(f"modelserve_ready{{{ORC}}}", "1x15"), (f"up{{{ORC}}}", "1x15")], "15m"),
)
tests += case(
    "ModelServeDatabaseErrors",
    [(f'modelserve_db_errors_total{{{R},dialect="postgresql",error="unavailable"}}', "0+60x15")],
    "4m",
    "11m",
    {"service": "registry", "instance": "registry:9091"},
    "registry cannot reach its database",
    "Database work fails with 'unavailable' (unreachable, pool timeout, locked) at 1/s.",
    healthy=(
        [(f'modelserve_db_errors_total{{{R},dialect="postgresql",error="unavailable"}}', "3x15")],
        "15m",
    ),
)
tests += case(
    "ModelServeHighErrorRatio",
    [
        (
            f'modelserve_gateway_requests_total{{{G},route="/v2/models/{{model}}/infer",code="200",tenant="a"}}',
            "0+540x20",
        ),
        (
            f'modelserve_gateway_requests_total{{{G},route="/v2/models/{{model}}/infer",code="503",tenant="a"}}',
            "0+60x20",
        ),
    ],
    "9m",
    "16m",
    {"service": "gateway"},
    "10% of REST requests fail with a 5xx",
    healthy=(
        [
            (f'modelserve_gateway_requests_total{{{G},route="x",code="200",tenant="a"}}', "0+600x20"),
            (f'modelserve_gateway_requests_total{{{G},route="x",code="404",tenant="a"}}', "0+600x20"),
        ],
        "20m",
    ),
)
tests += case(
    "ModelServeGrpcErrorRatio",
    [
        (
            f'grpc_server_handled_total{{{M},grpc_type="unary",grpc_service="inference.GRPCInferenceService",grpc_method="ModelInfer",grpc_code="OK"}}',
            "0+480x20",
        ),
        (
            f'grpc_server_handled_total{{{M},grpc_type="unary",grpc_service="inference.GRPCInferenceService",grpc_method="ModelInfer",grpc_code="UNAVAILABLE"}}',
            "0+120x20",
        ),
    ],
    "9m",
    "16m",
    {"service": "model-server", "grpc_service": "inference.GRPCInferenceService"},
    "model-server: 20% of inference.GRPCInferenceService RPCs fail",
    healthy=(
        [
            (
                f'grpc_server_handled_total{{{M},grpc_type="unary",grpc_service="s",grpc_method="m",grpc_code="OK"}}',
                "0+600x20",
            ),
            (
                f'grpc_server_handled_total{{{M},grpc_type="unary",grpc_service="s",grpc_method="m",grpc_code="NOT_FOUND"}}',
                "0+600x20",
            ),
        ],
        "20m",
    ),
)
B = 'modelserve_gateway_http_request_seconds_bucket{%s,route="/v2/models/{model}/infer",code="200",le="%s"}'
tests += case(
    "ModelServeHighP99Latency",
    [
        (B % (G, "1"), "0x20"),
        (B % (G, "2.5"), "0x20"),
        (B % (G, "5"), "0+60x20"),
        (B % (G, "+Inf"), "0+60x20"),
    ],
    "9m",
    "16m",
    {"route": "/v2/models/{model}/infer"},
    "p99 latency of /v2/models/{model}/infer is 4.975s",
    healthy=(
        [
            (B % (G, "1"), "0+60x20"),
            (B % (G, "2.5"), "0+60x20"),
            (B % (G, "5"), "0+60x20"),
            (B % (G, "+Inf"), "0+60x20"),
        ],
        "20m",
    ),
)
tests += case(
    "ModelServeGatewayShedding",
    [(f"modelserve_gateway_shed_total{{{G}}}", "0+60x15")],
    "4m",
    "11m",
    {"service": "gateway", "instance": "gateway:9090"},
    "gateway gateway:9090 sheds 1 requests/s",
    healthy=([(f"modelserve_gateway_shed_total{{{G}}}", "5x15")], "15m"),
)
tests += case(
    "ModelServeRateLimitStoreUnavailable",
    [(f'modelserve_gateway_rate_limiter_errors_total{{{G},mode="open"}}', "0+30x10")],
    "1m",
    "6m",
    {"service": "gateway", "instance": "gateway:9090"},
    "gateway gateway:9090 cannot reach the rate-limit store (Redis)",
    "Rate-limit checks fail (500m/s); with GATEWAY_RATE_LIMIT_FAIL_OPEN=true (the default) requests are admitted unlimited, otherwise refused UNAVAILABLE.",
    healthy=([(f'modelserve_gateway_rate_limiter_errors_total{{{G},mode="open"}}', "2x10")], "10m"),
)
tests += case(
    "ModelServeModelFailed",
    [(f"modelserve_model_server_failed_models{{{M}}}", "1x10")],
    "4m",
    "6m",
    {"service": "model-server", "instance": "model-server:9093"},
    "1 model version(s) FAILED to load on model-server:9093",
    healthy=([(f"modelserve_model_server_failed_models{{{M}}}", "0x10")], "10m"),
)
Q = 'modelserve_model_server_requests_total{%s,model="iris",version="1",outcome="%s"}'
tests += case(
    "ModelServeQueueSaturated",
    [(Q % (M, "success"), "0+570x15"), (Q % (M, "rejected"), "0+30x15")],
    "4m",
    "11m",
    {"service": "model-server", "model": "iris", "version": "1"},
    "iris v1: 5% of requests refused, queue full",
    healthy=([(Q % (M, "success"), "0+600x15"), (Q % (M, "rejected"), "0x15")], "15m"),
)
T = 'modelserve_model_server_triton_requests_total{%s,code="%s"}'
tests += case(
    "ModelServeTritonFailures",
    [(T % (M, "OK"), "0+540x20"), (T % (M, "UNAVAILABLE"), "0+120x20"), (T % (M, "NOT_FOUND"), "0+600x20")],
    "9m",
    "16m",
    {"service": "model-server", "instance": "model-server:9093"},
    "9.524% of calls to Triton fail on model-server:9093",
    healthy=([(T % (M, "OK"), "0+600x20"), (T % (M, "NOT_FOUND"), "0+600x20")], "20m"),
)
D = 'modelserve_registry_feature_drift_score{%s,model="iris",version="1",feature="%s"}'
tests += case(
    "ModelServeFeatureDrift",
    [(D % (R, "petal_width"), "0.35x40"), (D % (R, "sepal_width"), "0.05x40")],
    "29m",
    "31m",
    {"model": "iris", "version": "1", "feature": "petal_width"},
    "iris v1 feature petal_width drifted (PSI 350m)",
    healthy=([(D % (R, "petal_width"), "0.1x40")], "40m"),
)
tests += case(
    "ModelServeExecutionBacklogOld",
    [(f"modelserve_orchestrator_oldest_queued_age_seconds{{{ORC}}}", "400+60x10")],
    "4m",
    "6m",
    {"service": "orchestrator"},
    "the oldest queued execution has waited 12m 40s",
    healthy=([(f"modelserve_orchestrator_oldest_queued_age_seconds{{{ORC}}}", "0x10")], "10m"),
)
tests += case(
    "ModelServeExecutionQueueDeep",
    [(f"modelserve_orchestrator_queue_depth{{{ORC}}}", "1500x15")],
    "9m",
    "11m",
    {"service": "orchestrator"},
    "1500 executions are queued",
    healthy=([(f"modelserve_orchestrator_queue_depth{{{ORC}}}", "10x15")], "15m"),
)
W = 'modelserve_orchestrator_webhook_attempts_total{%s,outcome="%s"}'
tests += case(
    "ModelServeWebhookFailureRatio",
    [(W % (ORC, "DELIVERED"), "0+30x40"), (W % (ORC, "PENDING"), "0+30x40")],
    "14m",
    "31m",
    {"service": "orchestrator"},
    "50% of webhook attempts fail",
    healthy=([(W % (ORC, "DELIVERED"), "0+60x40"), (W % (ORC, "PENDING"), "0x40")], "40m"),
)
covered = {t["alert_rule_test"][0]["alertname"] for t in tests}
assert covered == set(static), set(static) - covered
doc = {"rule_files": ["modelserve-alerts.yaml"], "evaluation_interval": "1m", "tests": tests}
hdr = "# promtool unit tests of modelserve-alerts.yaml: every alert fires on a breaking input after its\n# `for`, not before, and stays quiet on a healthy input.  promtool test rules <this file>\n"
(HERE / "rules" / "modelserve-alerts.test.yaml").write_text(
    hdr + yaml.safe_dump(doc, sort_keys=False, width=200)
)
