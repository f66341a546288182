"""Test model repository for the model server tests: small Python models written into a folder."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from modelserve.inference.v2 import model_config_pb2 as config_pb
from modelserve_model_server.settings import ModelServerSettings

ALL_DATATYPES = [
    ("BOOL", "TYPE_BOOL"),
    ("UINT8", "TYPE_UINT8"),
    ("UINT16", "TYPE_UINT16"),
    ("UINT32", "TYPE_UINT32"),
    ("UINT64", "TYPE_UINT64"),
    ("INT8", "TYPE_INT8"),
    ("INT16", "TYPE_INT16"),
    ("INT32", "TYPE_INT32"),
    ("INT64", "TYPE_INT64"),
    ("FP16", "TYPE_FP16"),
    ("BF16", "TYPE_BF16"),
    ("FP32", "TYPE_FP32"),
    ("FP64", "TYPE_FP64"),
    ("BYTES", "TYPE_STRING"),
]

IDENTITY_PY = """
class Model:
    async def predict(self, inputs):
        return {"OUTPUT0": inputs["INPUT0"]}
"""

# Records every executed tag (and batch size) in ran.log next to itself; sleeps `delay_s` per batch.
SLOW_PY = """
import asyncio
import numpy as np

class Model:
    def load(self):
        self.delay = float(self.parameters.get("delay_s", "0.2"))
        self.log = self.version_dir / "ran.log"

    async def predict(self, inputs):
        x = inputs["x"]
        with open(self.log, "a") as f:
            f.write(" ".join(str(int(v)) for v in x.reshape(-1)) + "\\n")
        await asyncio.sleep(self.delay)
        return {"y": x * 10}
"""

FAILING_PY = """
class Model:
    def predict(self, inputs):
        raise ValueError("boom from the model")
"""

ADDSUB_PY = """
class Model:
    async def predict(self, inputs):
        a, b = inputs["A"], inputs["B"]
        return {"SUM": a + b, "DIFF": a - b}
"""


def write_model(
    repo: Path, name: str, config: str, code: str | None = None, versions: tuple[int, ...] = (1,)
) -> Path:
    d = repo / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.pbtxt").write_text(textwrap.dedent(config))
    for v in versions:
        (d / str(v)).mkdir(exist_ok=True)
        if code is not None:
            (d / str(v) / "model.py").write_text(textwrap.dedent(code))
    return d


def build_repo(repo: Path) -> Path:
    for dt, cfg in ALL_DATATYPES:
        write_model(
            repo,
            f"identity_{dt.lower()}",
            f"""
            backend: "python"
            max_batch_size: 8
            input [ {{ name: "INPUT0", data_type: {cfg}, dims: [ -1 ] }} ]
            output [ {{ name: "OUTPUT0", data_type: {cfg}, dims: [ -1 ] }} ]
            dynamic_batching {{ }}
            """,
            IDENTITY_PY,
        )
    write_model(
        repo,
        "slow",
        """
        backend: "python"
        max_batch_size: 8
        input [ { name: "x", data_type: TYPE_INT64, dims: [ 1 ] } ]
        output [ { name: "y", data_type: TYPE_INT64, dims: [ 1 ] } ]
        dynamic_batching {
          priority_levels: 2
          default_priority_level: 2
          default_queue_policy { max_queue_size: 4, allow_timeout_override: true }
        }
        parameters { key: "delay_s" value: { string_value: "0.6" } }
        """,
        SLOW_PY,
    )
    write_model(
        repo,
        "addsub",
        """
        backend: "python"
        max_batch_size: 0
        input [ { name: "A", data_type: TYPE_FP32, dims: [ 4 ] },
                { name: "B", data_type: TYPE_FP32, dims: [ 4 ] } ]
        output [ { name: "SUM", data_type: TYPE_FP32, dims: [ 4 ] },
                 { name: "DIFF", data_type: TYPE_FP32, dims: [ 4 ] } ]
        """,
        ADDSUB_PY,
        versions=(1, 2),
    )
    write_model(
        repo,
        "failing",
        """
        backend: "python"
        max_batch_size: 0
        input [ { name: "x", data_type: TYPE_FP32, dims: [ 1 ] } ]
        output [ { name: "y", data_type: TYPE_FP32, dims: [ 1 ] } ]
        """,
        FAILING_PY,
    )
    return repo


def make_settings(repo: Path, **over: Any) -> ModelServerSettings:
    base: dict[str, Any] = dict(
        grpc_port=0,
        grpc_host="127.0.0.1",
        metrics_port=-1,
        model_repository=repo,
        shutdown_grace_s=0.5,
        access_log=False,
        max_message_bytes=1024 * 1024,
    )
    base.update(over)
    return ModelServerSettings(**base)


def xy_config(backend: str = "python") -> config_pb.ModelConfig:
    """A config with one FP32 input ``x`` and output ``y`` of shape [1], no batching (for models
    loaded through ModelManager.load_version with a fake backend)."""
    cfg = config_pb.ModelConfig(backend=backend, max_batch_size=0)
    cfg.input.add(name="x", data_type=config_pb.TYPE_FP32, dims=[1])
    cfg.output.add(name="y", data_type=config_pb.TYPE_FP32, dims=[1])
    return cfg


class ByteSource:
    """An artifact download for the cache tests: serves bytes in ``chunk``-sized pieces, yielding
    to the loop between them (so concurrent callers overlap), and counts the downloads."""

    def __init__(self, data: bytes, chunk: int = 4096) -> None:
        self.data = data
        self.chunk = chunk
        self.downloads = 0

    async def fetch(self) -> AsyncIterator[bytes]:
        self.downloads += 1
        for i in range(0, len(self.data), self.chunk):
            await asyncio.sleep(0)
            yield self.data[i : i + self.chunk]
