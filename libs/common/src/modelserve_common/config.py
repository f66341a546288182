"""Settings: one pydantic-settings class per service, env-prefixed (``REGISTRY_GRPC_PORT``), with
suite-wide ``MODELSERVE_*`` fallbacks for shared infrastructure, command-line flags for every field
(``--grpc-port 0``), ``--help`` listing every setting, and a clear message on a bad value."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class BaseServiceSettings(BaseSettings):
    """Settings every service has. Subclasses set ``env_prefix`` and add their own fields."""

    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, use_attribute_docstrings=True, env_nested_delimiter="__"
    )

    service_name: str = "modelserve"
    """Name used in logs, traces and metrics."""
    grpc_host: str = "[::]"
    """Address the gRPC server binds."""
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    """gRPC port; 0 picks a free port."""
    metrics_port: int = Field(default=-1, ge=-1, le=65535)
    """Prometheus metrics HTTP port; -1 disables the endpoint, 0 picks a free port."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level logged."""
    log_format: Literal["json", "console"] = "json"
    """json for machines, console for humans."""
    access_log: bool = True
    """Log one line per RPC with its final status and duration."""
    tracing_enabled: bool = False
    """Export OpenTelemetry spans over OTLP (endpoint from the standard OTEL_* variables)."""
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    """Seconds in-flight RPCs get to finish after SIGTERM before they are cancelled."""
    max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest gRPC message received or sent (bytes); larger ones fail RESOURCE_EXHAUSTED."""
    max_concurrent_rpcs: int = Field(default=0, ge=0)
    """Most RPCs handled at once; further ones fail RESOURCE_EXHAUSTED. 0 means no limit."""
    tls_cert_file: Path | None = None
    """PEM certificate chain of this server (and of its client side, for mutual TLS); unset = plaintext."""
    tls_key_file: Path | None = None
    """PEM private key for tls_cert_file."""
    tls_ca_file: Path | None = None
    """PEM CA bundle: the server requires client certificates signed by it (mutual TLS), and
    channels to other services verify servers against it."""
    client_timeout_s: float = Field(default=30.0, gt=0)
    """Default deadline of calls to other services when the caller gives none."""
    data_dir: Path = Path("data")
    """Writable folder for embedded defaults (the SQLite database)."""


S = TypeVar("S", bound=BaseServiceSettings)


def suite_fallback(prefix: str, name: str) -> AliasChoices:
    """Env aliases for a field read from ``<PREFIX>_<NAME>`` first, then ``MODELSERVE_<NAME>``."""
    return AliasChoices(name, f"{prefix}{name.upper()}", f"MODELSERVE_{name.upper()}")


def _env_name(cls: type[BaseServiceSettings], field: str) -> str:
    prefix = str(cls.model_config.get("env_prefix", ""))
    info = cls.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        names = [str(c) for c in alias.choices if isinstance(c, str) and c != field]
        return " or ".join(names)
    return f"{prefix}{field}".upper()


def build_parser(cls: type[BaseServiceSettings], prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(cls.__doc__ or "").strip(),
        epilog="Every flag can also be set through the environment variable shown with it. "
        "Flags win over environment variables.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, info in cls.model_fields.items():
        if info.default_factory is not None:
            default: Any = "computed"
        elif info.is_required():
            default = "required"
        else:
            default = info.default if info.default is not None else "unset"
        secret = "Secret" in str(info.annotation)
        shown = "(secret)" if secret and default != "unset" else default
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=argparse.SUPPRESS,
            metavar=name.upper(),
            help=f"{info.description or ''} [env {_env_name(cls, name)}; default {shown}]",
        )
    return parser


def load_settings(cls: type[S], argv: list[str] | None = None, prog: str | None = None) -> S:
    """Parses flags and environment into ``cls``; on a bad value prints what is wrong and exits 2."""
    parser = build_parser(cls, prog or cls.__name__)
    args: dict[str, Any] = vars(parser.parse_args(sys.argv[1:] if argv is None else argv))
    try:
        return cls(**args)
    except ValidationError as exc:
        lines = [f"invalid configuration for {prog or cls.__name__}:"]
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            env = _env_name(cls, field) if field in cls.model_fields else field
            lines.append(f"  {field} ({env}): {err['msg']} (got {err.get('input')!r})")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
