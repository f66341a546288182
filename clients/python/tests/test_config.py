"""Settings resolution: arguments > environment > profile; config.toml is written mode 0600."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from modelserve_client import config


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_CONFIG_DIR", str(tmp_path / "cfg"))
    for v in ("MODELSERVE_URL", "MODELSERVE_API_KEY", "MODELSERVE_TOKEN", "MODELSERVE_PROFILE"):
        monkeypatch.delenv(v, raising=False)


def test_profiles_are_kept_side_by_side_in_a_private_file() -> None:
    p = config.write_profile("default", "a:1", api_key="k1")
    config.write_profile("prod", "https://b:2", api_key='k"2')
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert config.read_profiles() == {
        "default": {"url": "a:1", "tls": False, "api_key": "k1"},
        "prod": {"url": "https://b:2", "tls": False, "api_key": 'k"2'},
    }
    s = config.resolve(profile="prod")
    assert (s.url, s.api_key, s.tls) == ("b:2", 'k"2', True)
    assert config.resolve().api_key == "k1"


def test_environment_beats_profile_and_arguments_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config.write_profile("default", "a:1", api_key="k1")
    monkeypatch.setenv("MODELSERVE_URL", "env:3")
    monkeypatch.setenv("MODELSERVE_API_KEY", "envkey")
    assert (config.resolve().url, config.resolve().api_key) == ("env:3", "envkey")
    s = config.resolve(url="arg:4", api_key="argkey")
    assert (s.url, s.api_key) == ("arg:4", "argkey")


def test_unknown_profile_is_an_error() -> None:
    with pytest.raises(ValueError, match="no profile 'nope'"):
        config.resolve(profile="nope")


def test_client_refuses_both_key_and_token_and_bad_limits() -> None:
    from modelserve_client import Client

    with pytest.raises(ValueError, match="not both"):
        Client("x:1", api_key="a", token="b")
    with pytest.raises(ValueError, match="must be > 0"):
        Client("x:1", timeout=0)


def test_a_planted_temporary_file_or_link_never_receives_the_secret(tmp_path: Path) -> None:
    """The old writer opened ``config.tmp`` with O_TRUNC (no O_EXCL/O_NOFOLLOW): a file planted
    there world-readable, or a link to elsewhere, got the secret before the chmod."""
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    planted = cfg / "config.tmp"
    planted.write_text("")
    planted.chmod(0o644)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("")
    (cfg / ".config.toml.tmp").symlink_to(elsewhere)
    p = config.write_profile("default", "a:1", api_key="s3cret")
    assert planted.read_text() == "" and stat.S_IMODE(planted.stat().st_mode) == 0o644
    assert elsewhere.read_text() == ""
    assert stat.S_IMODE(p.stat().st_mode) == 0o600 and "s3cret" in p.read_text()
    assert sorted(f.name for f in cfg.iterdir()) == [".config.toml.tmp", "config.tmp", "config.toml"]
