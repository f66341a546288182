"""config.DatabaseSettings: one set of database settings for the services with a database; each
service keeps its own env names (prefixed, the URL falling back to MODELSERVE_DATABASE_URL)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from modelserve_common.config import BaseServiceSettings, DatabaseSettings, env_name


class AlphaSettings(BaseServiceSettings, DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALPHA_")


class BetaSettings(BaseServiceSettings, DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="BETA_")


def test_each_service_reads_its_own_prefix_then_the_suite_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHA_DATABASE_URL", "sqlite:///alpha.db")
    monkeypatch.setenv("MODELSERVE_DATABASE_URL", "sqlite:///suite.db")
    monkeypatch.setenv("ALPHA_POOL_MAX_SIZE", "3")
    monkeypatch.setenv("BETA_DB_TIMEOUT_S", "1.5")
    a, b = AlphaSettings(), BetaSettings()
    assert a.database_url_value() == "sqlite:///alpha.db" and a.pool_max_size == 3
    assert b.database_url_value() == "sqlite:///suite.db" and b.db_timeout_s == 1.5 and b.pool_max_size == 10
    assert env_name(AlphaSettings, "database_url") == "ALPHA_DATABASE_URL or MODELSERVE_DATABASE_URL"
    assert env_name(BetaSettings, "pool_min_size") == "BETA_POOL_MIN_SIZE"


def test_unset_url_means_the_embedded_default() -> None:
    assert AlphaSettings().database_url_value() is None


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("database_url", "mysql://u:secret@h/db", "got scheme 'mysql'"),
        ("database_url", "sqlite:///", "needs a file path"),
        ("pool_max_size", 0, "greater than or equal to 1"),
        ("pool_min_size", -1, "greater than or equal to 0"),
        ("db_timeout_s", 0, "greater than 0"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(field: str, value: object, expected: str) -> None:
    with pytest.raises(ValidationError, match=expected) as exc:
        AlphaSettings(**{field: value})
    assert "secret" not in str(exc.value).split("input_value")[0]
