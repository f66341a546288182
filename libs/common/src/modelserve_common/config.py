"""Settings: one pydantic-settings class per service, env-prefixed (``REGISTRY_GRPC_PORT``), with
suite-wide ``MODELSERVE_*`` fallbacks for shared infrastructure, command-line flags for every field
(``--grpc-port 0``), ``--help`` listing every setting, and a clear message on a bad value.

Start-up failures a process can explain are raised as :class:`StartupError` (exit status 1) or
:class:`ConfigurationError` (a bad setting, exit status 2); ``server.run_until_signal`` prints their
one-line message on stderr and exits with that status instead of a traceback."""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelserve_common.db import database_url_problem


class StartupError(Exception):
    """A start-up failure explained in one line (``str(exc)``); the process exits with ``exit_code``."""

    exit_code = 1


class ConfigurationError(StartupError):
    """A setting that cannot work (a bad address, an unsupported URL); exit status 2."""

    exit_code = 2


def _redis_url_problem(url: str) -> str | None:
    if url.startswith(("redis://", "rediss://", "unix://")):
        return None
    scheme = url.split(":", 1)[0] if ":" in url else url[:20]
    return f"expected redis://…, rediss://… or unix://…, got scheme {scheme!r}"


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

    # Shared check of a field that several services declare (redis_url): a URL that cannot work is
    # a configuration error at start-up, while Redis merely down is left to each service's readiness.
    @field_validator("redis_url", check_fields=False)
    @classmethod
    def _check_redis_url(cls, value: object) -> object:
        url = value.get_secret_value() if isinstance(value, SecretStr) else value
        problem = _redis_url_problem(url) if isinstance(url, str) and url else None
        if problem:
            raise ValueError(problem)
        return value


class DatabaseSettings(BaseModel):
    """The database settings of a service that keeps a system of record (the registry, the
    orchestrator), mixed into its settings class: ``class RegistrySettings(BaseServiceSettings,
    DatabaseSettings)``. The fields take the service's prefix (``REGISTRY_POOL_MAX_SIZE``); the URL
    falls back to the suite-wide ``MODELSERVE_DATABASE_URL``. A URL that cannot work is a
    configuration error at start-up; a database merely down is left to readiness."""

    database_url: SecretStr | None = Field(
        default=None,
        description="postgresql://… (psycopg 3) or sqlite:///path; unset: a SQLite file named after "
        "the service (registry.db, orchestrator.db) under data_dir.",
    )
    pool_min_size: int = Field(default=1, ge=0, description="PostgreSQL: connections the pool keeps open.")
    pool_max_size: int = Field(default=10, ge=1, description="PostgreSQL: most connections the pool opens.")
    db_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Longest wait for a database connection (or the SQLite write lock) before UNAVAILABLE.",
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # The suite-wide fallback needs the service's prefix, known only here.
        super().__pydantic_init_subclass__(**kwargs)
        prefix = str(cls.model_config.get("env_prefix", ""))
        if prefix:
            info = copy.copy(cls.__pydantic_fields__["database_url"])
            info.validation_alias = suite_fallback(prefix, "database_url")
            cls.__pydantic_fields__["database_url"] = info
            cls.model_rebuild(force=True)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        url = value.get_secret_value() if value is not None else ""
        problem = database_url_problem(url) if url else None
        if problem:
            raise ValueError(problem)
        return value

    def database_url_value(self) -> str | None:
        """The URL in clear (it may hold a password: never log it), or None."""
        return self.database_url.get_secret_value() if self.database_url else None


S = TypeVar("S", bound=BaseServiceSettings)


def suite_fallback(prefix: str, name: str) -> AliasChoices:
    """Env aliases for a field read from ``<PREFIX>_<NAME>`` first, then ``MODELSERVE_<NAME>``."""
    return AliasChoices(name, f"{prefix}{name.upper()}", f"MODELSERVE_{name.upper()}")


def env_name(cls: type[BaseServiceSettings], field: str) -> str:
    """The environment variable(s) that set ``field`` of ``cls``: ``REGISTRY_GRPC_PORT``, or
    ``REGISTRY_DATABASE_URL or MODELSERVE_DATABASE_URL`` for suite-wide fallbacks."""
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
            help=f"{info.description or ''} [env {env_name(cls, name)}; default {shown}]",
        )
    return parser


def load_settings(cls: type[S], argv: list[str] | None = None, prog: str | None = None) -> S:
    """Parses flags and environment into ``cls``; on a bad value prints one line per wrong setting
    (its name, its environment variable, what is wrong; never a secret's value) and exits 2."""
    parser = build_parser(cls, prog or cls.__name__)
    args: dict[str, Any] = vars(parser.parse_args(sys.argv[1:] if argv is None else argv))
    try:
        return cls(**args)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            info = cls.model_fields.get(field)
            env = env_name(cls, field) if info is not None else field
            secret = info is not None and "Secret" in str(info.annotation)
            got = "" if secret else f" (got {err.get('input')!r})"
            lines.append(
                f"invalid configuration for {prog or cls.__name__}: {field} ({env}): {err['msg']}{got}"
            )
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
