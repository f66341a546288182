"""Model artifacts end to end through the REAL gateway (REST and gRPC) in front of the real registry
(local artifact store, then S3 on a real moto server) and model server, all as processes: upload
an ONNX file (chunked REST body; client-streaming gRPC through the front door), its signature
filled from the file, deploy, the model server fetches the blob into its verified cache and
serves it, inference answers; download returns the same bytes with their sha256; another tenant
cannot download it."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve_common.testing import ServiceProcess, free_port
from modelserve_common.testing.s3server import MotoS3Server

pytestmark = [pytest.mark.e2e]
ROOT = Path(__file__).resolve().parents[2]
ADMIN = "e2e-artifacts-admin"
ADMIN_H = {"authorization": f"Bearer {ADMIN}"}
UPLOAD = "/modelserve.registry.v1.RegistryService/UploadModelVersion"
DOWNLOAD = "/modelserve.registry.v1.RegistryService/DownloadModelVersion"


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, f"{r.request.method} {r.request.url} -> {r.status_code} {r.text}"
    out: dict[str, Any] = r.json()
    return out


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module", params=["local", "s3"])
def store_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The registry's artifact store: the local default, or a real S3 server (moto, on a free port)."""
    if request.param == "local":
        yield {}
        return
    with MotoS3Server() as s3:
        s3.create_bucket("e2e-artifacts")
        s3.create_bucket("e2e-refs")
        yield {
            "REGISTRY_ARTIFACT_S3_ALLOWED": "e2e-refs/team",
            "REGISTRY_ARTIFACTS__KIND": "s3",
            "REGISTRY_ARTIFACTS__S3__BUCKET": "e2e-artifacts",
            "REGISTRY_ARTIFACTS__S3__ENDPOINT_URL": s3.endpoint_url,
            "REGISTRY_ARTIFACTS__S3__REGION": "us-east-1",
            "REGISTRY_ARTIFACTS__S3__ACCESS_KEY_ID": "testing",
            "REGISTRY_ARTIFACTS__S3__SECRET_ACCESS_KEY": "testing",
        }


@pytest.fixture(scope="module")
def suite(
    tmp_path_factory: pytest.TempPathFactory,
    store_env: dict[str, str],
) -> Iterator[tuple[httpx.Client, grpc.Channel, list[ServiceProcess]]]:
    tmp = tmp_path_factory.mktemp("artifacts")
    ports = {n: free_port() for n in ("registry", "model_server", "gateway", "http")}
    reg_target, ms_target = f"127.0.0.1:{ports['registry']}", f"127.0.0.1:{ports['model_server']}"
    common = {"PYTHONWARNINGS": "ignore"}
    specs = {
        "registry": {
            "REGISTRY_GRPC_PORT": str(ports["registry"]),
            "REGISTRY_METRICS_PORT": "-1",
            "REGISTRY_DATA_DIR": str(tmp / "reg"),
            "REGISTRY_WATCH_POLL_INTERVAL_S": "0.1",
            **store_env,
        },
        "model_server": {
            "MODEL_SERVER_GRPC_PORT": str(ports["model_server"]),
            "MODEL_SERVER_METRICS_PORT": "-1",
            "MODEL_SERVER_MODEL_REPOSITORY": str(ROOT / "models"),
            "MODEL_SERVER_REGISTRY_URL": reg_target,
            "MODEL_SERVER_DATA_DIR": str(tmp / "ms"),
        },
        "gateway": {
            "GATEWAY_GRPC_PORT": str(ports["gateway"]),
            "GATEWAY_HTTP_PORT": str(ports["http"]),
            "GATEWAY_METRICS_PORT": "-1",
            "GATEWAY_REGISTRY_URL": reg_target,
            "GATEWAY_MODEL_SERVER_URL": ms_target,
            "GATEWAY_ADMIN_API_KEY": ADMIN,
        },
    }
    procs = [
        ServiceProcess(f"modelserve_{n}", {**common, **env}, ports[n], cwd=tmp) for n, env in specs.items()
    ]
    try:
        for p in procs:
            p.start(timeout=90)
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{ports['http']}", timeout=30) as http,
            grpc.insecure_channel(f"127.0.0.1:{ports['gateway']}") as gw,
        ):
            yield http, gw, procs
    finally:
        for p in procs:
            p.stop()


def _key(http: httpx.Client, tenant: str) -> dict[str, str]:
    _ok(http.post("/v1/tenants", json={"name": tenant}, headers=ADMIN_H))
    r = http.post(
        f"/v1/tenants/{tenant}/apiKeys",
        json={"displayName": "e2e", "scopes": ["infer", "read", "write"]},
        headers=ADMIN_H,
    )
    return {"x-api-key": str(_ok(r)["secret"])}


