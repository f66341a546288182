"""`modelserve`: the platform's command line (Typer + Rich) over the SDK.

Exit codes: 0 success, 1 the server refused or the operation failed, 2 a usage error.
`--output json` prints stable JSON (the SDK's dicts: proto field names, enums as names, tensors
as {"datatype", "shape", "data"}); errors are one line on stderr: `error: CODE: message
(request id ...)`; `--debug` adds the traceback.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
import yaml
from rich.console import Console
from rich.table import Table

from . import config as cfg
from .client import Client
from .errors import ModelServeError, Unauthenticated
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


app = typer.Typer(
    help="Drive the ModelServe platform.\n\nExample: modelserve --url 127.0.0.1:50050 models list",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    profile: Annotated[str | None, typer.Option(help="Profile in config.toml (see `login`).")] = None,
    url: Annotated[str | None, typer.Option(help="Gateway gRPC address, e.g. 127.0.0.1:50050.")] = None,
    api_key: Annotated[str | None, typer.Option(help="API key (else MODELSERVE_API_KEY / profile).")] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="table, json or yaml.")] = Output.table,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Global options come before the command: modelserve -o json models list"""
    STATE.profile, STATE.url, STATE.api_key, STATE.output, STATE.debug = profile, url, api_key, output, debug


# --- output ------------------------------------------------------------------------------------
def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        data = v.tolist()
        if v.dtype == object:
            data = [
                x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v.reshape(-1).tolist()
            ]
            data = np.asarray(data, dtype=object).reshape(v.shape).tolist()
        return {"datatype": datatype_of(v), "shape": list(v.shape), "data": data}
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def emit(data: Any, columns: list[str] | None = None, title: str | None = None) -> None:
    data = _plain(data)
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


def _model_types(c: Client, model: str, version: str | None) -> dict[str, str]:
    try:
        md = c.model_metadata(model, version)
    except ModelServeError:
        return {}
    return {t["name"]: t["datatype"] for t in md.get("inputs", []) if "datatype" in t}


def _pipeline_types(c: Client, name: str) -> dict[str, str]:
    try:
        p = c.get_pipeline(name)
    except ModelServeError:
        return {}
    return {t["name"]: t["datatype"] for t in p.get("inputs", []) if "datatype" in t}


InputOpt = Annotated[list[str], typer.Option("--input", "-i", help="name=@data.npy | name='[[1,2]]'")]
JsonOpt = Annotated[str | None, typer.Option("--json", help="@request.json (KServe v2 JSON inputs)")]


# --- login / status ----------------------------------------------------------------------------
@app.command()
def login(
    url: Annotated[str, typer.Option(prompt=True, help="Gateway gRPC address.")],
    api_key: Annotated[str, typer.Option(prompt=True, hide_input=True, help="Your API key.")],
    profile: Annotated[str, typer.Option(help="Profile name to write.")] = cfg.DEFAULT_PROFILE,
) -> None:
    """Check a key against the server and save it as a profile (config.toml, mode 0600).

    Example: modelserve login --url 127.0.0.1:50050 --api-key $KEY --profile prod
    """

    def body() -> None:
        with Client(url, api_key=api_key) as c:
            c.list_deployments()  # needs a valid key
        path = cfg.write_profile(profile, url, api_key=api_key)
        emit({"profile": profile, "url": url, "config": str(path)})

    run(body)


@app.command()
def status() -> None:
    """Server readiness and every deployed model's readiness.

    Example: modelserve status
    """

    def body() -> None:
        with STATE.client() as c:
            rows: list[dict[str, Any]] = [{"what": "server", "ready": c.server_ready()}]
            for d in c.list_deployments():
                try:
                    ready = c.model_ready(d["model"])
                except ModelServeError as e:
                    ready = f"no ({e.code})"
                rows.append({"what": f"model {d['model']}", "ready": ready})
        emit(rows, ["what", "ready"])

    run(body)


