"""`modelserve`: the platform's command line (Typer + Rich) over the SDK.

Exit codes: 0 success, 1 the server refused or the operation failed, 2 a usage error.
`--output json` prints stable JSON (the SDK's dicts: proto field names, enums as names, tensors
as {"datatype", "shape", "data"}); errors are one line on stderr: `error: CODE: message
(request id ...)`; `--debug` adds the traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from . import config as cfg
from ._cli_access import keys_app, tenants_app
from ._cli_common import EXIT_FAILED, STATE, Output, emit, err, run
from ._cli_models import aliases_app, deploy, infer, models_app, versions_app
from ._cli_pipelines import executions_app, pipelines_app
from .client import Client
from .errors import ModelServeError, Unauthenticated

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


# --- command groups (one module each) ----------------------------------------------------------
app.add_typer(models_app, name="models")
app.add_typer(versions_app, name="versions")
app.add_typer(aliases_app, name="aliases")
app.command()(deploy)
app.command()(infer)
app.add_typer(pipelines_app, name="pipelines")
app.add_typer(executions_app, name="executions")
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except Unauthenticated as e:  # pragma: no cover - run() handles it; kept for safety
        err.print(f"error: {e}", markup=False)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
