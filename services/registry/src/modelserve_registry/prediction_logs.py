"""Prediction logs and input drift: the rules behind WritePredictionLogs (in-cluster callers only:
the model server's prediction logger), ListPredictionLogs (the model's own tenant or a trusted
caller; another tenant's model, shared or not, is NOT_FOUND like a missing one: logs hold other
callers' inputs), SetDriftReference and GetModelVersionDrift (drift.py computes), the retention
sweep and the drift gauge."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from prometheus_client import Counter, Gauge

from modelserve_common.identity import Caller
from modelserve_registry import drift, errors
from modelserve_registry.core import ServiceCore
from modelserve_registry.domain import Model, PredictionLogging
from modelserve_registry.store import MAX_TIME_US, StoreTx, now_us
from modelserve_registry.store_predictions import LogQuery, PredictionLogStore, PredictionRecord
from modelserve_registry.validation import check_name, require

log = structlog.get_logger(__name__)

DRIFT_SCORE = Gauge(
    "modelserve_registry_feature_drift_score",
    "Population stability index of a deployed version's logged inputs against its drift reference, "
    "per feature (refreshed every drift_refresh_interval_s).",
    ["model", "version", "feature"],
)
LOGS_STORED = Counter("modelserve_registry_prediction_logs_stored_total", "Prediction log records stored.")
LOGS_REFUSED = Counter(
    "modelserve_registry_prediction_logs_refused_total",
    "Prediction log records not stored, by reason (unknown_model: the model no longer exists).",
    ["reason"],
)
LOGS_SWEPT = Counter(
    "modelserve_registry_prediction_logs_swept_total",
    "Prediction log records deleted by the retention sweep.",
)


@dataclass(frozen=True)
class PredictionLimits:
    max_batch: int = 1000
    max_record_bytes: int = 1024 * 1024
    retention_s: float = 7 * 86400.0
    sweep_batch: int = 10_000
    drift_window_s: float = 3600.0
    max_drift_window_s: float = 30 * 86400.0
    drift_max_records: int = 10_000
    drift_max_features: int = 256
    drift_bins: int = 10


def check_prediction_logging(field: str, p: PredictionLogging) -> None:
    """sample_ratio within 0..1; max_record_bytes >= 0 (0: the model server's default; the
    registry also caps what it stores at REGISTRY_PREDICTION_LOG_MAX_RECORD_BYTES)."""
    if not 0.0 <= p.sample_ratio <= 1.0:
        raise errors.InvalidField(f"{field}.sample_ratio must be within 0..1, got {p.sample_ratio}")
    if p.max_record_bytes < 0:
        raise errors.InvalidField(f"{field}.max_record_bytes must be >= 0, got {p.max_record_bytes}")


def _cap(record: PredictionRecord, max_bytes: int) -> PredictionRecord:
    """A record whose tensors' raw bytes exceed ``max_bytes`` keeps their datatype and shape only."""
    size = sum(len(t.raw) for t in (*record.inputs, *record.outputs))
    if size <= max_bytes:
        return record
    strip = tuple(drift.LoggedTensor(t.name, t.datatype, t.shape) for t in record.inputs)
    out = tuple(drift.LoggedTensor(t.name, t.datatype, t.shape) for t in record.outputs)
    return PredictionRecord(
        model=record.model,
        version=record.version,
        request_id=record.request_id,
        time_us=record.time_us,
        inputs=strip,
        outputs=out,
        error=record.error,
    )


