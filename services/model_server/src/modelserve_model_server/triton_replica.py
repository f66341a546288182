"""One Triton replica: its channels (bytes-in/bytes-out multicallables), load and circuit-breaker
state, and Triton's statuses as ours. The pool (triton_pool.py) balances, ejects and probes."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import grpc

from modelserve_common.channels import channel_options
from modelserve_common.errors import ServiceError, from_status
from modelserve_common.tls import channel_credentials
from modelserve_model_server.settings import ModelServerSettings

# --------------------------------------------------------------------------- errors


def triton_error(exc: grpc.aio.AioRpcError) -> ServiceError:
    """Triton's status passed through: same code, Triton's own message."""
    code = exc.code()
    return from_status(code, exc.details() or code.name)


# --------------------------------------------------------------------------- replicas


_NOT_FOR_TRITON = frozenset({"grpc.enable_retries", "grpc.service_config"})


def _channel_options(settings: ModelServerSettings, index: int) -> list[tuple[str, Any]]:
    # Message-size limits and keepalive as every channel of ours has them (modelserve_common.channels).
    common = [opt for opt in channel_options(settings) if opt[0] not in _NOT_FOR_TRITON]
    return common + [
        # Our own retry/ejection logic applies; the channel's would buffer every request for replay.
        ("grpc.enable_retries", 0),
        # Reconnect quickly after Triton restarts (defaults back off up to 120 s).
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        # One TCP connection per channel: channels with equal args otherwise share a subchannel.
        ("grpc.use_local_subchannel_pool", 1),
        ("modelserve.triton_channel", index),
    ]


def connect(target: str, settings: ModelServerSettings) -> Replica:
    """``target``'s replica with ``triton_channels_per_endpoint`` channels (TLS as the settings
    say), not yet probed."""
    creds = channel_credentials(settings)
    channels = []
    for i in range(settings.triton_channels_per_endpoint):
        opts = _channel_options(settings, i)
        channels.append(
            grpc.aio.secure_channel(target, creds, options=opts)
            if creds is not None
            else grpc.aio.insecure_channel(target, options=opts)
        )
    return Replica(target=target, channels=channels)


@dataclass(eq=False)
class Replica:
    """One Triton endpoint: its channels, load and circuit-breaker state."""

    target: str
    channels: list[grpc.aio.Channel]
    outstanding: int = 0
    ejected: bool = False
    ejected_until: float = 0.0
    failures: int = 0
    ready: bool = False
    models: dict[str, str] = field(default_factory=dict)
    _rr: itertools.count[int] = field(default_factory=itertools.count)
    _unary: dict[str, list[grpc.aio.UnaryUnaryMultiCallable[Any, Any]]] = field(default_factory=dict)
    _probe: asyncio.Task[bool] | None = None

    def unary(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        calls = self._unary.get(method)
        if calls is None:
            calls = [
                ch.unary_unary(method, request_serializer=None, response_deserializer=None)
                for ch in self.channels
            ]
            self._unary[method] = calls
        return calls[next(self._rr) % len(calls)]

    def stream(self, method: str) -> grpc.aio.StreamStreamMultiCallable[Any, Any]:
        channel = self.channels[next(self._rr) % len(self.channels)]
        return channel.stream_stream(method, request_serializer=None, response_deserializer=None)
