"""`modelserve pipelines|executions`: pipelines, synchronous runs and asynchronous executions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ._cli_common import (
    EXIT_FAILED,
    STATE,
    InputOpt,
    JsonOpt,
    Output,
    emit,
    err,
    out,
    parse_inputs,
    pipeline_types,
    plain,
    run,
)

pipelines_app = typer.Typer(
    help="Pipelines.\n\nExample: modelserve pipelines apply -f p.yaml", no_args_is_help=True
)


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
        inputs, dts = parse_inputs(input, json_req, pipeline_types(c, name))
        res = c.run(name, inputs, datatypes=dts)
        _show_result(res)

    run(body)


def _show_result(res: dict[str, Any]) -> None:
    if STATE.output is not Output.table:
        emit(res)
        return
    emit(
        [{"output": k, "shape": list(v.shape), "data": plain(v)["data"]} for k, v in res["outputs"].items()],
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
        inputs, dts = parse_inputs(input, json_req, pipeline_types(c, pipeline))
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
