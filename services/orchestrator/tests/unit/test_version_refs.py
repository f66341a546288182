"""A pipeline node's version that is digits but not ASCII ("²": isdigit() but int() raises) or
too long for a 64-bit version is an alias for the registry to resolve (NOT_FOUND there), never a
number handed to the model server; an ASCII number up to 18 digits goes straight through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from modelserve_common.errors import NotFound
from modelserve_common.identity import Caller
from modelserve_orchestrator.clients import AliasResolvingCaller


class Registry:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def version_number(self, model: str, ref: str, timeout_s: float) -> str:
        self.asked.append(ref)
        if ref == "prod":
            return "3"
        raise NotFound(f"model {model!r} has no version or alias {ref[:32]!r}")


class ModelServer:
    def __init__(self) -> None:
        self.versions: list[str] = []

    async def infer(
        self,
        model: str,
        version: str,
        inputs: Mapping[str, Any],
        outputs: tuple[str, ...],
        timeout_s: float,
        caller: Caller,
    ) -> tuple[dict[str, Any], str]:
        int(version or "0")  # what a model server does with a number
        self.versions.append(version)
        return {}, version


@pytest.mark.parametrize("ref", ["²", "1²", "٣", "9" * 19, "9" * 5000])
async def test_odd_digits_are_resolved_by_the_registry(ref: str) -> None:
    registry, server = Registry(), ModelServer()
    caller = AliasResolvingCaller(server, registry, ttl_s=60)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await caller.infer("m", ref, {"x": np.zeros(1)}, (), 5.0, Caller(None, frozenset()))
    assert registry.asked == [ref] and server.versions == []


@pytest.mark.parametrize(("ref", "sent"), [("7", "7"), ("9" * 18, "9" * 18), ("prod", "3"), ("", "")])
async def test_numbers_go_straight_through_and_aliases_resolve(ref: str, sent: str) -> None:
    registry, server = Registry(), ModelServer()
    caller = AliasResolvingCaller(server, registry, ttl_s=60)  # type: ignore[arg-type]
    await caller.infer("m", ref, {"x": np.zeros(1)}, (), 5.0, Caller(None, frozenset()))
    assert server.versions == [sent]
    assert registry.asked == ([ref] if ref == "prod" else [])
