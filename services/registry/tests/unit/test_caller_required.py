"""Every registry operation that acts for a caller requires it: forgetting the argument is a
TypeError, never a silent trusted (platform-wide) caller."""

from __future__ import annotations

import inspect

import pytest

from modelserve_registry.service import RegistryService

_METHODS = [
    name
    for name, fn in inspect.getmembers(RegistryService, inspect.isfunction)
    if "caller" in inspect.signature(fn).parameters
]


def test_the_operations_that_take_a_caller_are_found() -> None:
    assert {"create_model", "get_model", "create_key", "update_tenant", "watch"} <= set(_METHODS)


@pytest.mark.parametrize("name", _METHODS)
def test_caller_has_no_default(name: str) -> None:
    param = inspect.signature(getattr(RegistryService, name)).parameters["caller"]
    assert param.default is inspect.Parameter.empty, f"RegistryService.{name} defaults caller"
