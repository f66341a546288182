"""Prediction-log sinks besides the registry (issue 18): a JSON-lines file with size-based rotation
and CloudEvents over HTTP. ``MODEL_SERVER_PREDICTION_LOG_SINKS`` selects the sinks (several at
once); each gets its own bounded queue and writer in :class:`~.prediction_logger.PredictionLogger`,
so a slow or failing sink never holds another back, and none ever blocks inference.

One record as JSON (:func:`record_json`, the same in both sinks)::

    {"model": "m", "version": 1, "tenant": "acme", "request_id": "...", "time": "<RFC 3339>",
     "error": "", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
     "raw_contents": "<base64 of the KServe v2 raw little-endian bytes; absent over the size cap>"}],
     "outputs": [...]}

CloudEvents (spec 1.0, structured content mode): ``specversion`` "1.0", ``id`` (a digest of the
record, so a batch retried after a failure repeats the same ids and a receiver can drop the
duplicates), ``source`` (``MODEL_SERVER_PREDICTION_LOG_CLOUDEVENTS_SOURCE``), ``type``
:data:`EVENT_TYPE`, ``time`` (when the request was served), ``subject`` ("<model>/<version>"),
``datacontenttype`` "application/json" and ``data`` (the record as above). Batched: one POST of
``application/cloudevents-batch+json`` (a JSON array) per batch; else one POST of
``application/cloudevents+json`` per record. Any status but 2xx is a failure (retried, then the
batch is dropped and counted).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.registry.v1 import registry_service_pb2 as registry_pb

EVENT_TYPE = "io.modelserve.prediction_log.v1"
"""The CloudEvents ``type`` of one logged prediction."""
SPEC_VERSION = "1.0"
EVENT_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


def _tensor_json(t: tensor_pb.Tensor) -> dict[str, Any]:
    out: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
    if t.raw_contents:
        out["raw_contents"] = base64.b64encode(t.raw_contents).decode("ascii")
    return out


def record_json(record: registry_pb.PredictionLog) -> dict[str, Any]:
    """The record as a JSON object (see the module docstring)."""
    return {
        "model": record.model,
        "version": record.version,
        "tenant": record.tenant,
        "request_id": record.request_id,
        "time": record.time.ToJsonString(),
        "error": record.error,
        "inputs": [_tensor_json(t) for t in record.inputs],
        "outputs": [_tensor_json(t) for t in record.outputs],
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class JsonLinesSink:
    """Appends one JSON object per line to ``path``; before a line would take the file past
    ``max_bytes`` the file is rotated (``path`` -> ``path.1`` -> ... -> ``path.<backups>``, the
    oldest deleted), so the files hold at most ``(backups + 1) * max_bytes`` (one line larger than
    ``max_bytes`` gets a file of its own). The file work runs in a worker thread."""

    name = "jsonl"

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._backups = backups

    async def write(self, records: Sequence[registry_pb.PredictionLog]) -> None:
        lines = [(_dumps(record_json(r)) + "\n").encode() for r in records]
        await asyncio.to_thread(self._append, lines)

    def _rotate(self) -> None:
        if self._backups == 0:
            self.path.unlink(missing_ok=True)
            return
        for i in range(self._backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def _append(self, lines: list[bytes]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        size = self.path.stat().st_size if self.path.exists() else 0
        pending: list[bytes] = []
        for line in lines:
            if size and size + len(line) > self._max_bytes:
                self._flush(pending)
                pending = []
                self._rotate()
                size = 0
            pending.append(line)
            size += len(line)
        self._flush(pending)

    def _flush(self, lines: list[bytes]) -> None:
        if lines:
            with open(self.path, "ab") as f:
                f.write(b"".join(lines))


def cloud_event(record: registry_pb.PredictionLog, source: str) -> dict[str, Any]:
    """One record as a structured-mode CloudEvent (see the module docstring)."""
    digest = hashlib.sha256(record.SerializeToString(deterministic=True)).hexdigest()[:32]
    return {
        "specversion": SPEC_VERSION,
        "id": digest,
        "source": source,
        "type": EVENT_TYPE,
        "time": record.time.ToJsonString(),
        "subject": f"{record.model}/{record.version}",
        "datacontenttype": "application/json",
        "data": record_json(record),
    }


class CloudEventsSink:
    """POSTs the records as CloudEvents to ``url`` (batched or one event per request)."""

    name = "cloudevents"

    def __init__(
        self,
        url: str,
        *,
        source: str,
        batched: bool,
        timeout_s: float,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url = url
        self._source = source
        self._batched = batched
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def write(self, records: Sequence[registry_pb.PredictionLog]) -> None:
        events = [cloud_event(r, self._source) for r in records]
        if self._batched:
            await self._post(_dumps(events), BATCH_CONTENT_TYPE)
            return
        for event in events:
            await self._post(_dumps(event), EVENT_CONTENT_TYPE)

    async def _post(self, body: str, content_type: str) -> None:
        reply = await self._client.post(
            self._url, content=body.encode(), headers={"content-type": f"{content_type}; charset=utf-8"}
        )
        if not 200 <= reply.status_code < 300:
            raise RuntimeError(f"CloudEvents endpoint answered HTTP {reply.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
