"""`modelserve models|versions|aliases|deploy|infer`: models, their versions and aliases, routing
traffic, and running a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._cli_common import (
    STATE,
    InputOpt,
    JsonOpt,
    Output,
    UsageError,
    emit,
    err,
    model_types,
    parse_inputs,
    plain,
    run,
)
from .tensors import datatype_of

models_app = typer.Typer(help="Models.\n\nExample: modelserve models list", no_args_is_help=True)


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
        inputs, dts = parse_inputs(input, json_req, model_types(c, model, version))
        res = c.infer(model, inputs, version=version, alias=alias, datatypes=dts)
        if STATE.output is Output.table:
            emit(
                [
                    {
                        "output": k,
                        "datatype": datatype_of(v),
                        "shape": list(v.shape),
                        "data": plain(v)["data"],
                    }
                    for k, v in res.items()
                ],
                ["output", "datatype", "shape", "data"],
            )
        else:
            emit({"outputs": res})

    run(body)