def _deploy_and_infer(
    http: httpx.Client, who: dict[str, str], model: str, version: str, procs: list[ServiceProcess]
) -> None:
    _ok(
        http.put(
            f"/v1/models/{model}/deployment",
            json={"targets": [{"version": version, "weight": 100}]},
            headers=who,
        )
    )
    _wait(
        lambda: http.get(f"/v2/models/{model}/versions/{version}/ready", headers=who).status_code == 200,
        60,
        f"{model} v{version} ready\n" + procs[1].output()[-3000:],
    )
    body = {
        "inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]
    }
    out = _ok(http.post(f"/v2/models/{model}/infer", json=body, headers=who))
    assert {o["name"] for o in out["outputs"]} == {"probabilities", "label"}


def test_upload_deploy_infer_download_through_the_gateway(
    suite: tuple[httpx.Client, grpc.Channel, list[ServiceProcess]],
) -> None:
    http, gw, procs = suite
    data = (ROOT / "models/classifier/1/model.onnx").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    acme, other = _key(http, "acme"), _key(http, "other")
    _ok(http.post("/v1/models", json={"name": "clf"}, headers=acme))

    # REST: chunked body (no Content-Length), metadata in the query.
    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 7000):
            yield data[i : i + 7000]

    r = http.post(
        f"/v1/models/clf/versions:upload?backend=onnx&sha256={digest}", content=chunks(), headers=acme
    )
    v1 = _ok(r)["modelVersion"]
    assert v1["artifactUri"] == f"blob:sha256:{digest}" and v1["artifactSizeBytes"] == str(len(data))
    assert {i["name"] for i in v1["inputs"]} == {"features"}
    _deploy_and_infer(http, acme, "clf", "1", procs)

    r = http.get("/v1/models/clf/versions/1:download", headers=acme)
    assert r.status_code == 200 and r.content == data
    assert r.headers["x-artifact-sha256"] == digest
    assert r.headers["digest"] == "sha-256=" + base64.b64encode(bytes.fromhex(digest)).decode()
    assert http.get("/v1/models/clf/versions/1:download", headers=other).status_code == 404
    spec = '{"inputs": [{"name": "features", "datatype": "INT64", "shape": [-1, 4]}]}'
    r = http.post(
        "/v1/models/clf/versions:upload", params={"backend": "onnx", "spec": spec}, content=data, headers=acme
    )
    assert r.status_code == 400 and "input tensor 'features': datatype INT64 contradicts" in r.text, r.text
    r = http.post("/v1/models/clf/versions:upload?backend=onnx&spec=%7Bnope", content=data, headers=acme)
    assert r.status_code == 400 and "'spec' must be a ModelVersion as JSON" in r.text, r.text
    bad = http.post(
        "/v1/models/clf/versions:upload?backend=onnx&sha256=" + "0" * 64, content=data, headers=acme
    )
    assert bad.status_code == 400 and "sha256 mismatch" in bad.text

    # gRPC front door: client-streaming upload, server-streaming download.
    md = tuple(acme.items())
    upload = gw.stream_unary(
        UPLOAD,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=registry_pb.UploadModelVersionResponse.FromString,
    )

    def messages() -> Iterator[registry_pb.UploadModelVersionRequest]:
        meta = registry_pb.UploadMetadata(
            model="clf", model_version=registry_pb.ModelVersion(backend="onnx"), size_bytes=len(data)
        )
        yield registry_pb.UploadModelVersionRequest(metadata=meta)
        for i in range(0, len(data), 4096):
            yield registry_pb.UploadModelVersionRequest(chunk=data[i : i + 4096])

    v2 = upload(messages(), metadata=md, timeout=30).model_version
    assert (v2.version, v2.artifact_sha256) == (2, digest)
    download = gw.unary_stream(
        DOWNLOAD,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=registry_pb.DownloadModelVersionResponse.FromString,
    )
    got = list(
        download(registry_pb.DownloadModelVersionRequest(model="clf", version="2"), metadata=md, timeout=30)
    )
    assert got[0].metadata.sha256 == digest and b"".join(m.chunk for m in got[1:]) == data
    _deploy_and_infer(http, acme, "clf", "2", procs)


