"""Hostile REST input through a running gateway: every class of bad body, query and path value
answers a 4xx in the documented JSON shape (google.rpc.Status on /v1, {"error"} on /v2), never
a 5xx; verbs are never swallowed by a path variable; transport abuse (huge heads, short bodies,
malformed requests) over raw sockets; one access-log line per request."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from structlog.testing import capture_logs

from modelserve_gateway.transcoding.routes import Route

INFER = "/v2/models/add/infer"


def _tensor(**over: Any) -> dict[str, Any]:
    return {"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [1.0]} | over


def _infer_body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": list(inputs) or [_tensor()]} | extra).encode()


def _assert_status_json(r: Any, status: int, contains: str = "") -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert set(doc) == {"code", "message", "details"}, doc
    assert contains.lower() in doc["message"].lower(), doc
    return doc


def _assert_kserve_error(r: Any, status: int, contains: str = "") -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert set(doc) == {"error"}, doc
    assert contains.lower() in doc["error"].lower(), doc
    return str(doc["error"])


DEEP = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJ = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
# (body, words the message must contain)
HOSTILE_JSON: list[tuple[bytes, str]] = [
    (DEEP, "deeper than"),
    (DEEP_OBJ, "deeper than"),
    (b'{"a": "' + b"[" * 100 + b'"}', ""),  # brackets inside a string are not nesting: a clean 400
    (b'{"name": "\\ud800"}', "surrogate"),
    (b'{"name": "ok", "x": "\\udfff"}', "surrogate"),
    (b'{"bigNumber": ' + b"9" * 400 + b"}", "64 bits"),
    (b'{"bigNumber": 18446744073709551616}', "64 bits"),
    (b'{"ratio": 1e999}', "range"),
    (b'{"ratio": NaN}', "not json"),
    (b'{"ratio": -Infinity}', "not json"),
    (b"\xff\xfe", "not valid JSON"),
    (b'{"name": "x"', "not valid JSON"),
    (b'"' + b'\\"' * 50_000 + b"[" * 64, ""),  # unterminated string full of escapes: linear scan
]


async def test_hostile_json_bodies_answer_400_in_each_route_family_shape(gateway) -> None:
    for body, words in HOSTILE_JSON:
        r = await gateway.http.post(
            "/v1/echo:post", content=body, headers={"content-type": "application/json"}
        )
        _assert_status_json(r, 400, words)
        r = await gateway.http.post(INFER, content=body, headers={"content-type": "application/json"})
        _assert_kserve_error(r, 400, words if words != "not json" else "")


HOSTILE_TENSORS: list[tuple[bytes, str]] = [
    (_infer_body(_tensor(shape=[2**63], data=[1.0])), "shape"),
    (_infer_body(_tensor(shape=[2**64 - 1], data=[1.0])), "shape"),
    (_infer_body(_tensor(shape=[-1], data=[1.0])), "shape"),
    (_infer_body(_tensor(shape=[1.5], data=[1.0])), "shape"),
    (_infer_body(_tensor(shape=[True], data=[1.0])), "shape"),
    (_infer_body(_tensor(shape=["1"], data=[1.0])), "shape"),
    (_infer_body(_tensor(shape=[2**62, 4], data=[1.0])), "needs"),
    (
        b'{"inputs":[{"name":"INPUT0","shape":[' + b"1" * 400 + b'],"datatype":"FP32","data":[1]}]}',
        "64 bits",
    ),
    (_infer_body(_tensor(data=[1e39])), "range of FP32"),
    (_infer_body(_tensor(datatype="FP16", data=[70000.0])), "range of FP16"),
    (b'{"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP64","data":[1e999]}]}', "range"),
    (_infer_body(_tensor(datatype="INT32", data=[2**31])), "INT32"),
    (_infer_body(_tensor(datatype="UINT8", data=[-1])), "UINT8"),
    (_infer_body(_tensor(datatype="INT64", data=[1.5])), "INT64"),
    (_infer_body(_tensor(datatype="BOOL", data=[1])), "BOOL"),
    (_infer_body(_tensor(datatype="BYTES", data=[1])), "BYTES"),
    (_infer_body(_tensor(datatype="FP32", data=["1"])), "numbers"),
    (_infer_body(_tensor(datatype="FP32", data=[None])), "numbers"),
    (_infer_body(_tensor(datatype="FP32", data=[{"a": 1}])), "numbers"),
    (_infer_body(_tensor(datatype="BF16", data=[1.0])), "cannot be sent as JSON"),
    (_infer_body(_tensor(datatype="FP8", data=[1.0])), "datatype"),
    (_infer_body(_tensor(parameters={"binary_data_size": 4})), "both"),
    (_infer_body(_tensor(data=None, parameters={"binary_data_size": True})), "binary_data_size"),
    (_infer_body(_tensor(), _tensor()), "twice"),
    (_infer_body(_tensor(parameters={"p": 2**64})), "64 bits"),
    (_infer_body(_tensor(parameters={"p": -(2**63) - 1})), "64 bits"),
    (_infer_body(_tensor(parameters={"p": [1]})), "parameter"),
    (_infer_body(_tensor(parameters=[1])), "parameters"),
    (_infer_body(parameters={"p": {"q": 1}}), "parameter"),
    (_infer_body(id={"a": 1}), "id"),
    (_infer_body(outputs={"a": 1}), "outputs"),
    (_infer_body(outputs=[{"name": 1}]), "outputs[0]"),
    (json.dumps({"inputs": []}).encode(), "inputs"),
    (json.dumps({"inputs": [1]}).encode(), "inputs[0]"),
    (json.dumps([1, 2]).encode(), "object"),
    (_infer_body(_tensor(shape=[1_000_000], data=[1.0] * 10)), "needs"),
]


async def test_hostile_kserve_tensors_answer_400(gateway) -> None:
    for body, words in HOSTILE_TENSORS:
        r = await gateway.http.post(INFER, content=body, headers={"content-type": "application/json"})
        _assert_kserve_error(r, 400, words)


@pytest.mark.parametrize(
    ("header", "words"),
    [("²", "number"), ("-1", "number"), ("9" * 40, "number"), ("abc", "number"), ("99999", "exceeds")],
)
async def test_bad_inference_header_content_length_answers_400(gateway, header: str, words: str) -> None:
    body = _infer_body()
    r = await gateway.http.post(
        INFER,
        content=body,
        headers={"inference-header-content-length": header.encode("utf-8")},
    )
    _assert_kserve_error(r, 400, words)


async def test_binary_extension_claims_checked(gateway) -> None:
    head = _infer_body(_tensor(data=None, parameters={"binary_data_size": 8}))
    head = json.dumps(
        {
            "inputs": [
                {"name": "INPUT0", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 8}}
            ]
        }
    ).encode()
    r = await gateway.http.post(
        INFER, content=head + b"\0" * 8, headers={"inference-header-content-length": str(len(head))}
    )
    _assert_kserve_error(r, 400, "needs 4 bytes")
    r = await gateway.http.post(
        INFER, content=head + b"\0" * 4, headers={"inference-header-content-length": str(len(head))}
    )
    _assert_kserve_error(r, 400, "runs past")


BAD_QUERIES: list[tuple[str, str]] = [
    ("/v1/echo/a?colour=177535", "not a Colour value"),
    ("/v1/echo/a?colour=COLOUR_GREEN", "enum"),
    ("/v1/echo/a?colour=99999999999999999999999", ""),
    ("/v1/echo/a?bigNumber=" + "9" * 400, ""),
    ("/v1/echo/a?bigNumber=9223372036854775808", ""),
    ("/v1/echo/a?ids=1&ids=2147483648", ""),
    ("/v1/echo/a?ids=x", ""),
    ("/v1/echo/a?pageSize=9223372036854775808", ""),
    ("/v1/echo/a?ratio=1e999", "range"),
    ("/v1/echo/a?ratio=-1e400", "range"),
    ("/v1/echo/a?ratio=abc", ""),
    ("/v1/echo/a?flag=maybe", "true or false"),
    ("/v1/echo/a?when=yesterday", ""),
    ("/v1/echo/a?payload=x", "body"),
    ("/v1/echo/a?nope=1", "unknown query parameter"),
    ("/v1/echo/a?name=b", "bound by the path"),
    ("/v1/echo/a?bigNumber=1&bigNumber=2", "twice"),
    ("/v1/echo/a?%ff=1", "UTF-8"),
    ("/v1/count/99999999999", ""),
    ("/v1/count/-", ""),
    ("/v1/fail/abc", ""),
    ("/v1/fail/2147483648", ""),
    ("/v1/executions?state=177535", "not a ExecutionState value"),
    ("/v1/executions?state=-1", "not a ExecutionState value"),
    ("/v1/executions?state=EXECUTION_STATE_NOPE", "enum"),
    ("/v1/executions?pageSize=" + "9" * 30, ""),
    ("/v1/executions?pageSize=1.5", ""),
    ("/v1/models?pageSize=-99999999999", ""),
]


async def test_bad_query_and_path_values_answer_400(gateway) -> None:
    for path, words in BAD_QUERIES:
        r = await gateway.http.get(path)
        doc = _assert_status_json(r, 400, words)
        assert doc["code"] == 3, path


async def test_enum_by_number_and_name_still_work(gateway) -> None:
    for value in ("1", "COLOUR_RED"):
        r = await gateway.http.get(f"/v1/echo/a?colour={value}")
        assert r.status_code == 200, r.text
        assert r.json()["echoed"]["colour"] == "COLOUR_RED"
    r = await gateway.http.post("/v1/echo:post", json={"colour": 99})
    _assert_status_json(r, 400, "not a Colour value")


async def test_repeated_and_huge_arrays(gateway) -> None:
    r = await gateway.http.post("/v1/echo:post", json={"ids": [1] * 100_000})
    assert r.status_code == 200
    assert len(r.json()["echoed"]["ids"]) == 100_000
    r = await gateway.http.post("/v1/echo:post", json={"ids": [[1]]})
    _assert_status_json(r, 400)
    r = await gateway.http.post("/v1/echo:post", json={"ids": [2**40]})
    _assert_status_json(r, 400)
    r = await gateway.http.post("/v1/echo:post", json={"payload": {"tags": [1, 2]}})
    _assert_status_json(r, 400)
    r = await gateway.http.post("/v1/echo:post", json=[1, 2])
    _assert_status_json(r, 400, "JSON object")


# Verbs ------------------------------------------------------------------------------------------


def _sample_path(route: Route) -> str:
    """A concrete path for ``route``: every variable filled with a sample that could be mistaken
    for a verb-carrying value, every '*' with one segment, '**' with two."""
    source = route.template.source
    if route.template.verb:
        source = source[: -len(route.template.verb) - 1]
    out = re.sub(r"\{[^}=]+\}", "v1x", source)
    out = re.sub(r"\{[^}=]+=([^}]*)\}", r"\1", out)
    out = out.replace("**", "d1/d2").replace("*", "s1")
    return out + (":" + route.template.verb if route.template.verb else "")


async def test_every_route_with_a_verb_is_reached_not_swallowed_by_a_variable(gateway) -> None:
    router = gateway.running.extra["app"].router
    with_verbs = [r for r in router.routes if r.template.verb]
    assert {r.template.source for r in with_verbs} >= {
        "/v1/executions/{execution}:watch",
        "/v1/executions/{execution}:cancel",
        "/v1/pipelines/{pipeline}:run",
        "/v1/pipelines/{pipeline}:stream",
        "/v1/tenants/{tenant}/apiKeys/{key}:rotate",
        "/v1/registry:watch",
        "/v1/apiKeys:verify",
        "/v1/echo:post",
    }
    for route in with_verbs:
        path = _sample_path(route)
        found = router.match(route.verb, path)
        assert found is not None, path
        assert found[0].method == route.method, (path, found[0].method)
        for value in found[1].values():
            assert ":" not in value, (path, found[1])
    # A colon that is not a known verb stays part of the last variable.
    found = router.match("GET", "/v1/executions/e1:other")
    assert found is not None and found[1] == {"execution": "e1:other"}


async def test_watch_execution_reaches_the_watch_rpc(gateway) -> None:
    # The orchestrator upstream of this fixture is the inference fake: it does not implement
    # WatchExecution, so reaching it answers UNIMPLEMENTED (501), not "execution 'e1:watch' not found".
    r = await gateway.http.get("/v1/executions/e1:watch")
    doc = _assert_status_json(r, 501)
    assert "WatchExecution" in doc["message"] or doc["code"] == 12, doc
    r = await gateway.http.post("/v1/echo:post", json={"name": "n"})
    assert r.status_code == 200 and r.json()["echoed"]["name"] == "n"


# Transport (raw sockets) --------------------------------------------------------------------------


async def _exchange(port: int, payload: bytes, *, keep_open: bool = True, limit_s: float = 10) -> bytes:
    """Writes ``payload`` (tolerating the server closing early) and reads until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        try:
            for i in range(0, len(payload), 65536):
                writer.write(payload[i : i + 65536])
                await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            pass
        if not keep_open:
            writer.write_eof()
        chunks = []
        async with asyncio.timeout(limit_s):
            while True:
                try:
                    chunk = await reader.read(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


@pytest.mark.parametrize(("path", "shape"), [("/v1/models", "status"), ("/v2/models/add/infer", "kserve")])
async def test_header_over_the_limit_answers_431_json(make_gateway, path: str, shape: str) -> None:
    async with make_gateway(max_header_bytes=8192) as gw:
        ok = f"GET /v1/echo/a HTTP/1.1\r\nhost: x\r\nx-pad: {'a' * 6000}\r\n\r\n".encode()
        raw = await _exchange(
            gw.http_port, ok + b"GET /v1/echo/b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        assert raw.count(b"HTTP/1.1 200") == 2  # under the limit, keep-alive, two answers
        for size in (100_000, 10_000_000):
            req = f"GET {path} HTTP/1.1\r\nhost: x\r\nx-pad: ".encode() + b"a" * size + b"\r\n\r\n"
            status, headers, body = _parse(await _exchange(gw.http_port, req))
            assert status == 431
            assert headers["content-type"] == "application/json"
            assert headers["connection"] == "close"
            doc = json.loads(body)
            message = doc["error"] if shape == "kserve" else doc["message"]
            assert "8192" in message
            if shape == "status":
                assert doc["code"] == 3
        # many small headers add up too
        many = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 50) for i in range(300))
        status, _, _ = _parse(
            await _exchange(gw.http_port, b"GET /v1/models HTTP/1.1\r\nhost: x\r\n" + many + b"\r\n")
        )
        assert status == 431


