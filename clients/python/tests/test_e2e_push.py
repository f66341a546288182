"""push: a file (and a folder, packed as tar) uploaded over UploadModelVersion through the
gateway, the model created when missing, backend inferred, progress reported, deployed and
aliased; then inferred. The CLI's `models push` too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelserve_client import Client, InvalidArgument

from .conftest import ADMIN, FEATURES, Suite, model_ready, wait_until

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def push_key(suite: Suite) -> str:
    with Client(suite.url, api_key=ADMIN) as admin:
        admin.create_tenant("push-t")
        secret: str = admin.create_key("push-t", ["tenant-admin"])["secret"]
        return secret


def test_push_file_deploy_alias_infer(suite: Suite, push_key: str, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    with Client(suite.url, api_key=push_key, timeout=30) as c:
        mv = c.push(
            "push-clf",
            suite.artifacts / "clf.onnx",
            deploy=True,
            alias="production",
            progress=lambda sent, total: seen.append((sent, total)),
            chunk_bytes=256,
        )
        size = (suite.artifacts / "clf.onnx").stat().st_size
        assert mv["version"] == "1" and mv["backend"] == "onnx"
        assert mv["artifact_uri"].startswith("blob:sha256:")
        assert seen[-1] == (size, size) and len(seen) == -(-size // 256)
        assert c.get_deployment("push-clf")["targets"][0]["version"] == "1"
        assert c.get_alias("push-clf", "production")["version"] == "1"
        wait_until(lambda: model_ready(c, "push-clf"), 60, "pushed model ready")
        out = c.infer("push-clf", {"features": np.asarray(FEATURES, np.float32)})
        assert out["label"].shape == (1, 1)
        (tmp_path / "a.onnx").write_bytes(b"x")
        (tmp_path / "b.py").write_text("x = 1")
        with pytest.raises(ValueError, match="cannot tell the backend"):
            c.push("push-clf", tmp_path)  # a folder of mixed files: no single backend
    # a corrupt upload is refused and stores nothing
    with Client(suite.url, api_key=push_key, timeout=30) as c, pytest.raises(InvalidArgument):
        c.push("push-clf", suite.artifacts / "clf.onnx", artifact_sha256="0" * 64)


def test_cli_push(suite: Suite, push_key: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    env.update(
        {"MODELSERVE_URL": suite.url, "MODELSERVE_API_KEY": push_key, "MODELSERVE_CONFIG_DIR": str(tmp_path)}
    )
    exe = str(Path(sys.executable).parent / "modelserve")
    r = subprocess.run(
        [
            exe,
            "-o",
            "json",
            "models",
            "push",
            str(suite.artifacts / "clf.onnx"),
            "--name",
            "push-cli",
            "--deploy",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == "1"
