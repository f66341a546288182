"""`modelserve tenants|keys`: tenants (platform admin) and API keys."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ._cli_common import STATE, emit, err, run

tenants_app = typer.Typer(
    help="Tenants (platform admin).\n\nExample: modelserve tenants list", no_args_is_help=True
)


@tenants_app.command("create")
def tenants_create(name: str, display_name: Annotated[str, typer.Option()] = "") -> None:
    """Create a tenant. Example: modelserve tenants create acme --display-name 'Acme Inc'"""
    run(lambda: emit(STATE.client().create_tenant(name, display_name), ["name", "display_name"]))


@tenants_app.command("list")
def tenants_list() -> None:
    """List tenants. Example: modelserve tenants list"""
    run(lambda: emit(list(STATE.client().list_tenants()), ["name", "display_name", "max_models"]))


keys_app = typer.Typer(help="API keys.\n\nExample: modelserve keys list acme", no_args_is_help=True)
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
