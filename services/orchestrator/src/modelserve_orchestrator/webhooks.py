"""Webhooks the Standard Webhooks way: ``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of id.timestamp.body>``, one per secret, space-separated), retried with
exponential backoff and jitter on non-2xx or timeout, stopped by 410 Gone, every attempt recorded
(before it is sent, as "sending", and again with its outcome).

SSRF: destinations whose addresses are not global (private, loopback, link-local, metadata, CGNAT,
ULA, multicast, reserved) are refused unless the allow-list names them; the check runs when the
webhook is given and again at connect time, on the addresses the request then actually uses (the
request goes to the checked IP, so DNS rebinding between check and connect cannot redirect it)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog

from modelserve_common.identity import PLATFORM_OWNER
from modelserve_orchestrator.domain import (
    DeliveryState,
    Execution,
    ExecutionState,
    Pipeline,
    WebhookAttempt,
    WebhookEvent,
)
from modelserve_orchestrator.errors import WebhookRefused
from modelserve_orchestrator.metrics import observe_webhook_attempt
from modelserve_orchestrator.store import OrchestratorStore
from modelserve_orchestrator.store_deliveries import DueDelivery, NewDelivery

log = structlog.get_logger(__name__)

METADATA_HOSTS = {"metadata", "metadata.google.internal", "metadata.goog", "instance-data"}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]


def secret_key(secret: str) -> bytes:
    """``whsec_<base64>`` secrets are base64; anything else is used as UTF-8 text."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            pass
    return secret.encode()


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: one ``v1,<sig>`` per secret."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    sigs = [
        "v1," + base64.b64encode(hmac.new(secret_key(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets
    ]
    return " ".join(sigs)


class AllowList:
    def __init__(self, entries: Sequence[str]) -> None:
        self._hosts: set[str] = set()
        self._nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for e in entries:
            try:
                self._nets.append(ipaddress.ip_network(e, strict=False))
            except ValueError:
                self._hosts.add(e.lower().rstrip("."))

    def allows(self, host: str, ip: IPAddress) -> bool:
        return host.lower().rstrip(".") in self._hosts or any(ip in n for n in self._nets)


_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and routes to: IPv4-mapped (::ffff:a.b.c.d),
    6to4 (2002::/16), NAT64 (64:ff9b::/96, 64:ff9b:1::/48; the last 32 bits), IPv4-compatible
    (::a.b.c.d) and Teredo (the client's address); None when it carries none."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in n for n in _NAT64) or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _blocked(ip: IPAddress) -> bool:
    if not ip.is_global or ip.is_multicast:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        v4 = embedded_ipv4(ip)
        if v4 is not None:
            return not v4.is_global or v4.is_multicast
    return False


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(i[4][0]) for i in infos})


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; WebhookRefused otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(f"webhook url {url!r} is malformed: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused(f"webhook url must be http(s)://host/..., got {url!r}")
    if parts.username or parts.password:
        raise WebhookRefused("webhook url must not carry credentials")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def check_destination(url: str, allow: AllowList, resolver: Resolver = system_resolver) -> list[str]:
    """The addresses ``url`` may be sent to; WebhookRefused when it is not allowed."""
    _, host, port = parse_url(url)
    if host.lower().rstrip(".") in METADATA_HOSTS and host.lower().rstrip(".") not in allow._hosts:
        raise WebhookRefused(f"webhook host {host!r} is a cloud metadata endpoint")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addrs = [str(literal)]
    else:
        try:
            addrs = await resolver(host, port)
        except OSError as exc:
            raise WebhookRefused(f"webhook host {host!r} does not resolve: {exc}") from None
    if not addrs:
        raise WebhookRefused(f"webhook host {host!r} does not resolve")
    for a in addrs:
        ip = ipaddress.ip_address(a.split("%")[0])
        if _blocked(ip) and not allow.allows(host, ip):
            raise WebhookRefused(
                f"webhook host {host!r} resolves to {a}, a private, loopback, link-local or reserved "
                "address; add it to ORCHESTRATOR_WEBHOOK_ALLOW to allow it"
            )
    return addrs


@dataclass(frozen=True)
class WebhookPolicy:
    timeout_s: float
    max_attempts: int
    initial_backoff_s: float
    max_backoff_s: float
    poll_interval_s: float

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Wait after failed attempt ``attempt`` (1-based): exponential, with jitter in [50%, 100%]."""
        base = min(self.max_backoff_s, self.initial_backoff_s * 2.0 ** (attempt - 1))
        wait = base * (0.5 + random.random() / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_backoff_s))
        return wait


class WebhookSender:
    """Sends one attempt (the SSRF check included); never raises for the receiver's behaviour."""

    def __init__(self, policy: WebhookPolicy, allow: AllowList, resolver: Resolver = system_resolver) -> None:
        self._policy = policy
        self._allow = allow
        self._resolver = resolver
        self._client = httpx.AsyncClient(timeout=policy.timeout_s, follow_redirects=False, trust_env=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def send(self, d: DueDelivery) -> tuple[int, str, float | None]:
        """(http status or 0, error text, Retry-After seconds)."""
        try:
            addrs = await check_destination(d.url, self._allow, self._resolver)
        except WebhookRefused as exc:
            return -1, exc.message, None
        scheme, host, port = parse_url(d.url)
        parts = urlsplit(d.url)
        ip = addrs[0]
        netloc = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        target = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
        ts = int(time.time())
        body = d.payload.encode()
        headers = {
            "host": parts.netloc.rsplit("@", 1)[-1],
            "content-type": "application/json",
            "user-agent": "modelserve-orchestrator",
            "webhook-id": d.webhook_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(d.secrets, d.webhook_id, ts, body),
        }
        extensions = {"sni_hostname": host} if scheme == "https" else {}
        try:
            resp = await self._client.post(target, content=body, headers=headers, extensions=extensions)
        except httpx.TimeoutException:
            return 0, f"timeout after {self._policy.timeout_s}s", None
        except httpx.HTTPError as exc:
            return 0, f"{type(exc).__name__}: {exc}", None
        retry_after: float | None = None
        raw = resp.headers.get("retry-after")
        if raw and raw.isascii() and raw.isdigit() and len(raw) <= 9:
            retry_after = float(raw)
        return resp.status_code, "", retry_after


class WebhookDispatcher:
    """Finds due deliveries in the database, sends them and records every attempt."""

    def __init__(self, store: OrchestratorStore, sender: WebhookSender, policy: WebhookPolicy) -> None:
        self._store = store
        self._sender = sender
        self._policy = policy
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                await self.dispatch_due()
            except Exception as exc:  # the loop must survive a database outage
                log.warning("webhook.dispatch_failed", error=str(exc))
            try:
                await asyncio.wait_for(self.wake.wait(), self._policy.poll_interval_s)
            except TimeoutError:
                pass
            self.wake.clear()

    async def dispatch_due(self) -> int:
        now = time.time()
        due = await self._store.due_deliveries(now, now + self._policy.timeout_s + 5, 32)
        if due:
            await asyncio.gather(*(self._attempt(d) for d in due))
        return len(due)

    async def _attempt(self, d: DueDelivery) -> None:
        number = d.attempts + 1
        if number > self._policy.max_attempts:
            # the last allowed attempt was recorded, but its replica stopped before the answer
            await self._store.give_up_delivery(d.webhook_id, d.attempts)
            log.info("webhook.attempted", webhook_id=d.webhook_id, attempt=d.attempts, state="FAILED")
            return
        start = time.time()
        # Recorded (and counted) before the request leaves, so that an attempt is never
        # unrecorded when this replica dies while sending it.
        await self._store.begin_attempt(d.webhook_id, number, start)
        status, error, retry_after = await self._sender.send(d)
        latency = time.time() - start
        next_at = start
        if status == -1:
            state, status = DeliveryState.REFUSED, 0
        elif 200 <= status < 300:
            state = DeliveryState.DELIVERED
        elif status == 410:
            state = DeliveryState.GONE
        elif number >= self._policy.max_attempts:
            state = DeliveryState.FAILED
        else:
            state = DeliveryState.PENDING
            next_at = time.time() + self._policy.backoff(number, retry_after)
        if status and not error and state != DeliveryState.DELIVERED:
            error = f"HTTP {status}"
        await self._store.record_attempt(
            d.webhook_id, WebhookAttempt(number, start, status, error, latency), state, next_at
        )
        observe_webhook_attempt(state, latency)
        log.info(
            "webhook.attempted", webhook_id=d.webhook_id, attempt=number, status=status, state=state.name
        )


def delivery_payload(eid: str, ex: Execution, event: WebhookEvent, state: ExecutionState, error: str) -> str:
    """The JSON body every webhook of execution ``eid``'s outcome receives."""
    return json.dumps(
        {
            "type": f"execution.{event.name.lower()}",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data": {
                "execution": eid,
                "pipeline": ex.pipeline,
                "pipeline_version": ex.pipeline_version,
                "state": state.name,
                "error": error,
            },
        },
        separators=(",", ":"),
    )


class DeliveryBuilder:
    """The webhook deliveries of an execution's outcome: its own webhook and its pipeline's."""

    def __init__(self, store: OrchestratorStore) -> None:
        self._store = store

    async def build(
        self,
        eid: str,
        state: ExecutionState,
        error: str,
        ex: Execution | None = None,
        pipeline: Pipeline | None = None,
    ) -> list[NewDelivery]:
        if ex is None:
            ex = await self._store.get_execution(eid, with_outputs=False)
            if ex is None:
                return []
        event = {
            ExecutionState.SUCCEEDED: WebhookEvent.SUCCEEDED,
            ExecutionState.FAILED: WebhookEvent.FAILED,
            ExecutionState.CANCELLED: WebhookEvent.CANCELLED,
        }[state]
        if pipeline is None:
            owner = ex.tenant if ex.tenant != PLATFORM_OWNER else None  # a trusted caller's: any tenant's
            pipeline = await self._store.get_pipeline(ex.pipeline, ex.pipeline_version, tenant=owner)
        hooks = [ex.webhook, pipeline.webhook if pipeline else None]
        if not any(w is not None and w.wants(event) for w in hooks):
            return []
        payload = delivery_payload(eid, ex, event, state, error)
        return [
            NewDelivery(f"msg_{eid}_{i}", w.url, w.secrets, event, payload)
            for i, w in enumerate(hooks)
            if w is not None and w.wants(event)
        ]
