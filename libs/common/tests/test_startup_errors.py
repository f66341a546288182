"""Start-up failures explain themselves in one line: a port that is taken or cannot be bound, a
setting that cannot work (database/Redis URL, TLS files), a signal while starting."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from helpers import ProbeServicer, probe_service
from pydantic_settings import SettingsConfigDict

from modelserve_common.config import (
    BaseServiceSettings,
    ConfigurationError,
    DatabaseSettings,
    StartupError,
    load_settings,
)
from modelserve_common.server import check_port, grpc_server, run_until_signal


class DemoSettings(BaseServiceSettings, DatabaseSettings):
    """Demo service."""

    model_config = SettingsConfigDict(env_prefix="DEMO_")

    service_name: str = "demo"
    redis_url: str | None = None
    """Redis."""
    http_host: str = "127.0.0.1"
    """Where a second listener binds."""
    http_port: int = 0
    """A second listener's port."""


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other socket listens on (loopback only, as a stray process would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


async def _start(settings: DemoSettings) -> None:
    async with grpc_server(settings, [probe_service(ProbeServicer())]):
        pytest.fail("the server started on a port that is taken")


async def test_grpc_server_busy_grpc_port_names_port_and_variable(taken_port: int) -> None:
    with pytest.raises(StartupError) as exc:
        await _start(DemoSettings(grpc_port=taken_port, metrics_port=-1))
    msg = str(exc.value)
    assert exc.value.exit_code == 1
    assert f"gRPC port {taken_port}" in msg and "address already in use" in msg
    assert "DEMO_GRPC_PORT" in msg and "--grpc-port" in msg
    assert "\n" not in msg and msg.startswith("demo: ")


async def test_grpc_server_busy_metrics_port_names_port_and_variable(taken_port: int) -> None:
    with pytest.raises(StartupError) as exc:
        await _start(DemoSettings(grpc_host="127.0.0.1", grpc_port=0, metrics_port=taken_port))
    msg = str(exc.value)
    assert f"metrics port {taken_port}" in msg and "DEMO_METRICS_PORT" in msg and "-1 to disable" in msg


async def test_grpc_server_unresolvable_host_is_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as exc:
        await _start(DemoSettings(grpc_host="no-such-host.invalid", grpc_port=0, metrics_port=-1))
    assert exc.value.exit_code == 2
    assert "DEMO_GRPC_HOST" in str(exc.value) and "does not resolve" in str(exc.value)


async def test_grpc_server_missing_tls_file_is_configuration_error(tmp_path: Path) -> None:
    settings = DemoSettings(
        grpc_port=0, metrics_port=-1, tls_cert_file=tmp_path / "no.pem", tls_key_file=tmp_path / "no.key"
    )
    with pytest.raises(ConfigurationError) as exc:
        await _start(settings)
    assert "DEMO_TLS_CERT_FILE" in str(exc.value) and "No such file" in str(exc.value)


def test_check_port_names_any_listener_and_its_variables(taken_port: int) -> None:
    """check_port serves every listener a service has (the gateway's HTTP port, for one)."""
    with pytest.raises(StartupError) as exc:
        check_port(DemoSettings(), "HTTP", "http_port", "127.0.0.1", taken_port)
    assert f"HTTP port {taken_port}" in str(exc.value) and "DEMO_HTTP_PORT (or --http-port)" in str(exc.value)
    with pytest.raises(ConfigurationError) as bad_host:
        check_port(DemoSettings(), "HTTP", "http_port", "no-such-host.invalid", 8080)
    assert "DEMO_HTTP_HOST" in str(bad_host.value)
    check_port(DemoSettings(), "HTTP", "http_port", "127.0.0.1", 0)  # any free port: fine
    check_port(DemoSettings(), "metrics", "metrics_port", "0.0.0.0", -1)  # disabled: fine


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("mysql://user:hunter2@db/x", "expected postgresql://… or sqlite:///…, got scheme 'mysql'"),
        ("postgresql://user:hunter2@db:port/x", "port 'port' is not a number"),
        ("postgresql://user:hunter2@db:99999/x", "port '99999' is not a number"),
        ("postgresql://user:hunter2@db/x?nonsense=1", "invalid URI query parameter"),
        ("sqlite:///", "needs a file path"),
    ],
)
def test_settings_bad_database_url_is_one_line_without_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, needle: str
) -> None:
    monkeypatch.setenv("DEMO_DATABASE_URL", url)
    with pytest.raises(SystemExit) as exc:
        load_settings(DemoSettings, [], prog="demo")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "database_url (DEMO_DATABASE_URL or MODELSERVE_DATABASE_URL)" in err and needle in err
    assert "hunter2" not in err


@pytest.mark.parametrize(
    "url",
    ["postgresql://u:p@db:5432/x", "postgres://db/x?sslmode=require", "sqlite:///x.db", "sqlite:////abs.db"],
)
def test_settings_good_database_url_is_accepted(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DEMO_DATABASE_URL", url)
    s = load_settings(DemoSettings, [])
    assert s.database_url is not None and s.database_url.get_secret_value() == url


def test_settings_bad_redis_url_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEMO_REDIS_URL", "localhost:6379")
    with pytest.raises(SystemExit) as exc:
        load_settings(DemoSettings, [], prog="demo")
    assert exc.value.code == 2
    assert "redis_url (DEMO_REDIS_URL)" in capsys.readouterr().err
    monkeypatch.setenv("DEMO_REDIS_URL", "redis://127.0.0.1:6379/0")
    assert load_settings(DemoSettings, []).redis_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(("error", "status"), [(StartupError, 1), (ConfigurationError, 2)])
async def test_run_until_signal_startup_error_is_one_line_and_exit_status(
    capsys: pytest.CaptureFixture[str], error: type[StartupError], status: int
) -> None:
    @asynccontextmanager
    async def failing() -> AsyncIterator[None]:
        raise error("demo: cannot listen on gRPC port 1")
        yield

    with pytest.raises(SystemExit) as exc:
        await run_until_signal(failing())
    assert exc.value.code == status
    assert capsys.readouterr().err == "demo: cannot listen on gRPC port 1\n"


def test_run_until_signal_sigterm_during_startup_stops_promptly(tmp_path: Path) -> None:
    """A process stuck in start-up (e.g. waiting for its database) stops on SIGTERM, running the
    start-up's own cleanup, instead of ignoring the signal until start-up ends."""
    marker = tmp_path / "cleaned"
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from contextlib import asynccontextmanager
        from modelserve_common.server import run_until_signal

        @asynccontextmanager
        async def never_ready():
            try:
                print("starting", flush=True)
                await asyncio.sleep(3600)
                yield
            finally:
                open({str(marker)!r}, "w").close()

        asyncio.run(run_until_signal(never_ready()))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "starting\n"
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
        assert time.monotonic() - sent < 5
        assert marker.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
