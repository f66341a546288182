"""JSON request bodies parsed safely (depth checked before parsing, integers within 64 bits, finite
floats, valid Unicode; every refusal INVALID_ARGUMENT) and JSON responses written compactly."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from modelserve_common.errors import InvalidArgument

_SURROGATE = re.compile("[\ud800-\udfff]")
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
_NOT_STRUCTURE = bytes(set(range(256)) - set(b'[]{}"'))
_STRING = re.compile(rb'"[^"]*"?')  # over brackets and quotes only; an unterminated one runs to the end
_CHUNK = 1 << 16
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def check_json_depth(raw: bytes, limit: int) -> None:
    """Raises InvalidArgument when the JSON text ``raw`` nests deeper than ``limit``, before any
    parser sees it (``json.loads`` of ``[[[[…`` 10,000 deep would raise RecursionError). Linear
    and without a Python loop per byte: escaped backslashes and quotes are dropped, then every
    byte but brackets and quotes, then strings; the depth is the running sum of what remains."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    reduced = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    if b'"' in reduced:
        reduced = _STRING.sub(b"", reduced)
    if not reduced:
        return
    view = np.frombuffer(reduced, dtype=np.uint8)
    depth = 0
    for start in range(0, len(view), _CHUNK):  # chunked: a hostile body stops at its first chunk
        running = np.cumsum(_OPEN[view[start : start + _CHUNK]], dtype=np.int64) + depth
        if int(running.max()) > limit:
            raise InvalidArgument(f"JSON body nests deeper than {limit} levels")
        depth = int(running[-1])


def _parse_int(text: str) -> int:
    # A 64-bit integer has at most 20 digits (and a sign); longer ones are refused before int()
    # converts them (quadratic in their length).
    if len(text.lstrip("-")) > 20:
        raise InvalidArgument(f"JSON integer {text[:24]}... does not fit 64 bits")
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise InvalidArgument(f"JSON integer {text} does not fit 64 bits")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidArgument(f"JSON number {text[:40]} is out of the range of a 64-bit float")
    return value


def _parse_constant(text: str) -> Any:
    raise InvalidArgument(f'{text} is not JSON (send non-finite floats as the strings "NaN", "Infinity")')


def json_depth(value: Any, limit: int) -> int:
    """The nesting depth of a parsed ``value``; raises InvalidArgument past ``limit`` or on a
    string with a lone UTF-16 surrogate (not encodable as UTF-8). Iterative."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, str):
            _check_text(v)
        elif isinstance(v, dict | list):
            if d > limit:
                raise InvalidArgument(f"JSON body nests deeper than {limit} levels")
            deepest = max(deepest, d)
            if isinstance(v, dict):
                for k in v:
                    _check_text(k)
                children: Any = v.values()
            else:
                children = v
            stack.extend((c, d + 1) for c in children if isinstance(c, dict | list | str))
    return deepest


def _check_text(s: str) -> None:
    m = _SURROGATE.search(s)
    if m is not None:
        raise InvalidArgument(
            f"JSON string has a lone surrogate \\u{ord(m.group()):04x} at offset {m.start()} "
            "(not valid Unicode)"
        )


# Cheap byte-level tells that a body may hold what the plain parser lets through: a 19+ digit run
# (an integer past 64 bits, or a float that may overflow), a 3-digit exponent, NaN/Infinity
# literals, a \\u escape of a surrogate. Bodies without them (nearly all) take the plain C parser
# with no per-value Python callbacks; the others take the checked path. False alarms (inside
# strings) only cost the slower path.
_NUMBER_SHAPE = bytes.maketrans(b"123456789E-", b"000000000e+")
_BIG_EXPONENT = re.compile(rb"e\+?000")
_SUSPECT_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def _hooks(raw: bytes) -> dict[str, Any]:
    """The checking callbacks this body needs: parse_int only when a 19+ digit run appears (it is
    called for integer tokens only), parse_float only for a 3-digit exponent or a 300+ digit run
    (the only ways to overflow a double), parse_constant only for NaN/Infinity literals."""
    hooks: dict[str, Any] = {}
    if b"NaN" in raw or b"Infinity" in raw:
        hooks["parse_constant"] = _parse_constant
    shape = raw.translate(_NUMBER_SHAPE)
    if b"0" * 19 in shape:
        hooks["parse_int"] = _parse_int
        if b"0" * 300 in shape:
            hooks["parse_float"] = _parse_float
    if _BIG_EXPONENT.search(shape) is not None:  # a regex: its literal prefix scan is fast here
        hooks["parse_float"] = _parse_float
    return hooks


def parse_json(raw: bytes | memoryview, max_depth: int, what: str = "request body") -> Any:
    """Parses a JSON request body safely: depth checked before parsing, integers limited to 64
    bits, floats finite (1e999 and NaN refused), strings valid Unicode. Every refusal is an
    InvalidArgument (400)."""
    raw = bytes(raw)
    check_json_depth(raw, max_depth)
    try:
        value = json.loads(raw, **_hooks(raw))
    except InvalidArgument as exc:
        raise InvalidArgument(f"{what}: {exc.message}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    if _SUSPECT_SURROGATE.search(raw) is not None:
        json_depth(value, max_depth)  # walks every string
    return value


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
