"""The one metadata policy of both doors, and the one audit wrapper."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import structlog

from modelserve_common.errors import InvalidArgument, PermissionDenied
from modelserve_gateway import metadata
from modelserve_gateway.audit import audited
from modelserve_gateway.auth import Principal
from modelserve_gateway.errors import GatewayError
from modelserve_gateway.guard import Admission

P = Principal("api_key", "k1", "t1", frozenset({"write"}))
ADM = Admission(P, [("x-modelserve-tenant", "t1"), ("x-modelserve-scopes", "write")])
RESERVED_KEYS = [
    "x-modelserve-tenant",
    "authorization",
    "x-api-key",
    "grpc-timeout",
    "user-agent",
    "x-request-id",
]


def test_both_doors_forward_the_same_client_metadata_after_the_gateway_identity() -> None:
    grpc_md = [(k, "evil") for k in RESERVED_KEYS] + [("x-custom", "v"), ("traceparent", "00-ab-cd-01")]
    http = {"grpc-metadata-" + k: "evil" for k in RESERVED_KEYS} | {
        "grpc-metadata-x-custom": "v",
        "traceparent": "00-ab-cd-01",
        "authorization": "Bearer x",
    }
    from_grpc = metadata.from_grpc(grpc_md, ADM)
    from_http = metadata.from_http(http, ADM)
    assert from_grpc[:2] == from_http[:2] == ADM.metadata
    assert (
        sorted(from_grpc[2:]) == sorted(from_http[2:]) == [("traceparent", "00-ab-cd-01"), ("x-custom", "v")]
    )


@pytest.mark.parametrize(
    ("headers", "message"),
    [({"grpc-metadata-fo!o": "x"}, "metadata key"), ({"grpc-metadata-foo": "caf\xe9"}, "printable ASCII")],
)
def test_rest_metadata_gRPC_cannot_carry_is_refused(headers: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        metadata.from_http(headers, ADM)


def test_upstream_metadata_coming_back() -> None:
    md = [
        ("x-upstream", "yes"),
        ("grpc-status-details-bin", b"\x00"),
        ("x-request-id", "r"),
        ("x-b-bin", b"1"),
    ]
    assert metadata.to_grpc(md) == [("x-upstream", "yes"), ("x-b-bin", b"1")]
    assert metadata.to_http(md) == [("grpc-metadata-x-upstream", "yes")]


async def test_audited_records_success_and_every_kind_of_failure() -> None:
    failures: list[BaseException] = [
        GatewayError(grpc.StatusCode.NOT_FOUND, "x"),
        PermissionDenied("no"),
        asyncio.CancelledError(),
        RuntimeError("bug"),
    ]
    with structlog.testing.capture_logs() as logs:
        with audited(P, "/s/Write", "r=1"):
            pass
        for exc in failures:
            with pytest.raises(type(exc)), audited(P, "/s/Write"):
                raise exc
        with audited(P, "/s/Read", enabled=False):
            pass
    outcomes = [(e["action"], e["outcome"], e["who"], e["tenant"]) for e in logs if e["event"] == "audit"]
    assert outcomes == [
        ("/s/Write", "OK", "k1", "t1"),
        ("/s/Write", "NOT_FOUND", "k1", "t1"),
        ("/s/Write", "PERMISSION_DENIED", "k1", "t1"),
        ("/s/Write", "CANCELLED", "k1", "t1"),
        ("/s/Write", "INTERNAL", "k1", "t1"),
    ]
