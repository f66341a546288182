"""The gateway's Watch reconnection backoff settings: bounds enforced at load, values reach the
follower."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelserve_gateway.settings import GatewaySettings


def test_watch_backoff_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (GatewaySettings().watch_backoff_min_s, GatewaySettings().watch_backoff_max_s) == (0.2, 5.0)
    monkeypatch.setenv("GATEWAY_WATCH_BACKOFF_MIN_S", "0.5")
    monkeypatch.setenv("GATEWAY_WATCH_BACKOFF_MAX_S", "30")
    s = GatewaySettings()
    assert (s.watch_backoff_min_s, s.watch_backoff_max_s) == (0.5, 30.0)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"watch_backoff_min_s": 0}, "greater than 0"),
        ({"watch_backoff_max_s": -1}, "greater than 0"),
        ({"watch_backoff_min_s": 3, "watch_backoff_max_s": 2}, "must be at least watch_backoff_min_s"),
    ],
)
def test_watch_backoff_refuses_bounds_that_cannot_work(values: dict[str, float], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        GatewaySettings(**values)  # type: ignore[arg-type]