MALFORMED: list[bytes] = [
    b"GARBAGE\r\n\r\n",
    b"GET /v1/models HTTP/9.9\r\n\r\n",
    b"GET /v1/models HTTP/1.1\r\nbad header line\r\n\r\n",
    b"POST /v1/models HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n",
    b"POST /v1/models HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-a: \x00\r\n\r\n",
]


async def test_malformed_requests_answer_400_json(gateway) -> None:
    for payload in MALFORMED:
        status, headers, body = _parse(await _exchange(gateway.http_port, payload))
        assert status == 400, payload
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        doc = json.loads(body)
        assert doc["code"] == 3 and "invalid HTTP request" in doc["message"], doc


@pytest.mark.parametrize(("path", "shape"), [("/v1/echo:post", "status"), (INFER, "kserve")])
async def test_short_body_kept_open_answers_408_json_and_closes(make_gateway, path: str, shape: str) -> None:
    async with make_gateway(body_read_timeout_s=0.3) as gw:
        req = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{{}}".encode()
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, headers, body = _parse(await _exchange(gw.http_port, req, limit_s=5))
        assert loop.time() - started < 4
        assert status == 408
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        doc = json.loads(body)
        message = doc["error"] if shape == "kserve" else doc["message"]
        assert "not received within 0.3 s" in message


