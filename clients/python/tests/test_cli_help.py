"""Every CLI command has --help with an example; bad usage exits 2 (in process: no server)."""

from __future__ import annotations

from typer.testing import CliRunner

from modelserve_client.cli import app

GROUPS = {
    "models": ["list", "get", "create", "delete", "push"],
    "versions": ["list", "get"],
    "aliases": ["set", "list", "delete"],
    "pipelines": ["apply", "list", "get", "delete", "run"],
    "executions": ["submit", "get", "list", "cancel", "watch"],
    "tenants": ["create", "list"],
    "keys": ["create", "list", "rotate", "revoke"],
}


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    cmds = [[c] for c in ("login", "status", "deploy", "infer")] + [
        [g, s] for g, subs in GROUPS.items() for s in subs
    ]
    cmds += [[g] for g in GROUPS] + [[]]
    for cmd in cmds:
        r = runner.invoke(app, [*cmd, "--help"])
        assert r.exit_code == 0 and "Example" in r.output, (cmd, r.output)


def test_usage_errors_exit_2_before_any_call() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["--url", "127.0.0.1:1", "infer", "m", "--input", "x"]).exit_code == 2
    assert runner.invoke(app, ["--url", "127.0.0.1:1", "infer", "m"]).exit_code == 2
    assert runner.invoke(app, ["models", "frobnicate"]).exit_code == 2
