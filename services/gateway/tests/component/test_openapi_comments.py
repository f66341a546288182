"""/openapi.json carries the proto comments: an operation's summary and description from its RPC's
leading comment, a schema's and a property's or query parameter's description from its message's
or field's. Expected texts are read from the .proto sources themselves, so a stale
proto_comments.json fails here as well as in `make proto-check`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelserve_gateway.openapi import proto_comments

PROTOS = Path(__file__).resolve().parents[4] / "protos" / "modelserve"
REGISTRY = PROTOS / "registry" / "v1" / "registry_service.proto"
ORCHESTRATOR = PROTOS / "orchestrator" / "v1" / "orchestrator_service.proto"
INFERENCE = PROTOS / "inference" / "v2" / "grpc_service.proto"


def comment_before(proto: Path, declaration: str, *, within: str | None = None) -> str:
    """The ``//`` lines right above the first line matching ``declaration`` (after the line
    matching ``within``, to pick a field of one message), as protoc keeps them."""
    lines = proto.read_text(encoding="utf-8").splitlines()
    start = 0
    if within is not None:
        start = next(i for i, line in enumerate(lines) if re.match(within, line.strip()))
    at = next(i for i in range(start, len(lines)) if re.match(declaration, lines[i].strip()))
    block: list[str] = []
    for line in reversed(lines[:at]):
        text = line.strip()
        if not text.startswith("//"):
            break
        block.insert(0, text[3:] if text.startswith("// ") else text[2:])
    assert block, f"{proto.name}: no comment above {declaration!r}"
    return "\n".join(block).strip()


@pytest.fixture
async def doc(gateway) -> dict:
    r = await gateway.http.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


@pytest.mark.parametrize(
    ("path", "verb", "proto", "rpc"),
    [
        ("/v1/models/{model}", "get", REGISTRY, "GetModel"),
        ("/v1/models", "get", REGISTRY, "ListModels"),
        ("/v1/models", "post", REGISTRY, "CreateModel"),
        ("/v1/pipelines/{pipeline}:run", "post", ORCHESTRATOR, "RunPipeline"),
    ],
)
async def test_operation_describes_its_rpc_from_the_proto_comment(doc, path, verb, proto, rpc) -> None:
    op = doc["paths"][path][verb]
    comment = comment_before(proto, rf"rpc {rpc}\(")
    assert op["description"].startswith(comment), op["description"]
    assert op["description"].endswith(f"`/{op['operationId'].rsplit('.', 1)[0]}/{rpc}`")
    first = " ".join(comment.split())
    assert op["summary"] and first.startswith(op["summary"].rstrip(".")), op["summary"]
    assert op["summary"].startswith(rpc), "the summary is the comment, not the method path"


@pytest.mark.parametrize(
    ("schema", "field", "proto", "message", "declaration"),
    [
        ("modelserve.registry.v1.Model", "shared", REGISTRY, r"message Model \{", r"bool shared = "),
        (
            "modelserve.registry.v1.Deployment",
            "shared",
            REGISTRY,
            r"message Deployment \{",
            r"bool shared = ",
        ),
        (
            "modelserve.orchestrator.v1.Pipeline",
            "inputs",
            ORCHESTRATOR,
            r"message Pipeline \{",
            r"repeated modelserve.common.v1.TensorSpec inputs = ",
        ),
    ],
)
async def test_schema_property_describes_its_field_from_the_proto_comment(
    doc, schema, field, proto, message, declaration
) -> None:
    expected = comment_before(proto, declaration, within=message)
    components = doc["components"]["schemas"]
    assert components[schema]["properties"][field]["description"] == expected


async def test_schema_and_query_parameter_carry_their_comments(doc) -> None:
    model = doc["components"]["schemas"]["modelserve.registry.v1.Model"]
    assert model["description"] == comment_before(REGISTRY, r"message Model \{")
    params = {p["name"]: p for p in doc["paths"]["/v1/models"]["get"]["parameters"]}
    expected = comment_before(REGISTRY, r"int32 page_size = ", within=r"message ListModelsRequest \{")
    assert params["page_size"]["description"] == expected
    path_param = doc["paths"]["/v1/models/{model}"]["get"]["parameters"][0]
    assert path_param["name"] == "model"
    assert path_param["description"] == comment_before(
        REGISTRY, r"string model = ", within=r"message GetModelRequest \{"
    )


async def test_kserve_operation_describes_its_rpc(doc) -> None:
    op = doc["paths"]["/v2/models/{model}/infer"]["post"]
    assert op["description"].startswith(comment_before(INFERENCE, r"rpc ModelInfer\("))


async def test_an_operation_without_a_comment_keeps_the_method_as_summary(doc) -> None:
    """The test service of the gateway's tests has no comments: nothing is invented."""
    ops = [
        op for item in doc["paths"].values() for op in item.values() if op["tags"][0].startswith("gwtest.")
    ]
    assert ops
    for op in ops:
        assert "description" not in op and op["summary"].startswith("/gwtest."), op


def test_proto_comments_cover_every_fronted_rpc() -> None:
    from modelserve_gateway.clients import FRONTED

    comments = proto_comments()
    missing = [
        f"{svc.full_name}.{m.name}"
        for svc, _ in FRONTED
        for m in svc.methods
        if f"{svc.full_name}.{m.name}" not in comments
    ]
    assert not missing, f"RPCs without a comment in proto_comments.json (run make proto): {missing}"


def test_the_gateway_package_ships_the_comments() -> None:
    """A wheel (the image's pip install) carries proto_comments.json, or /openapi.json fails there."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert "proto_comments.json" in pyproject["tool"]["setuptools"]["package-data"]["modelserve_gateway"]
