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
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from modelserve_model_server.backend import LoadedModel, Tensors, hold_until_done
from modelserve_model_server.config import ModelSpec
from modelserve_model_server.errors import ModelOutputError

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
    """Instances of a user's model class, handed out one batch at a time.

    An instance is busy from the moment a batch takes it until its ``predict`` has returned. A
    plain (thread) ``predict`` cannot be stopped: when the request is cancelled the instance goes
    back to the free list only when the thread returns (never while it still runs), and
    :meth:`execute` itself waits for it (:func:`hold_until_done`), so the batcher does not start
    another batch in its place either."""

    def __init__(self, instances: list[Any], is_async: bool) -> None:
        # free instances, and callers waiting for one (a list and futures: asyncio.Queue costs
        # several method calls per get and put on every request)
        self._free: list[Any] = list(instances)
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._instances = instances
        self._is_async = is_async
        self._pool = None if is_async else ThreadPoolExecutor(len(instances), thread_name_prefix="pymodel")
        spec = getattr(instances[0], "config", None) if instances else None
        self._label = f"model {spec.name!r} version {instances[0].version}" if spec is not None else "model"

    async def _take(self) -> Any:
        if self._free:
            return self._free.pop()
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed over as we were cancelled
                self._give(waiter.result())
            raise

    def _give(self, inst: Any) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(inst)
                return
        self._free.append(inst)

    async def execute(self, inputs: Tensors, outputs: Sequence[str]) -> Tensors:
        inst = self._free.pop() if self._free else await self._take()
        if self._is_async:
            try:  # cancelling a coroutine stops it: the instance is free again at once
                result = await inst.predict(inputs)
            finally:
                self._give(inst)
        else:
            future = asyncio.get_running_loop().run_in_executor(self._pool, inst.predict, inputs)
            future.add_done_callback(lambda _f: self._give(inst))
            result = await hold_until_done(future)
        if not isinstance(result, dict):
            raise ModelOutputError(
                f"{self._label}: predict returned {type(result).__name__}, expected dict[str, numpy.ndarray]"
            )
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
