"""The OpenAPI 3.1 document: valid, complete, and the gateway conforms to it under a bounded
schemathesis run. (The /docs viewer over it: tests/console/test_console_static.py.)"""

from __future__ import annotations

import asyncio
import sys

from openapi_spec_validator import validate


async def test_openapi_document_is_valid_and_covers_every_binding(gateway) -> None:
    r = await gateway.http.get("/openapi.json")
    doc = r.json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    assert "get" in paths["/v1/models/{model}"] and "delete" in paths["/v1/models/{model}"]
    assert "post" in paths["/v1/pipelines/{pipeline}:run"]
    assert "post" in paths["/v1/{name}:deep"]
    assert "get" in paths["/v1/shelves/{shelf}/echo/{name}"]  # additional binding
    assert "post" in paths["/v2/models/{model}/infer"]
    params = {p["name"] for p in paths["/v1/echo/{name}"]["get"]["parameters"]}
    assert {"name", "ids", "colour", "payload.title", "when"} <= params
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["paths"]["/v1/models"]["post"]["x-scope"] == "write"


async def test_schemathesis_finds_no_5xx_and_no_schema_violation(gateway) -> None:
    ops = (
        r"^(gwtest\.v1\.TemplateService\.(Echo|Deep|Wild|Nested)(\.[0-9])?$"
        r"|modelserve\.registry\.v1\.RegistryService\.(GetModel|CreateModel)$"
        r"|kserve\..*)"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{gateway.base_url}/openapi.json",
        "--checks",
        "not_a_server_error,response_schema_conformance,content_type_conformance",
        "--include-operation-id-regex",
        ops,
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        "5",
        "--workers",
        "1",
        "--generation-deterministic",
        "--suppress-health-check",
        "all",
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    assert proc.returncode == 0, text[-6000:]


async def test_openapi_covers_every_kserve_route_of_the_route_table(gateway) -> None:
    from modelserve_gateway.rest.kserve_routes import KSERVE_ROUTES

    paths = (await gateway.http.get("/openapi.json")).json()["paths"]
    for route in KSERVE_ROUTES:
        for path in route.openapi_paths():
            op = paths[path][route.verb.lower()]
            assert op["summary"] == route.method and op["operationId"].startswith(f"kserve.{route.name}")
    # the routes the hand-written document used to miss
    for path, verb in [
        ("/v2/models/{model}/config", "get"),
        ("/v2/models/{model}/versions/{version}/config", "get"),
        ("/v2/models/{model}/stats", "get"),
        ("/v2/models/{model}/versions/{version}/stats", "get"),
        ("/v2/models/stats", "get"),
        ("/v2/repository/index", "post"),
        ("/v2/repository/models/{model}/load", "post"),
        ("/v2/repository/models/{model}/unload", "post"),
    ]:
        assert verb in paths[path], path
    assert paths["/v2/repository/models/{model}/load"]["post"]["x-scope"] == "admin"
    assert paths["/v2/health/live"]["get"]["security"] == []


async def test_every_documented_kserve_operation_is_routed(gateway) -> None:
    """Each KServe path of the document reaches its route (never 404/405 from the router)."""
    paths = (await gateway.http.get("/openapi.json")).json()["paths"]
    kserve = {p: ops for p, ops in paths.items() if p == "/v2" or p.startswith("/v2/")}
    assert len(kserve) >= 15
    for path, ops in kserve.items():
        concrete = path.replace("{model}", "add").replace("{version}", "1")
        for verb in ops:
            r = await gateway.http.request(verb.upper(), concrete, json={} if verb == "post" else None)
            assert r.status_code not in (404, 405), (verb, path, r.text)