def _token(time_us: int, rid: str, fingerprint: str) -> str:
    raw = json.dumps({"t": time_us, "i": rid, "f": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _after(token: str, fingerprint: str) -> tuple[int, str] | None:
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        after, fp = (int(data["t"]), str(data["i"])), str(data["f"])
    except Exception:
        raise errors.InvalidField("page_token is not a token this registry issued") from None
    if fp != fingerprint:
        raise errors.InvalidField("page_token was issued for a different model, version or time range")
    return after


class PredictionLogOps(ServiceCore):
    _predictions: PredictionLogStore | None = None
    _prediction_limits: PredictionLimits = PredictionLimits()

    def use_prediction_logs(self, limits: PredictionLimits) -> None:
        self._predictions = PredictionLogStore(self._store)
        self._prediction_limits = limits

    def _logs(self) -> PredictionLogStore:
        if self._predictions is None:
            self.use_prediction_logs(self._prediction_limits)
        assert self._predictions is not None
        return self._predictions

    async def _own_model(self, tx: StoreTx, caller: Caller, name: str) -> Model:
        """The model if the caller's tenant owns it (trusted callers: any); else NOT_FOUND."""
        model = await self._model(tx, caller, name)
        if not caller.can_see(model.tenant):
            raise errors.ModelNotFound(f"model {name!r} not found")
        return model

    # -- writing -------------------------------------------------------------------------------
    async def write_prediction_logs(self, caller: Caller, records: list[PredictionRecord]) -> int:
        if not caller.is_trusted:
            raise errors.PlatformOnly("WritePredictionLogs is for in-cluster callers only")
        limits = self._prediction_limits
        if len(records) > limits.max_batch:
            raise errors.InvalidField(f"logs: at most {limits.max_batch} records a call, got {len(records)}")
        for i, r in enumerate(records):
            check_name(f"logs[{i}].model", r.model)
            if r.version <= 0:
                raise errors.InvalidField(f"logs[{i}].version must be > 0, got {r.version}")
            if not 0 <= r.time_us <= MAX_TIME_US:
                raise errors.InvalidField(f"logs[{i}].time is outside 1970..9999")
            self._text(f"logs[{i}].request_id", r.request_id)
            self._text(f"logs[{i}].error", r.error)
        async with self._logs().transaction(write=True) as tx:
            owners = await tx.model_tenants({r.model for r in records})
            stored = 0
            for r in records:
                if r.model not in owners:
                    LOGS_REFUSED.labels("unknown_model").inc()
                    continue
                capped = _cap(r, limits.max_record_bytes)
                await tx.insert(dataclasses.replace(capped, tenant=owners[r.model], id=uuid.uuid4().hex))
                stored += 1
        LOGS_STORED.inc(stored)
        return stored

    # -- reading -------------------------------------------------------------------------------
    async def list_prediction_logs(
        self,
        caller: Caller,
        model_name: str,
        version: int,
        window: tuple[int | None, int | None],
        page_size: int,
        page_token: str,
    ) -> tuple[list[PredictionRecord], str]:
        require(caller, "read")
        if version < 0:
            raise errors.InvalidField(f"version must be >= 0, got {version}")
        start_us, end_us = window
        page = self._page("", page_size, "")
        fingerprint = f"{model_name}|{version}|{start_us}|{end_us}"
        after = _after(page_token, fingerprint)
        async with self._store.transaction(write=False) as stx:
            await self._own_model(stx, caller, model_name)
        async with self._logs().transaction(write=False) as tx:
            found = await tx.query(LogQuery(model_name, version, start_us, end_us, after, page.size))
        token = _token(found[-1].time_us, found[-1].id, fingerprint) if len(found) == page.size else ""
        return found, token

    # -- drift ---------------------------------------------------------------------------------
    async def set_drift_reference(
        self, caller: Caller, model_name: str, ref: str, sample: list[drift.LoggedTensor], first_n: int
    ) -> list[str]:
        require(caller, "write")
        limits = self._prediction_limits
        if first_n < 0 or first_n > limits.drift_max_records:
            raise errors.InvalidField(
                f"from_logged_requests must be within 0..{limits.drift_max_records}, got {first_n}"
            )
        async with self._store.transaction(write=False) as stx:
            model = await self._model(stx, caller, model_name, write=True)
            version = (await self._version(stx, model, ref)).version
        samples: list[Sequence[drift.LoggedTensor]] = [sample]
        if first_n:
            async with self._logs().transaction(write=False) as tx:
                samples = [r.inputs for r in await tx.oldest(model.name, version, first_n)]
        reference = await asyncio.to_thread(
            drift.build_reference, samples, limits.drift_max_features, limits.drift_bins
        )
        if not reference:
            raise errors.InvalidField(
                "the reference has no numeric features: give a sample of 1-D or 2-D numeric inputs "
                "(or from_logged_requests N once requests of this version are logged)"
            )
        async with self._logs().transaction(write=True) as tx:
            await tx.set_reference(model.name, version, reference, now_us())
        log.info("drift.reference_set", model=model.name, version=version, features=len(reference))
        return list(reference)

    async def model_version_drift(
        self, caller: Caller, model_name: str, ref: str, window_s: float | None
    ) -> list[drift.FeatureScore]:
        require(caller, "read")
        limits = self._prediction_limits
        window = limits.drift_window_s if window_s is None else window_s
        if not 0 < window <= limits.max_drift_window_s:
            raise errors.InvalidField(
                f"window must be within (0, {limits.max_drift_window_s}] s, got {window}"
            )
        async with self._store.transaction(write=False) as stx:
            model = await self._own_model(stx, caller, model_name)
            version = (await self._version(stx, model, ref)).version
        return await self._drift(model.name, version, window)

    async def _drift(self, model: str, version: int, window_s: float) -> list[drift.FeatureScore]:
        limits = self._prediction_limits
        start = now_us() - int(window_s * 1e6)
        async with self._logs().transaction(write=False) as tx:
            reference = await tx.reference(model, version)
            if reference is None:
                raise errors.InvalidTransition(
                    f"model {model!r} version {version} has no drift reference: set one with "
                    "SetDriftReference"
                )
            records = await tx.query(LogQuery(model, version, start, None, None, limits.drift_max_records))
        samples = [r.inputs for r in records]
        return await asyncio.to_thread(drift.score_window, reference, samples, limits.drift_max_features)

    # -- background ----------------------------------------------------------------------------
    async def sweep_prediction_logs(self) -> int:
        """Deletes records older than the retention, ``sweep_batch`` a transaction (so no
        transaction holds a huge delete); returns how many."""
        limits = self._prediction_limits
        cutoff = now_us() - int(limits.retention_s * 1e6)
        total = 0
        while True:
            async with self._logs().transaction(write=True) as tx:
                deleted = max(await tx.delete_before(cutoff, limits.sweep_batch), 0)
            total += deleted
            LOGS_SWEPT.inc(deleted)
            if deleted < limits.sweep_batch:
                return total

    async def refresh_drift_metrics(self) -> None:
        """Sets the drift gauge for every deployed version with a reference (labels of versions
        no longer deployed or without a reference are removed: the label set stays bounded)."""
        async with self._store.transaction(write=False) as stx:
            deployed = {(d.model, t.version) for d in await stx.list_deployments(None) for t in d.targets}
        async with self._logs().transaction(write=False) as tx:
            referenced = set(await tx.referenced_versions())
        scores = {}
        for model, version in sorted(deployed & referenced):
            scores[(model, version)] = await self._drift(
                model, version, self._prediction_limits.drift_window_s
            )
        DRIFT_SCORE.clear()
        for (model, version), features in scores.items():
            for f in features:
                DRIFT_SCORE.labels(model, str(version), f.feature).set(f.score)
