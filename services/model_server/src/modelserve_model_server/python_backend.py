"""The Python backend: ``<version>/model.py`` defines ``class Model`` with ``load()`` and
``predict(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]`` (either may be ``async``).

Before ``load()`` the server sets ``model_dir``, ``version_dir``, ``version``, ``config`` (the
:class:`~modelserve_model_server.config.ModelSpec`) and ``parameters`` on the instance. An ``async
predict`` runs on the event loop (it must not block it); a plain ``predict`` runs in a thread of
its own per instance, so a slow model never stalls the server. ``instance_group.count`` instances
are created; each runs one batch at a time.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import itertools
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from modelserve_model_server.backend import LoadedModel, Tensors
from modelserve_model_server.config import ModelSpec

_seq = itertools.count()


def _import(path: Path, class_name: str) -> type[Any]:
    module_name = f"modelserve_python_model_{next(_seq)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(module_name, None)
        raise
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise RuntimeError(f"{path.name} defines no class {class_name!r}")
    if not callable(getattr(cls, "predict", None)):
        raise RuntimeError(f"class {class_name!r} in {path.name} has no predict(inputs) method")
    return cls


class PythonModel:
    """Instances of a user's model class, handed out one batch at a time."""

    def __init__(self, instances: list[Any], is_async: bool) -> None:
        self._free: asyncio.Queue[Any] = asyncio.Queue()
        for inst in instances:
            self._free.put_nowait(inst)
        self._instances = instances
        self._is_async = is_async
        self._pool = None if is_async else ThreadPoolExecutor(len(instances), thread_name_prefix="pymodel")
        self._single = instances[0] if len(instances) == 1 else None

    async def execute(self, inputs: Tensors, outputs: Sequence[str]) -> Tensors:
        if self._single is not None:  # the batcher never runs more than instance_count at once
            return await self._call(self._single, inputs)
        inst = await self._free.get()
        try:
            return await self._call(inst, inputs)
        finally:
            self._free.put_nowait(inst)

    async def _call(self, inst: Any, inputs: Tensors) -> Tensors:
        if self._is_async:
            result = await inst.predict(inputs)
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._pool, inst.predict, inputs)
        if not isinstance(result, dict):
            raise TypeError(f"predict returned {type(result).__name__}, expected dict[str, numpy.ndarray]")
        return result

    async def unload(self) -> None:
        for inst in self._instances:
            fn = getattr(inst, "unload", None)
            if fn is not None:
                res = fn()
                if inspect.isawaitable(res):
                    await res
        if self._pool is not None:
            self._pool.shutdown(wait=False)


class PythonBackend:
    """Loads ``model.py`` (or ``default_model_filename``) models."""

    name = "python"

    async def load(self, spec: ModelSpec, version: int, version_dir: Path) -> LoadedModel:
        path = version_dir / (spec.default_model_filename or "model.py")
        if not path.is_file():
            raise RuntimeError(f"{path.name} not found in {version_dir}")
        cls = _import(path, spec.parameters.get("class_name", "Model"))
        is_async = inspect.iscoroutinefunction(cls.predict)
        instances = []
        for _ in range(spec.instance_count):
            inst = cls()
            inst.model_dir = version_dir.parent
            inst.version_dir = version_dir
            inst.version = version
            inst.config = spec
            inst.parameters = dict(spec.parameters)
            load = getattr(inst, "load", None)
            if load is not None:
                res = load() if inspect.iscoroutinefunction(load) else await asyncio.to_thread(load)
                if inspect.isawaitable(res):
                    await res
            instances.append(inst)
        return PythonModel(instances, is_async)
