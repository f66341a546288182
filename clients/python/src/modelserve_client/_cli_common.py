"""What every `modelserve` command shares: global state (options before the command), output
(table, json, yaml), error handling and exit codes, and reading tensors from the command line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
import yaml
from rich.console import Console
from rich.table import Table

from .client import Client
from .errors import ModelServeError
from .tensors import datatype_of, from_json_tensor, to_array

EXIT_FAILED = 1
EXIT_USAGE = 2

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


@dataclass
class State:
    profile: str | None = None
    url: str | None = None
    api_key: str | None = None
    output: Output = Output.table
    debug: bool = False

    def client(self) -> Client:
        return Client(self.url, api_key=self.api_key, profile=self.profile)


STATE = State()


class UsageError(Exception):
    """Bad input on the command line (exit code 2)."""


# --- output ------------------------------------------------------------------------------------
def plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        data = v.tolist()
        if v.dtype == object:
            data = [
                x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v.reshape(-1).tolist()
            ]
            data = np.asarray(data, dtype=object).reshape(v.shape).tolist()
        return {"datatype": datatype_of(v), "shape": list(v.shape), "data": data}
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def emit(data: Any, columns: list[str] | None = None, title: str | None = None) -> None:
    data = plain(data)
    if STATE.output is Output.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    if STATE.output is Output.yaml:
        print(yaml.safe_dump(data, sort_keys=True), end="")
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        out.print("(none)")
        return
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows if isinstance(r, dict) for k in r))
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[_cell(r.get(c)) if isinstance(r, dict) else str(r) for c in columns])
    out.print(t)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True)
    return str(v)


def run(fn: Any) -> None:
    """Run one command body with the CLI's error handling and exit codes."""
    try:
        fn()
    except ModelServeError as e:
        _fail(f"error: {e}", EXIT_FAILED)
    except (UsageError, ValueError, FileNotFoundError, json.JSONDecodeError, yaml.YAMLError) as e:
        _fail(f"usage error: {e}", EXIT_USAGE)


def _fail(line: str, code: int) -> None:
    if STATE.debug:
        import traceback

        traceback.print_exc()
    err.print(line, markup=False, highlight=False)
    raise typer.Exit(code)


# --- inputs ------------------------------------------------------------------------------------
def _load_value(text: str) -> Any:
    """`@file.npy`, `@file.json` or inline JSON."""
    if text.startswith("@"):
        p = Path(text[1:])
        if p.suffix == ".npy":
            return np.load(p, allow_pickle=False)
        return json.loads(p.read_text())
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"not JSON: {text!r} ({e.msg}); use name=@file.npy or name='[[1,2]]'") from None


def parse_inputs(
    pairs: list[str], json_req: str | None, types: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """--input name=VALUE pairs and/or --json @request.json (KServe v2 JSON: {"inputs": [...]})."""
    inputs: dict[str, Any] = {}
    dts: dict[str, str] = {}
    if json_req:
        body = _load_value(json_req)
        tensors = body.get("inputs") if isinstance(body, dict) else body
        if not isinstance(tensors, list):
            raise UsageError('--json wants {"inputs": [{"name", "datatype", "shape", "data"}, ...]}')
        for t in tensors:
            name, arr, dt = from_json_tensor(t)
            inputs[name] = arr
            if dt:
                dts[name] = dt
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--input wants name=VALUE, got {pair!r}")
        inputs[name] = _load_value(value)
    for name, v in list(inputs.items()):
        dt = dts.get(name) or types.get(name)
        if dt:
            dts[name] = dt
            inputs[name] = to_array(v, dt)
    if not inputs:
        raise UsageError("give at least one --input name=VALUE or --json @request.json")
    return inputs, dts


def model_types(c: Client, model: str, version: str | None) -> dict[str, str]:
    try:
        md = c.model_metadata(model, version)
    except ModelServeError:
        return {}
    return {t["name"]: t["datatype"] for t in md.get("inputs", []) if "datatype" in t}


def pipeline_types(c: Client, name: str) -> dict[str, str]:
    try:
        p = c.get_pipeline(name)
    except ModelServeError:
        return {}
    return {t["name"]: t["datatype"] for t in p.get("inputs", []) if "datatype" in t}


InputOpt = Annotated[list[str], typer.Option("--input", "-i", help="name=@data.npy | name='[[1,2]]'")]
JsonOpt = Annotated[str | None, typer.Option("--json", help="@request.json (KServe v2 JSON inputs)")]
