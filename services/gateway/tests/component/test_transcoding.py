"""REST -> gRPC transcoding through a running gateway and the test-only template service."""

from __future__ import annotations

import json

import grpc
import pytest

from modelserve_gateway.errors import HTTP_STATUS


async def test_echo_path_and_query_params_fill_the_request(gateway) -> None:
    r = await gateway.http.get(
        "/v1/echo/abc",
        params=[
            ("ids", "1"),
            ("ids", "2"),
            ("colour", "COLOUR_RED"),
            ("payload.title", "t"),
            ("bigNumber", "12345678901234"),
            ("flag", "true"),
            ("when", "2024-01-02T03:04:05Z"),
            ("ratio", "NaN"),
        ],
    )
    assert r.status_code == 200, r.text
    echoed = r.json()["echoed"]
    assert echoed == {
        "name": "abc",
        "payload": {"title": "t"},
        "ids": [1, 2],
        "colour": "COLOUR_RED",
        "bigNumber": "12345678901234",
        "flag": True,
        "when": "2024-01-02T03:04:05Z",
        "ratio": "NaN",
    }
    assert r.headers["grpc-metadata-x-upstream"] == "yes"


async def test_additional_bindings_both_route(gateway) -> None:
    r = await gateway.http.get("/v1/shelves/s1/echo/n1")
    assert r.json()["echoed"] == {"name": "n1", "shelf": "s1"}
    r = await gateway.http.post(
        "/v1/echo:post", json={"name": "x", "big_number": "7", "payload": {"tags": ["a"]}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["echoed"] == {"name": "x", "bigNumber": "7", "payload": {"tags": ["a"]}}


async def test_multi_segment_variable_verb_and_body_field(gateway) -> None:
    r = await gateway.http.post("/v1/projects/p1/items/a/b:deep", json={"title": "hello", "big": 5})
    assert r.status_code == 200, r.text
    assert r.json()["echoed"] == {"name": "projects/p1/items/a/b", "payload": {"title": "hello", "big": "5"}}


async def test_wildcards_and_response_body(gateway) -> None:
    r = await gateway.http.get("/v1/wild/anything/nm/x/y/z", params={"shelf": "s"})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "nm", "shelf": "s"}  # response_body: only the `echoed` field


async def test_nested_path_field_merges_with_body_field(gateway) -> None:
    r = await gateway.http.patch("/v1/nested/T1", json={"big": "9", "tags": ["q"]})
    assert r.status_code == 200, r.text
    assert r.json()["echoed"]["payload"] == {"title": "T1", "big": "9", "tags": ["q"]}


@pytest.mark.parametrize(
    ("path", "params", "fragment"),
    [
        ("/v1/echo/abc", {"nope": "1"}, "unknown query parameter 'nope'"),
        ("/v1/echo/abc", {"payload.nope": "1"}, "unknown query parameter"),
        ("/v1/echo/abc", {"payload": "1"}, "names a message"),
        ("/v1/echo/abc", {"name": "other"}, "bound by the path"),
        ("/v1/echo/abc", {"ids": "x"}, "invalid request"),
        ("/v1/echo/abc", {"colour": "PURPLE"}, "invalid request"),
        ("/v1/echo/abc", {"page_size": "100000"}, "page_size must be at most"),
    ],
)
async def test_bad_query_parameters_are_400(
    gateway, path: str, params: dict[str, str], fragment: str
) -> None:
    r = await gateway.http.get(path, params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert fragment in body["message"]


async def test_body_errors(gateway, make_gateway) -> None:
    r = await gateway.http.post("/v1/echo:post", content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    r = await gateway.http.post("/v1/echo:post", json=[1, 2])
    assert r.status_code == 400
    r = await gateway.http.post("/v1/echo:post", json={"unknownField": 1})
    assert r.status_code == 400
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    r = await gateway.http.post("/v1/echo:post", json={"name": deep})
    assert r.status_code == 400 and "deeper than" in r.json()["message"]
    async with make_gateway(max_body_bytes=1024) as small:
        r = await small.http.post("/v1/echo:post", content=json.dumps({"name": "x" * 2000}))
        assert r.status_code == 413


async def test_unknown_route_404_and_wrong_verb_405(gateway) -> None:
    r = await gateway.http.get("/v1/nothing/here")
    assert r.status_code == 404 and r.json()["code"] == 5
    r = await gateway.http.delete("/v1/echo/abc")
    assert r.status_code == 405 and "GET" in r.headers["allow"]


_CODES = [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK]


@pytest.mark.parametrize("code", _CODES, ids=[c.name for c in _CODES])
async def test_error_table_maps_every_code(gateway, code: grpc.StatusCode) -> None:
    r = await gateway.http.get(f"/v1/fail/{code.value[0]}")
    assert r.status_code == HTTP_STATUS[code]
    body = r.json()
    assert body["code"] == code.value[0]
    assert body["message"] == f"failed with {code.value[0]}"
    assert body["details"] == []
    if code is grpc.StatusCode.UNAUTHENTICATED:
        assert r.headers["www-authenticate"].startswith("Bearer")
    if code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
        assert r.headers["retry-after"].isdigit()


def test_error_table_is_the_grpc_gateway_table() -> None:
    assert len(HTTP_STATUS) == 17
    assert HTTP_STATUS[grpc.StatusCode.FAILED_PRECONDITION] == 400
    assert HTTP_STATUS[grpc.StatusCode.CANCELLED] == 499
    assert HTTP_STATUS[grpc.StatusCode.DEADLINE_EXCEEDED] == 504


async def test_request_id_generated_or_echoed_and_metadata_forwarded(gateway) -> None:
    r = await gateway.http.get("/v1/echo/a")
    assert len(r.headers["x-request-id"]) == 32
    r = await gateway.http.get(
        "/v1/echo/a",
        headers={
            "x-request-id": "rid-1",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "grpc-metadata-x-custom": "v1",
            "grpc-metadata-x-modelserve-tenant": "evil",
            "authorization": "Bearer secret-not-forwarded",
        },
    )
    assert r.headers["x-request-id"] == "rid-1"
    md = r.json()["metadata"]
    assert "x-request-id=rid-1" in md
    assert "x-custom=v1" in md
    assert "traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" in md
    assert not any(m.startswith(("x-modelserve-tenant", "authorization")) for m in md)


async def test_grpc_timeout_header_is_the_deadline(gateway) -> None:
    r = await gateway.http.get("/v1/fail/0", params={"delay_ms": 500}, headers={"grpc-timeout": "100m"})
    assert r.status_code == 504
    r = await gateway.http.get("/v1/fail/0", params={"delay_ms": 10}, headers={"grpc-timeout": "5S"})
    assert r.status_code == 200 and r.json() == {"ok": True}
    r = await gateway.http.get("/v1/fail/0", headers={"grpc-timeout": "soon"})
    assert r.status_code == 400


async def test_stream_ndjson_and_error_mid_stream(gateway) -> None:
    r = await gateway.http.get("/v1/count/3")
    assert r.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in r.text.splitlines()] == [
        {"result": {}},
        {"result": {"i": 1}},
        {"result": {"i": 2}},
    ]
    r = await gateway.http.get("/v1/count/5", params={"fail_after": 2})
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert lines[:2] == [{"result": {}}, {"result": {"i": 1}}]
    assert lines[2] == {"error": {"code": 13, "message": "boom", "details": []}}
    assert len(lines) == 3


async def test_stream_sse_when_asked(gateway) -> None:
    r = await gateway.http.get(
        "/v1/count/4", params={"fail_after": 2}, headers={"accept": "text/event-stream"}
    )
    assert r.headers["content-type"] == "text/event-stream"
    events = [e for e in r.text.split("\n\n") if e]
    assert events[0] == 'data: {"result":{}}'
    assert events[1] == 'data: {"result":{"i":1}}'
    assert events[2].startswith("event: error\ndata: ")
    assert json.loads(events[2].split("data: ", 1)[1])["error"]["message"] == "boom"


async def test_stream_error_before_first_message_is_a_plain_error(gateway) -> None:
    r = await gateway.http.get("/v1/count/2", params={"fail_after": -1})
    assert r.status_code == 200  # fail_after -1 never triggers; sanity
    r = await gateway.http.get("/v1/count/x")
    assert r.status_code == 400


async def test_cors_preflight_and_simple(make_gateway) -> None:
    async with make_gateway(cors_allow_origins=["https://ui.example"]) as gw:
        r = await gw.http.options(
            "/v1/echo/a", headers={"origin": "https://ui.example", "access-control-request-method": "GET"}
        )
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "https://ui.example"
        assert "GET" in r.headers["access-control-allow-methods"]
        r = await gw.http.get("/v1/echo/a", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


async def test_rest_requests_are_counted_by_route_and_status(gateway) -> None:
    from prometheus_client import REGISTRY

    def count(route: str, code: str) -> float:
        labels = {"route": route, "code": code}
        return REGISTRY.get_sample_value("modelserve_gateway_http_request_seconds_count", labels) or 0.0

    echo = "/gwtest.v1.TemplateService/Echo"
    before = (count(echo, "200"), count(echo, "400"), count("unmatched", "404"))
    await gateway.http.get("/v1/echo/a")
    await gateway.http.get("/v1/echo/a", params={"nope": 1})
    await gateway.http.get("/v1/none")
    after = (count(echo, "200"), count(echo, "400"), count("unmatched", "404"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
