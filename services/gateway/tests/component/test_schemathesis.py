"""Fuzzing the REST surface with schemathesis' Python API, bounded in time: every operation of the
gateway's own /openapi.json (registry, orchestrator, KServe v2), fuzzed with valid and invalid
inputs, against a gateway whose upstreams answer every RPC with an empty reply. The gateway must
never answer 5xx: bad input is the client's fault (4xx), and an empty but valid reply must
render.

The gateway runs in a thread with its own event loop (schemathesis' client is synchronous)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from modelserve_gateway.clients import FRONTED
from modelserve_gateway.server import running_server
from modelserve_gateway.settings import GatewaySettings

BUDGET_S = 25.0  # the whole fuzz run; each operation gets an equal share, at most MAX_EXAMPLES
MAX_EXAMPLES = 10  # positive and negative (schema-violating) cases mixed


_HEALTH = ("/inference.GRPCInferenceService/ServerLive", "/inference.GRPCInferenceService/ServerReady")
_ALIVE = b"\x08\x01"  # ServerLiveResponse(live=true) / ServerReadyResponse(ready=true): field 1 = 1


CALLED: list[str] = []  # methods the upstream was asked for (written from the gateway's thread)


class EmptyReplies(grpc.GenericRpcHandler):
    """Answers every unary RPC of the fronted services with an empty message (b"" parses as any
    message; the two health RPCs say live/ready) and every server-streaming RPC with an empty
    stream."""

    def __init__(self) -> None:
        self.streaming = {
            f"/{svc.full_name}/{m.name}": m.server_streaming for svc, _ in FRONTED for m in svc.methods
        }

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        streaming = self.streaming.get(details.method)
        if streaming is None:
            return None
        CALLED.append(details.method)
        if streaming:

            async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
                return
                yield b""

            return grpc.unary_stream_rpc_method_handler(stream)

        reply = _ALIVE if details.method in _HEALTH else b""

        async def unary(request: bytes, context: Any) -> bytes:
            return reply

        return grpc.unary_unary_rpc_method_handler(unary)


@asynccontextmanager
async def _gateway() -> AsyncIterator[int]:
    upstream = grpc.aio.server()
    upstream.add_generic_rpc_handlers((EmptyReplies(),))
    port = upstream.add_insecure_port("127.0.0.1:0")
    await upstream.start()
    target = f"127.0.0.1:{port}"
    gw_settings = GatewaySettings(
        grpc_port=0,
        http_port=0,
        http_host="127.0.0.1",
        grpc_host="127.0.0.1",
        metrics_port=-1,
        registry_url=target,
        model_server_url=target,
        orchestrator_url=target,
        auth_enabled=False,
        watch_registry=False,
        access_log=False,
        shutdown_grace_s=0.2,
        redis_url=None,
        max_body_bytes=1024 * 1024,
    )
    try:
        async with running_server(gw_settings) as running:
            yield running.extra["http_port"]
    finally:
        await upstream.stop(0)


@pytest.fixture
def base_url() -> Iterator[str]:
    """A gateway on its own loop in a thread; yields its base URL, stops it on teardown."""
    ready: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    async def main() -> None:
        async with _gateway() as port:
            ready.append(port)
            await asyncio.to_thread(stop.wait)

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the fixture
            errors.append(exc)

    thread = threading.Thread(target=run, name="gateway-under-fuzz", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not ready and not errors and time.monotonic() < deadline:
        time.sleep(0.02)
    if errors:
        raise errors[0]
    assert ready, "gateway did not start"
    try:
        yield f"http://127.0.0.1:{ready[0]}"
    finally:
        stop.set()
        thread.join(10)
    if errors:
        raise errors[0]


def test_schemathesis_every_operation_no_server_error(base_url: str) -> None:
    doc = httpx.get(base_url + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(doc)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40, len(operations)
    share_s = BUDGET_S / len(operations)
    failures: list[str] = []
    tried = 0
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for op in operations:
            tried += _fuzz_operation(op, client, base_url, share_s, failures)
    print(f"schemathesis: {tried} requests over {len(operations)} operations")
    assert tried >= 2 * len(operations), tried
    assert not failures, "\n".join(failures[:20])


def _fuzz_operation(op: Any, client: httpx.Client, base_url: str, share_s: float, failures: list[str]) -> int:
    """Sends up to MAX_EXAMPLES generated cases of ``op`` within ``share_s``; records 5xx answers;
    returns how many were sent."""
    started = time.monotonic()
    sent = 0

    strategy = st.one_of(
        op.as_strategy(schemathesis.GenerationMode.POSITIVE),
        op.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        nonlocal sent
        if time.monotonic() - started > share_s:
            return  # this operation's share of the budget is spent
        kwargs = case.as_transport_kwargs(base_url=base_url)
        headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "host"}
        try:
            r = client.request(
                kwargs["method"],
                kwargs["url"],
                params=kwargs.get("params"),
                headers=headers,
                content=_body(kwargs),
            )
        except httpx.LocalProtocolError:
            return  # not sendable over HTTP/1.1 (e.g. a header value with a trailing space)
        sent += 1
        if r.status_code >= 500:
            failures.append(
                f"{kwargs['method']} {kwargs['url']} {kwargs.get('params')} -> {r.status_code} {r.text[:300]}"
            )

    fuzz()
    return sent


def _body(kwargs: dict[str, Any]) -> bytes | None:
    import json

    if "json" in kwargs:
        return json.dumps(kwargs["json"]).encode()
    data = kwargs.get("data")
    if isinstance(data, str):
        return data.encode()
    return data  # type: ignore[no-any-return]


def test_verb_routes_reach_their_rpc(base_url: str) -> None:
    """GET /v1/executions/e1:watch is WatchExecution (an empty stream: 200 NDJSON), never
    GetExecution of an execution named 'e1:watch'."""
    cases = [
        ("GET", "/v1/executions/e1:watch", "WatchExecution"),
        ("POST", "/v1/executions/e1:cancel", "CancelExecution"),
        ("POST", "/v1/pipelines/p1:run", "RunPipeline"),
        ("POST", "/v1/pipelines/p1:stream", "StreamPipelineRun"),
        ("POST", "/v1/tenants/t1/apiKeys/k1:rotate", "RotateApiKey"),
        ("GET", "/v1/registry:watch", "Watch"),
        ("POST", "/v1/apiKeys:verify", "VerifyApiKey"),
        ("GET", "/v1/executions/e1:other", "GetExecution"),  # not a verb: part of the name
    ]
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for verb, path, method in cases:
            CALLED.clear()
            r = client.request(verb, path, content=b"{}" if verb == "POST" else None)
            assert r.status_code == 200, (path, r.status_code, r.text)
            assert [m.rsplit("/", 1)[1] for m in CALLED] == [method], (path, CALLED)


def _bad_values(f: Any) -> list[tuple[str, str]]:
    """(JSON literal, query text) pairs no field of ``f``'s type accepts."""
    from google.protobuf.descriptor import FieldDescriptor as FD

    if f.enum_type is not None:
        return [("177535", "177535"), ('"NOT_A_VALUE"', "NOT_A_VALUE")]
    t = f.cpp_type
    if t == FD.CPPTYPE_INT32:
        return [(str(2**31), str(2**31)), (str(-(2**31) - 1), str(-(2**31) - 1))]
    if t == FD.CPPTYPE_UINT32:
        return [("-1", "-1"), (str(2**32), str(2**32))]
    if t == FD.CPPTYPE_INT64:
        return [(str(2**63), str(2**63)), ("9" * 400, "9" * 400)]
    if t == FD.CPPTYPE_UINT64:
        return [("-1", "-1"), (str(2**64), str(2**64))]
    if t in (FD.CPPTYPE_DOUBLE, FD.CPPTYPE_FLOAT):
        return [("1e999", "1e999"), ('"abc"', "abc")]
    if t == FD.CPPTYPE_BOOL:
        return [("2", "maybe")]
    if t == FD.CPPTYPE_STRING and f.type == FD.TYPE_STRING:
        return [('"\\ud800"', "%ED%A0%80")]  # a lone surrogate; in a query: invalid UTF-8
    return []