# Access log -------------------------------------------------------------------------------------


async def test_access_log_one_line_per_request(make_gateway) -> None:
    async with make_gateway(access_log=True) as gw:
        with capture_logs() as logs:
            r1 = await gw.http.get("/v1/echo/abc", headers={"x-request-id": "rid-1"})
            r2 = await gw.http.post(INFER, content=b"[", headers={"x-request-id": "rid-2"})
            r3 = await gw.http.get("/v1/nowhere", headers={"x-request-id": "rid-3"})
            r4 = await gw.http.get("/v1/echo/abc", headers={"x-request-id": "café".encode()})
        assert (r1.status_code, r2.status_code, r3.status_code, r4.status_code) == (200, 400, 404, 400)
        lines = [e for e in logs if e["event"] == "http.handled"]
        assert len(lines) == 4, logs
        by_rid = {e["request_id"]: e for e in lines}
        assert by_rid["rid-1"] | {"duration_ms": 0} == {
            "event": "http.handled",
            "log_level": "info",
            "method": "GET",
            "route": "GET /v1/echo/{name}",
            "status": 200,
            "duration_ms": 0,
            "tenant": "",
            "request_id": "rid-1",
        }
        assert by_rid["rid-1"]["duration_ms"] > 0
        assert by_rid["rid-2"]["route"] == "POST /v2/models/{model}[/versions/{version}]/infer"
        assert by_rid["rid-2"]["status"] == 400
        assert by_rid["rid-3"]["route"] == "unmatched" and by_rid["rid-3"]["status"] == 404
        assert by_rid[r4.headers["x-request-id"]]["status"] == 400  # the fresh id, not the bad one
    async with make_gateway(access_log=False) as gw:
        with capture_logs() as logs:
            await gw.http.get("/v1/echo/abc")
        assert not [e for e in logs if e["event"] == "http.handled"]