# --- models ------------------------------------------------------------------------------------
models_app = typer.Typer(help="Models.\n\nExample: modelserve models list", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list() -> None:
    """List the models you may see. Example: modelserve models list -o json"""
    run(lambda: emit(list(STATE.client().list_models()), ["name", "latest_version", "tenant", "description"]))


@models_app.command("get")
def models_get(name: str) -> None:
    """Show one model. Example: modelserve models get churn"""
    run(lambda: emit(STATE.client().get_model(name)))


@models_app.command("create")
def models_create(name: str, description: Annotated[str, typer.Option()] = "") -> None:
    """Register a model name. Example: modelserve models create churn --description 'churn model'"""
    run(lambda: emit(STATE.client().create_model(name, description)))


@models_app.command("delete")
def models_delete(name: str) -> None:
    """Delete a model. Example: modelserve models delete churn"""

    def body() -> None:
        STATE.client().delete_model(name)
        emit({"deleted": name})

    run(body)


@models_app.command("push")
def models_push(
    path: Path,
    name: Annotated[str, typer.Option(help="Model name (created when missing).")],
    backend: Annotated[str | None, typer.Option(help="onnx, python or triton (else inferred).")] = None,
    deploy: Annotated[bool, typer.Option(help="Route all traffic to the new version.")] = False,
    alias: Annotated[str | None, typer.Option(help="Point this alias at the new version.")] = None,
) -> None:
    """Upload a file or folder as the next version.

    Example: modelserve models push model.onnx --name churn --deploy --alias production
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    def body() -> None:
        with Progress(
            BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(), console=err
        ) as bar:
            task = bar.add_task("upload", total=None)

            def progress(sent: int, total: int) -> None:
                bar.update(task, completed=sent, total=total)

            mv = STATE.client().push(
                name, path, backend=backend, deploy=deploy, alias=alias, progress=progress
            )
        emit(mv, ["model", "version", "backend", "artifact_sha256", "status"])

    run(body)


# --- versions / aliases / deploy ---------------------------------------------------------------
versions_app = typer.Typer(
    help="Model versions.\n\nExample: modelserve versions list churn", no_args_is_help=True
)
app.add_typer(versions_app, name="versions")


@versions_app.command("list")
def versions_list(model: str) -> None:
    """List a model's versions. Example: modelserve versions list churn"""
    cols = ["version", "backend", "status", "aliases", "artifact_uri"]
    run(lambda: emit(list(STATE.client().list_versions(model)), cols))


@versions_app.command("get")
def versions_get(model: str, version: str) -> None:
    """Show one version. Example: modelserve versions get churn 2"""
    run(lambda: emit(STATE.client().get_version(model, version)))


aliases_app = typer.Typer(
    help="Aliases.\n\nExample: modelserve aliases set churn production 2", no_args_is_help=True
)
app.add_typer(aliases_app, name="aliases")


@aliases_app.command("set")
def aliases_set(model: str, alias: str, version: str) -> None:
    """Point an alias at a version. Example: modelserve aliases set churn production 2"""
    run(lambda: emit(STATE.client().set_alias(model, alias, version)))


@aliases_app.command("list")
def aliases_list(model: str) -> None:
    """List a model's aliases. Example: modelserve aliases list churn"""
    run(lambda: emit(STATE.client().list_aliases(model), ["alias", "version"]))


@aliases_app.command("delete")
def aliases_delete(model: str, alias: str) -> None:
    """Delete an alias. Example: modelserve aliases delete churn production"""

    def body() -> None:
        STATE.client().delete_alias(model, alias)
        emit({"deleted": alias})

    run(body)


@app.command()
def deploy(
    model: str,
    version: Annotated[
        list[str], typer.Option("--version", "-v", help="VERSION=WEIGHT (repeatable) or VERSION.")
    ],
    mirror: Annotated[str | None, typer.Option(help="Version that gets a mirrored copy of traffic.")] = None,
    rate_limit: Annotated[float | None, typer.Option(help="Requests per second for the model.")] = None,
) -> None:
    """Route a model's traffic. Example: modelserve deploy churn --version 2=90 --version 3=10 --mirror 4"""

    def body() -> None:
        weights: dict[str, int] = {}
        for v in version:
            num, sep, w = v.partition("=")
            try:
                weights[num] = int(w) if sep else 100
            except ValueError:
                raise UsageError(f"--version wants VERSION=WEIGHT, got {v!r}") from None
        emit(STATE.client().deploy(model, weights, mirror=mirror, rate_limit=rate_limit))

    run(body)


# --- inference ---------------------------------------------------------------------------------
@app.command()
def infer(
    model: str,
    input: InputOpt = [],  # noqa: B006 - typer reads the default
    json_req: JsonOpt = None,
    version: Annotated[str | None, typer.Option(help="Version number.")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias (e.g. production).")] = None,
) -> None:
    """Run a model. Example: modelserve infer classifier --input features='[[5.1,3.5,1.4,0.2]]'"""

    def body() -> None:
        c = STATE.client()
        inputs, dts = parse_inputs(input, json_req, _model_types(c, model, version))
        res = c.infer(model, inputs, version=version, alias=alias, datatypes=dts)
        if STATE.output is Output.table:
            emit(
                [
                    {
                        "output": k,
                        "datatype": datatype_of(v),
                        "shape": list(v.shape),
                        "data": _plain(v)["data"],
                    }
                    for k, v in res.items()
                ],
                ["output", "datatype", "shape", "data"],
            )
        else:
            emit({"outputs": res})

    run(body)


# --- pipelines ---------------------------------------------------------------------------------
pipelines_app = typer.Typer(
    help="Pipelines.\n\nExample: modelserve pipelines apply -f p.yaml", no_args_is_help=True
)
app.add_typer(pipelines_app, name="pipelines")


@pipelines_app.command("apply")
def pipelines_apply(file: Annotated[Path, typer.Option("-f", "--file", help="YAML or JSON spec.")]) -> None:
    """Create or update a pipeline. Example: modelserve pipelines apply -f pipeline.yaml"""
    run(lambda: emit(STATE.client().apply(str(file)), ["name", "version", "description"]))


@pipelines_app.command("list")
def pipelines_list() -> None:
    """List pipelines. Example: modelserve pipelines list"""
    run(lambda: emit(list(STATE.client().list_pipelines()), ["name", "version", "description"]))


@pipelines_app.command("get")
def pipelines_get(name: str) -> None:
    """Show a pipeline. Example: modelserve pipelines get fraud"""
    run(lambda: emit(STATE.client().get_pipeline(name)))


@pipelines_app.command("delete")
def pipelines_delete(name: str) -> None:
    """Delete a pipeline. Example: modelserve pipelines delete fraud"""

    def body() -> None:
        STATE.client().delete_pipeline(name)
        emit({"deleted": name})

    run(body)


@pipelines_app.command("run")
def pipelines_run(name: str, input: InputOpt = [], json_req: JsonOpt = None) -> None:  # noqa: B006
    """Run a pipeline and show outputs and the per-node trace.

    Example: modelserve pipelines run fraud --input features='[[5.1,3.5,1.4,0.2]]'
    """

    def body() -> None:
        c = STATE.client()
        inputs, dts = parse_inputs(input, json_req, _pipeline_types(c, name))
        res = c.run(name, inputs, datatypes=dts)
        _show_result(res)

    run(body)


def _show_result(res: dict[str, Any]) -> None:
    if STATE.output is not Output.table:
        emit(res)
        return
    emit(
        [{"output": k, "shape": list(v.shape), "data": _plain(v)["data"]} for k, v in res["outputs"].items()],
        ["output", "shape", "data"],
        title="outputs",
    )
    emit(
        res.get("trace", []),
        ["node", "status", "latency", "attempts", "model_name", "message"],
        title="trace",
    )


# --- executions --------------------------------------------------------------------------------
executions_app = typer.Typer(help="Executions.\n\nExample: modelserve executions list", no_args_is_help=True)
app.add_typer(executions_app, name="executions")
_EXEC_COLS = ["execution", "pipeline", "state", "attempts", "error"]


@executions_app.command("submit")
def executions_submit(
    pipeline: str,
    input: InputOpt = [],  # noqa: B006
    json_req: JsonOpt = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Repeat-safe key.")] = None,
    webhook: Annotated[str | None, typer.Option(help="URL told of the outcome.")] = None,
) -> None:
    """Start an asynchronous execution. Example: modelserve executions submit fraud -i x='[[1,2]]'"""

    def body() -> None:
        c = STATE.client()
        inputs, dts = parse_inputs(input, json_req, _pipeline_types(c, pipeline))
        emit(
            c.submit(pipeline, inputs, idempotency_key=idempotency_key, webhook=webhook, datatypes=dts),
            _EXEC_COLS,
        )

    run(body)


@executions_app.command("get")
def executions_get(execution: str) -> None:
    """Show an execution. Example: modelserve executions get 7f3c..."""
    run(lambda: emit(STATE.client().get_execution(execution), _EXEC_COLS))


@executions_app.command("list")
def executions_list(pipeline: Annotated[str, typer.Option(help="Only this pipeline's.")] = "") -> None:
    """List executions. Example: modelserve executions list --pipeline fraud"""
    run(lambda: emit(list(STATE.client().list_executions(pipeline)), _EXEC_COLS))


@executions_app.command("cancel")
def executions_cancel(execution: str, reason: Annotated[str, typer.Option()] = "") -> None:
    """Cancel an execution. Example: modelserve executions cancel 7f3c... --reason 'wrong input'"""
    run(lambda: emit(STATE.client().cancel_execution(execution, reason), _EXEC_COLS))


@executions_app.command("watch")
def executions_watch(
    execution: str,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600.0,
) -> None:
    """Follow an execution until it ends; exit 0 if it succeeded, 1 otherwise.

    Example: modelserve executions watch 7f3c...
    """
    outcome: dict[str, Any] = {}

    def body() -> None:
        c = STATE.client()
        start = time.monotonic()
        for ev in c.watch(execution, timeout=timeout):
            node = ev.get("node") or {}
            line = {
                "elapsed_s": round(time.monotonic() - start, 3),
                "event": ev.get("type", ""),
                "state": ev.get("state", ""),
                "node": node.get("node", ""),
                "status": node.get("status", ""),
                "attempts": node.get("attempts", ""),
            }
            if STATE.output is Output.table:
                out.print(" ".join(f"{k}={v}" for k, v in line.items() if v != ""), markup=False)
            else:
                emit(line)
            if ev.get("state") in (
                "EXECUTION_STATE_SUCCEEDED",
                "EXECUTION_STATE_FAILED",
                "EXECUTION_STATE_CANCELLED",
            ):
                outcome["state"] = ev["state"]
                break
        if "state" not in outcome:
            outcome["state"] = c.get_execution(execution).get("state")

    run(body)
    if outcome.get("state") != "EXECUTION_STATE_SUCCEEDED":
        err.print(f"execution {execution} ended {outcome.get('state')}", markup=False)
        raise typer.Exit(EXIT_FAILED)


# --- tenants and keys --------------------------------------------------------------------------
tenants_app = typer.Typer(
    help="Tenants (platform admin).\n\nExample: modelserve tenants list", no_args_is_help=True
)
app.add_typer(tenants_app, name="tenants")


@tenants_app.command("create")
def tenants_create(name: str, display_name: Annotated[str, typer.Option()] = "") -> None:
    """Create a tenant. Example: modelserve tenants create acme --display-name 'Acme Inc'"""
    run(lambda: emit(STATE.client().create_tenant(name, display_name), ["name", "display_name"]))


@tenants_app.command("list")
def tenants_list() -> None:
    """List tenants. Example: modelserve tenants list"""
    run(lambda: emit(list(STATE.client().list_tenants()), ["name", "display_name", "max_models"]))


keys_app = typer.Typer(help="API keys.\n\nExample: modelserve keys list acme", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
_KEY_COLS = ["key", "tenant", "display_name", "scopes", "expire_time", "revoke_time"]


def _secret(res: dict[str, Any]) -> None:
    emit(res)
    err.print("warning: the secret is shown only once; store it now.", markup=False)


@keys_app.command("create")
def keys_create(
    tenant: str,
    scope: Annotated[
        list[str], typer.Option("--scope", help="read, write, infer, tenant-admin (repeatable).")
    ],
    display_name: Annotated[str, typer.Option()] = "",
) -> None:
    """Create a key (secret printed once). Example: modelserve keys create acme --scope infer --scope read"""
    run(lambda: _secret(STATE.client().create_key(tenant, scope, display_name)))


@keys_app.command("list")
def keys_list(tenant: str) -> None:
    """List a tenant's keys. Example: modelserve keys list acme"""
    run(lambda: emit(STATE.client().list_keys(tenant), _KEY_COLS))


@keys_app.command("rotate")
def keys_rotate(
    tenant: str,
    key: str,
    grace: Annotated[float, typer.Option(help="Seconds the old secret still works.")] = 0.0,
) -> None:
    """New secret for a key. Example: modelserve keys rotate acme k_123 --grace 3600"""
    run(lambda: _secret(STATE.client().rotate_key(tenant, key, grace)))


@keys_app.command("revoke")
def keys_revoke(tenant: str, key: str) -> None:
    """Revoke a key. Example: modelserve keys revoke acme k_123"""

    def body() -> None:
        STATE.client().revoke_key(tenant, key)
        emit({"revoked": key})

    run(body)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except Unauthenticated as e:  # pragma: no cover - run() handles it; kept for safety
        err.print(f"error: {e}", markup=False)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
