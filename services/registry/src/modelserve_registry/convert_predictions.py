"""Prediction logs and drift: protobuf <-> domain (prediction_logs.py, drift.py)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from modelserve.common.v1 import tensor_pb2 as tensor_pb
from modelserve.registry.v1 import registry_service_pb2 as registry_pb
from modelserve_registry import errors
from modelserve_registry.drift import FeatureScore, LoggedTensor
from modelserve_registry.store import MAX_TIME_US
from modelserve_registry.store_predictions import PredictionRecord


def tensor_from_pb(t: tensor_pb.Tensor) -> LoggedTensor:
    return LoggedTensor(name=t.name, datatype=t.datatype, shape=tuple(t.shape), raw=t.raw_contents)


def tensor_to_pb(t: LoggedTensor) -> tensor_pb.Tensor:
    return tensor_pb.Tensor(name=t.name, datatype=t.datatype, shape=list(t.shape), raw_contents=t.raw)


def time_us(ts: Timestamp, field: str) -> int:
    """Microseconds of a Timestamp within 1970..9999 (else INVALID_ARGUMENT naming the field)."""
    us = ts.seconds * 1_000_000 + ts.nanos // 1000
    if not 0 <= us <= MAX_TIME_US:
        raise errors.InvalidField(f"{field} must be within 1970-01-01..9999-12-31")
    return us


def record_from_pb(log: registry_pb.PredictionLog, i: int) -> PredictionRecord:
    return PredictionRecord(
        model=log.model,
        version=log.version,
        request_id=log.request_id,
        time_us=time_us(log.time, f"logs[{i}].time"),
        inputs=tuple(tensor_from_pb(t) for t in log.inputs),
        outputs=tuple(tensor_from_pb(t) for t in log.outputs),
        error=log.error,
    )


def record_to_pb(r: PredictionRecord) -> registry_pb.PredictionLog:
    ts = Timestamp()
    ts.FromMicroseconds(r.time_us)
    return registry_pb.PredictionLog(
        model=r.model,
        version=r.version,
        request_id=r.request_id,
        time=ts,
        inputs=[tensor_to_pb(t) for t in r.inputs],
        outputs=[tensor_to_pb(t) for t in r.outputs],
        tenant=r.tenant,
        error=r.error,
    )


def window_from_pb(request: registry_pb.ListPredictionLogsRequest) -> tuple[int | None, int | None]:
    start = time_us(request.start_time, "start_time") if request.HasField("start_time") else None
    end = time_us(request.end_time, "end_time") if request.HasField("end_time") else None
    return start, end


def drift_to_pb(scores: list[FeatureScore]) -> registry_pb.GetModelVersionDriftResponse:
    return registry_pb.GetModelVersionDriftResponse(
        features=[
            registry_pb.FeatureDrift(
                feature=s.feature, score=s.score, count=s.count, mean=s.mean, reference_mean=s.reference_mean
            )
            for s in scores
        ],
        max_score=max((s.score for s in scores), default=0.0),
    )
