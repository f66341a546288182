"""Tensors as JSON text for the database (execution inputs and node outputs): each tensor's v2
datatype, shape and raw layout (base64), through ``modelserve_common.tensors``. No protobuf here."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelserve_common.tensors import from_raw, to_raw


def dumps(tensors: Mapping[str, Any]) -> str:
    """Tensors as JSON text (for the database)."""
    items: list[dict[str, Any]] = []
    for name, array in tensors.items():
        datatype, shape, raw = to_raw(array)
        items.append({"n": name, "t": datatype, "s": shape, "d": base64.b64encode(raw).decode()})
    return json.dumps(items, separators=(",", ":"))


def loads(text: str | None) -> dict[str, np.ndarray[Any, Any]]:
    if not text:
        return {}
    return {
        i["n"]: from_raw(base64.b64decode(i["d"]), i["t"], i["s"], f"tensor {i['n']!r}")
        for i in json.loads(text)
    }
