"""The scope table for the orchestrator's methods, and which of them are audited as writes."""

from __future__ import annotations

import pytest

from modelserve_common.identity import INFER, READ, WRITE
from modelserve_gateway.scopes import has_scope, is_write, required_scope

_O = "/modelserve.orchestrator.v1.OrchestratorService/"


@pytest.mark.parametrize(
    ("method", "scope", "write"),
    [
        ("CreatePipeline", WRITE, True),
        ("UpdatePipeline", WRITE, True),
        ("DeletePipeline", WRITE, True),
        ("GetPipeline", READ, False),
        ("ListPipelines", READ, False),
        ("RunPipeline", INFER, False),
        ("StreamPipelineRun", INFER, False),
        ("CreateExecution", INFER, True),
        ("CancelExecution", INFER, True),
        ("GetExecution", READ, False),
        ("ListExecutions", READ, False),
        ("WatchExecution", READ, False),
        ("ListWebhookDeliveries", READ, False),
    ],
)
def test_orchestrator_scopes_and_audit(method: str, scope: str, write: bool) -> None:
    assert required_scope(_O + method) == scope
    assert is_write(_O + method) is write


def test_infer_key_cannot_change_pipelines() -> None:
    infer_only = frozenset({INFER})
    assert not has_scope(infer_only, required_scope(_O + "DeletePipeline"))
    assert has_scope(infer_only, required_scope(_O + "CancelExecution"))
    assert has_scope(frozenset({"admin"}), required_scope(_O + "DeletePipeline"))