def test_directory_model_as_tar_archive_is_unpacked_and_served(
    suite: tuple[httpx.Client, grpc.Channel, list[ServiceProcess]],
) -> None:
    """A python model folder (model.py + a helper module it imports) packed as one tar, uploaded
    through the gRPC front door with its tensor specs; the tenant needs code_execution_allowed."""
    http, gw, procs = suite
    who = _key(http, "coder")
    _ok(http.patch("/v1/tenants/coder", json={"codeExecutionAllowed": True}, headers=ADMIN_H))
    _ok(http.post("/v1/models", json={"name": "lin"}, headers=who))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in {
            "model.py": "from pathlib import Path\nimport importlib.util as u\n"
            "spec = u.spec_from_file_location('helper', Path(__file__).parent / 'lib' / 'helper.py')\n"
            "helper = u.module_from_spec(spec); spec.loader.exec_module(helper)\n"
            "class Model:\n    async def predict(self, inputs):\n"
            "        return {'y': helper.double(inputs['x'])}\n",
            "lib/helper.py": "def double(x):\n    return x * 2\n",
        }.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = buf.getvalue()
    spec = registry_pb.ModelVersion(
        backend="python",
        artifact_format="tar",
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        outputs=[{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    )
    upload = gw.stream_unary(
        UPLOAD,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=registry_pb.UploadModelVersionResponse.FromString,
    )
    messages = [
        registry_pb.UploadModelVersionRequest(
            metadata=registry_pb.UploadMetadata(model="lin", model_version=spec)
        ),
        registry_pb.UploadModelVersionRequest(chunk=archive),
    ]
    v = upload(iter(messages), metadata=tuple(who.items()), timeout=30).model_version
    assert v.artifact_format == "tar"
    _ok(
        http.put(
            "/v1/models/lin/deployment", json={"targets": [{"version": "1", "weight": 100}]}, headers=who
        )
    )
    _wait(
        lambda: http.get("/v2/models/lin/ready", headers=who).status_code == 200,
        60,
        "lin ready\n" + procs[1].output()[-3000:],
    )
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.5, -2.0]}]}
    out = _ok(http.post("/v2/models/lin/infer", json=body, headers=who))
    assert out["outputs"][0]["data"] == [3.0, -4.0]


def test_s3_reference_is_fetched_through_the_registry_verified_and_served(
    suite: tuple[httpx.Client, grpc.Channel, list[ServiceProcess]], store_env: dict[str, str]
) -> None:
    """An s3://bucket/key version (REGISTRY_ARTIFACT_S3_ALLOWED) deploys: the model server fetches
    it through the registry, which reads S3 and verifies the digest; a swapped object FAILS."""
    if not store_env:
        pytest.skip("needs the S3 server")
    import boto3

    http, _, procs = suite
    data = (ROOT / "models/classifier/1/model.onnx").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    s3 = boto3.client(
        "s3",
        endpoint_url=store_env["REGISTRY_ARTIFACTS__S3__ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.put_object(Bucket="e2e-refs", Key="team/clf.onnx", Body=data)
    s3.put_object(Bucket="e2e-refs", Key="team/swapped.onnx", Body=data)  # not the bytes v2 names
    _ok(http.post("/v1/models", json={"name": "clf-spec"}, headers=ADMIN_H))
    spec = _ok(http.post("/v1/models/clf-spec/versions:upload?backend=onnx", content=data, headers=ADMIN_H))
    fields = {k: spec["modelVersion"][k] for k in ("inputs", "outputs")}
    _ok(http.post("/v1/models", json={"name": "clf-s3"}, headers=ADMIN_H))
    other = hashlib.sha256(data + b"!").hexdigest()  # not in the model server's cache either
    for key, named in (("clf", digest), ("swapped", other)):
        version = {
            "backend": "onnx",
            "artifactUri": f"s3://e2e-refs/team/{key}.onnx",
            "artifactSha256": named,
        }
        _ok(http.post("/v1/models/clf-s3/versions", json={**version, **fields}, headers=ADMIN_H))
    refused = http.post(
        "/v1/models/clf-s3/versions",
        json={
            "backend": "onnx",
            "artifactUri": "s3://e2e-artifacts/x.onnx",
            "artifactSha256": digest,
            **fields,
        },
        headers=ADMIN_H,
    )
    assert refused.status_code == 400 and "REGISTRY_ARTIFACT_S3_ALLOWED" in refused.text, refused.text
    _deploy_and_infer(http, ADMIN_H, "clf-s3", "1", procs)
    r = http.get("/v1/models/clf-s3/versions/1:download", headers=ADMIN_H)
    assert r.status_code == 200 and r.content == data

    _ok(
        http.put(
            "/v1/models/clf-s3/deployment",
            json={"targets": [{"version": "2", "weight": 100}]},
            headers=ADMIN_H,
        )
    )
    _wait(
        lambda: (
            _ok(http.get("/v1/models/clf-s3/versions/2", headers=ADMIN_H))["modelVersion"].get("status")
            == "STATUS_FAILED"
        ),
        60,
        "the swapped s3 object's version FAILED\n" + procs[1].output()[-3000:],
    )
    failed = _ok(http.get("/v1/models/clf-s3/versions/2", headers=ADMIN_H))["modelVersion"]
    assert "digest" in failed["statusMessage"] and "swapped" not in failed["statusMessage"]
