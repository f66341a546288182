from __future__ import annotations

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from modelserve_common.config import BaseServiceSettings, load_settings, suite_fallback


class DemoSettings(BaseServiceSettings):
    """Demo service."""

    model_config = SettingsConfigDict(env_prefix="DEMO_")

    database_url: SecretStr | None = Field(
        default=None, validation_alias=suite_fallback("DEMO_", "database_url")
    )
    """Where the data lives."""


def test_settings_env_prefix_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_GRPC_PORT", "6000")
    assert load_settings(DemoSettings, []).grpc_port == 6000


def test_settings_flag_wins_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_GRPC_PORT", "6000")
    assert load_settings(DemoSettings, ["--grpc-port", "7000"]).grpc_port == 7000


def test_settings_suite_fallback_then_prefixed_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_DATABASE_URL", "postgresql://suite")
    s = load_settings(DemoSettings, [])
    assert s.database_url is not None and s.database_url.get_secret_value() == "postgresql://suite"
    monkeypatch.setenv("DEMO_DATABASE_URL", "postgresql://own")
    s = load_settings(DemoSettings, [])
    assert s.database_url is not None and s.database_url.get_secret_value() == "postgresql://own"


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("DEMO_GRPC_PORT", "not-a-port", "grpc_port (DEMO_GRPC_PORT)"),
        ("DEMO_GRPC_PORT", "70000", "less than or equal to 65535"),
        ("DEMO_LOG_FORMAT", "xml", "log_format (DEMO_LOG_FORMAT)"),
        ("DEMO_SHUTDOWN_GRACE_S", "-1", "greater than or equal to 0"),
    ],
)
def test_settings_bad_value_fails_fast_with_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SystemExit) as exc:
        load_settings(DemoSettings, [], prog="demo")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid configuration for demo" in err
    assert needle in err


def test_settings_help_lists_every_setting_with_env_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_settings(DemoSettings, ["--help"], prog="demo")
    out = " ".join(capsys.readouterr().out.split())
    for name in DemoSettings.model_fields:
        assert "--" + name.replace("_", "-") in out
    assert "DEMO_GRPC_PORT" in out
    assert "DEMO_DATABASE_URL or MODELSERVE_DATABASE_URL" in out