def test_every_scalar_field_of_every_route_refuses_out_of_range_values(base_url: str) -> None:
    """Enumerated from the compiled router: every int, enum, float, bool and string field a
    request can carry (query for body-less routes, body otherwise) gets values outside its type:
    400 in the JSON of google.rpc.Status, never a 5xx and never accepted."""
    from modelserve_gateway.clients import FRONTED as fronted
    from modelserve_gateway.transcoding.routes import compile_routes

    checked = 0
    problems: list[str] = []
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for route in compile_routes(list(fronted)):
            path = re.sub(r"\{[^}]*\}", "x1", route.template.source)
            bound = {v.field_path.split(".")[0] for v in route.template.variables}
            desc = route.request_type.DESCRIPTOR
            if route.body and route.body != "*":
                desc = desc.fields_by_name[route.body].message_type
                bound = {
                    v.field_path.split(".", 1)[1] for v in route.template.variables if "." in v.field_path
                }
            for f in desc.fields:
                if f.name in bound or f.message_type is not None:
                    continue
                for literal, text in _bad_values(f):
                    value = f"[{literal}]" if f.is_repeated else literal
                    if route.body:
                        body = f'{{"{f.name}": {value}}}'.encode()
                        r = client.request(route.verb, path, content=body)
                    else:
                        r = client.request(route.verb, f"{path}?{f.name}={text}")
                    checked += 1
                    ok = r.status_code == 400 and set(r.json()) == {"code", "message", "details"}
                    if not ok:
                        problems.append(
                            f"{route.verb} {path} {f.name}={literal}: {r.status_code} {r.text[:200]}"
                        )
    assert checked >= 80, checked
    assert not problems, "\n".join(problems)