async def test_access_log_names_the_tenant(make_gateway, registry) -> None:
    registry.add_key("sk_t1", "k1", "t1", ["infer"])
    registry.deploy("add", "t1", {"1": 100})
    async with make_gateway(access_log=True, auth_enabled=True, admin_api_key="admin-secret") as gw:
        with capture_logs() as logs:
            r = await gw.http.post(
                INFER, json={"inputs": [_tensor(), _tensor(name="INPUT1")]}, headers={"x-api-key": "sk_t1"}
            )
        assert r.status_code == 200, r.text
        (line,) = [e for e in logs if e["event"] == "http.handled"]
        assert line["tenant"] == "t1" and line["status"] == 200


# Headers that travel on as gRPC metadata ----------------------------------------------------------


async def test_headers_forwarded_as_metadata_must_be_printable_ascii(gateway) -> None:
    cases: list[tuple[str, dict[str, bytes], str]] = [
        ("/v1/echo/a", {"x-request-id": "café".encode()}, "x-request-id"),
        ("/v1/echo/a", {"x-request-id": b"a\tb"}, "x-request-id"),
        ("/v1/echo/a", {"grpc-metadata-foo": "café".encode()}, "printable ASCII"),
        ("/v1/echo/a", {"grpc-metadata-fo!o": b"x"}, "metadata key"),
        ("/v1/echo/a", {"traceparent": b"\xff\xfe"}, "printable ASCII"),
        ("/v1/echo/a", {"grpc-timeout": b"0S"}, "positive"),
        ("/v1/echo/a", {"grpc-timeout": b"99999999999S"}, "Grpc-Timeout"),
    ]
    for path, headers, words in cases:
        r = await gateway.http.get(path, headers=headers)
        _assert_status_json(r, 400, words)
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])  # a fresh one, never the bad one
    r = await gateway.http.post(INFER, content=_infer_body(), headers={"x-request-id": "café".encode()})
    _assert_kserve_error(r, 400, "x-request-id")
    r = await gateway.http.get("/v1/echo/a", headers={"x-request-id": "ok-1", "grpc-metadata-foo": "bar"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "ok-1"
    assert "foo=bar" in r.json()["metadata"]


async def test_hostile_credentials_answer_401_not_500(make_gateway, registry) -> None:
    async with make_gateway(auth_enabled=True, admin_api_key="admin-secret") as gw:
        for headers in [
            {"x-api-key": "café".encode()},
            {"x-api-key": b"\xff" * 5000},
            {"authorization": "Bearer café".encode()},
            {"authorization": b"Bearer " + b"a" * 5000},
            {"authorization": b"Basic abc"},
            {"authorization": b"Bearer a.b.c"},
            {"authorization": b"Bearer"},
        ]:
            r = await gw.http.get("/v1/models", headers=headers)
            assert 400 <= r.status_code < 500, (headers, r.status_code, r.text)
            _assert_status_json(r, r.status_code)


async def test_slow_or_silent_head_times_out(make_gateway) -> None:
    async with make_gateway(head_read_timeout_s=0.3) as gw:
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Half a head, then nothing (slowloris): 408 in the JSON shape of the route family.
        status, headers, body = _parse(
            await _exchange(gw.http_port, b"GET /v2/models/m HTTP/1.1\r\nhost: x\r\nx-a: 1", limit_s=5)
        )
        assert status == 408 and headers["connection"] == "close"
        assert "not received within 0.3 s" in json.loads(body)["error"]
        status, _, body = _parse(await _exchange(gw.http_port, b"GET /v1/models HT", limit_s=5))
        assert status == 408 and json.loads(body)["code"] == 4
        # Connected, sent nothing: closed without an answer.
        assert await _exchange(gw.http_port, b"", limit_s=5) == b""
        assert loop.time() - started < 4
        # A complete head is not cut off later, even when its body takes longer than the head timeout.
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.http_port)
        try:
            writer.write(b"POST /v1/echo:post HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{")
            await writer.drain()
            await asyncio.sleep(0.5)
            writer.write(b"}")
            await writer.drain()
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()
