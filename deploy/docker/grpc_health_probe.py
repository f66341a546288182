"""Container health check: asks a service's ``grpc.health.v1.Health/Check`` and exits 0 when the
answer is SERVING, 1 otherwise (the exit codes Docker's HEALTHCHECK expects).

Kubernetes does not use it (the manifests use native gRPC probes); Docker and Compose do, through
the images' ``HEALTHCHECK``. It runs with the image's own Python, so no shell and no extra binary.

    python /opt/modelserve/grpc_health_probe.py --env-prefix REGISTRY_ --service liveness

The port and TLS files are read from the service's own settings variables
(``<PREFIX>GRPC_PORT``, ``<PREFIX>TLS_CA_FILE``, ``<PREFIX>TLS_CERT_FILE``, ``<PREFIX>TLS_KEY_FILE``),
so the check follows whatever the container was configured with; flags override them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def check(
    target: str, service: str, timeout: float, ca: str | None, cert: str | None, key: str | None
) -> int:
    if ca or cert:
        credentials = grpc.ssl_channel_credentials(_read(ca), _read(key), _read(cert))
        channel = grpc.secure_channel(target, credentials)
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            print(f"unhealthy: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: {service or '(overall)'} is {status}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-prefix", default="", help="settings prefix of the service, e.g. REGISTRY_")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="default: <PREFIX>GRPC_PORT")
    parser.add_argument("--service", default="", help='health service name; "" is the overall status')
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds")
    args = parser.parse_args(argv)

    def env(name: str) -> str | None:
        return os.environ.get(f"{args.env_prefix}{name}") or None

    port = args.port if args.port is not None else int(env("GRPC_PORT") or 0)
    if port <= 0:
        parser.error(f"no port: pass --port or set {args.env_prefix}GRPC_PORT")
    return check(
        f"{args.host}:{port}",
        args.service,
        args.timeout,
        env("TLS_CA_FILE"),
        env("TLS_CERT_FILE"),
        env("TLS_KEY_FILE"),
    )


if __name__ == "__main__":
    raise SystemExit(main())
