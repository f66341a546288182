"""Every service method that acts for a caller requires it: forgetting the argument is a
TypeError, never a silent trusted (platform-wide) caller."""

from __future__ import annotations

import inspect

import pytest

from modelserve_orchestrator.clients import AliasResolvingCaller, InferenceClient
from modelserve_orchestrator.pipeline import PipelineRunner
from modelserve_orchestrator.service import OrchestratorService

_CLASSES = (OrchestratorService, PipelineRunner, InferenceClient, AliasResolvingCaller)
_METHODS = [
    (cls, name)
    for cls in _CLASSES
    for name, fn in inspect.getmembers(cls, inspect.isfunction)
    if "caller" in inspect.signature(fn).parameters
]


def test_the_methods_that_take_a_caller_are_found() -> None:
    names = {f"{c.__name__}.{n}" for c, n in _METHODS}
    assert {"OrchestratorService.get_execution", "PipelineRunner.run", "InferenceClient.infer"} <= names


@pytest.mark.parametrize("cls,name", _METHODS, ids=lambda x: getattr(x, "__name__", x))
def test_caller_has_no_default(cls: type, name: str) -> None:
    param = inspect.signature(getattr(cls, name)).parameters["caller"]
    assert param.default is inspect.Parameter.empty, f"{cls.__name__}.{name} defaults caller"


async def test_forgetting_the_caller_is_a_type_error() -> None:
    service = object.__new__(OrchestratorService)
    with pytest.raises(TypeError, match="caller"):
        await service.get_execution("e1")  # type: ignore[call-arg]
