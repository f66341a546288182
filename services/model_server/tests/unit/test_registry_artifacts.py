"""Registry artifacts: the documented sha256 of files and folders, verified private copies, and the
model config built from a registry version."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.inference.v2 import model_config_pb2 as config_pb
from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve_model_server.artifacts import (
    ArtifactError,
    ArtifactStore,
    artifact_sha256,
    model_config,
    path_from_uri,
)
from modelserve_model_server.config import spec_from_config


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "model.py").write_text("class Model: ...\n")
    (root / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 10)
    (root / "B.txt").write_text("upper case sorts first in C order\n")
    return root


def _record(uri: str, sha: str, **over: object) -> reg_pb.ModelVersion:
    fields: dict[str, object] = dict(
        artifact_uri=uri,
        artifact_sha256=sha,
        backend="python",
        inputs=[tensor_pb.TensorSpec(name="x", datatype="FP32", shape=[-1, 4])],
        outputs=[tensor_pb.TensorSpec(name="s", datatype="BYTES", shape=[-1, 1])],
        batching=reg_pb.BatchingConfig(max_batch_size=8, preferred_batch_sizes=[4], max_queue_delay_us=100),
    )
    fields.update(over)
    return reg_pb.ModelVersion(**fields)  # type: ignore[arg-type]


def test_artifact_sha256_of_folder_matches_documented_shell_pipeline(tmp_path: Path) -> None:
    root = _tree(tmp_path / "art")
    shell = subprocess.run(
        "find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum",
        shell=True,
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[0]
    assert artifact_sha256(root) == shell


def test_artifact_sha256_of_file_is_sha256_of_bytes(tmp_path: Path) -> None:
    f = tmp_path / "m.onnx"
    f.write_bytes(b"\x00onnx" * 1000)
    assert artifact_sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest()


async def test_stage_copies_verified_folder_and_single_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "staged", [tmp_path])
    root = _tree(tmp_path / "art")
    staged = await store.stage("m", 3, _record(f"file://{root}", artifact_sha256(root)))
    assert staged.version_dir == tmp_path / "staged" / "m" / "3"
    assert (staged.version_dir / "sub" / "weights.bin").read_bytes() == (
        root / "sub" / "weights.bin"
    ).read_bytes()
    single = tmp_path / "anything.py"
    single.write_text("class Model: ...\n")
    staged = await store.stage("m", 4, _record(f"file://{single}", artifact_sha256(single)))
    assert (staged.version_dir / "model.py").read_text() == "class Model: ...\n"  # the backend's file name


async def test_stage_sha256_mismatch_raises_and_leaves_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "staged", [tmp_path])
    f = tmp_path / "m.py"
    f.write_text("x = 1\n")
    with pytest.raises(ArtifactError, match="sha256 mismatch .* registry expects \\(0{64}\\)") as err:
        await store.stage("m", 1, _record(f"file://{f}", "0" * 64))
    # the digest the file really has is not revealed
    assert hashlib.sha256(f.read_bytes()).hexdigest() not in str(err.value)
    assert list((tmp_path / "staged" / "m").iterdir()) == []


async def test_stage_missing_artifact_or_bad_uri_raises(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "staged", [tmp_path])
    with pytest.raises(ArtifactError, match="regular file or directory"):
        await store.stage("m", 1, _record(f"file://{tmp_path}/nope", "0" * 64))
    for uri in ("s3://bucket/m.onnx", "file://host/m.onnx", "file:///a/../etc/passwd"):
        with pytest.raises(ArtifactError):
            path_from_uri(uri, [tmp_path])


def test_model_config_drops_batch_dim_maps_types_and_applies_overrides() -> None:
    cfg = model_config(
        "m",
        _record("file:///x", "0" * 64),
        reg_pb.BatchingConfig(max_batch_size=16, max_queue_size=7),
    )
    assert cfg.backend == "python" and cfg.max_batch_size == 16
    assert list(cfg.input[0].dims) == [4] and cfg.input[0].data_type == config_pb.TYPE_FP32
    assert cfg.output[0].data_type == config_pb.TYPE_STRING
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 100
    assert cfg.dynamic_batching.default_queue_policy.max_queue_size == 7
    spec = spec_from_config(cfg, name="m")  # the model server accepts it as it is
    assert spec.batching.dynamic and spec.max_batch_size == 16


def test_model_config_without_batching_keeps_shapes_and_onnx_backend() -> None:
    rec = _record("file:///x", "0" * 64, backend="onnx", batching=reg_pb.BatchingConfig(max_batch_size=0))
    cfg = model_config("m", rec)
    assert cfg.backend == "onnxruntime" and list(cfg.input[0].dims) == [-1, 4]
    assert not cfg.HasField("dynamic_batching")


def test_model_config_rejects_triton_and_missing_batch_dim() -> None:
    with pytest.raises(ArtifactError, match="backend 'triton'"):
        model_config("m", _record("file:///x", "0" * 64, backend="triton"))
    rec = _record("file:///x", "0" * 64, inputs=[tensor_pb.TensorSpec(name="x", datatype="FP32")])
    with pytest.raises(ArtifactError, match="must start with the batch dimension"):
        model_config("m", rec)


async def test_stage_refuses_uri_longer_than_the_setting(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("x = 1\n")
    store = ArtifactStore(tmp_path / "staged", [tmp_path], max_uri_length=len(f"file://{f}") - 1)
    with pytest.raises(ArtifactError, match="too long"):
        await store.stage("m", 1, _record(f"file://{f}", artifact_sha256(f)))
    roomy = ArtifactStore(tmp_path / "staged", [tmp_path], max_uri_length=len(f"file://{f}"))
    assert (await roomy.stage("m", 1, _record(f"file://{f}", artifact_sha256(f)))).sha256 == artifact_sha256(
        f
    )


async def test_stage_refuses_folder_file_linking_out_of_the_roots(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    art = _tree(root / "art")
    outside.mkdir()
    (outside / "secret").write_bytes(b"s" * 777)
    (art / "leak").symlink_to(outside / "secret")
    store = ArtifactStore(tmp_path / "staged", [root])
    with pytest.raises(ArtifactError, match="symbolic link") as err:
        await store.stage("m", 1, _record(f"file://{art}", "0" * 64))
    assert "777" not in str(err.value) and "secret" not in str(err.value)
    assert list((tmp_path / "staged" / "m").iterdir()) == []


async def test_stage_s3_reference_fetches_through_the_registry_and_verifies(tmp_path: Path) -> None:
    from collections.abc import AsyncIterator

    from modelserve_model_server.cache import ArtifactCache

    data = b"\x00onnx" * 5000
    asked: list[tuple[str, int]] = []
    served = {1: data, 2: b"other bytes"}

    async def download(model: str, version: int) -> AsyncIterator[bytes]:
        asked.append((model, version))
        yield served[version]

    store = ArtifactStore(
        tmp_path / "staged", [tmp_path], cache=ArtifactCache(tmp_path / "cache", 10**8), download=download
    )
    digest = hashlib.sha256(data).hexdigest()
    record = _record("s3://refs/m.onnx", digest, backend="onnx")
    staged = await store.stage("m", 1, record)
    assert staged.sha256 == digest and asked == [("m", 1)]
    assert b"".join(p.read_bytes() for p in staged.version_dir.rglob("*") if p.is_file()) == data
    with pytest.raises(ArtifactError):  # the bytes served do not have the version's digest
        await store.stage(
            "m", 2, _record("s3://refs/x.onnx", hashlib.sha256(b"x").hexdigest(), backend="onnx")
        )
    with pytest.raises(ArtifactError, match="needs artifact_sha256"):
        await store.stage("m", 3, _record("s3://refs/m.onnx", "", backend="onnx"))
