"""WritePredictionLogs needs the platform "admin" scope at the front door (issue 18): a tenant's
key, whatever its scopes (tenant-admin, write), never writes prediction logs; reading them and
drift are ordinary reads and a reference is a write."""

from __future__ import annotations

from modelserve_gateway.scopes import has_scope, is_write, required_scope

REG = "/modelserve.registry.v1.RegistryService"


def test_write_prediction_logs_is_platform_admin_only() -> None:
    needed = required_scope(f"{REG}/WritePredictionLogs")
    assert needed == "admin" and is_write(f"{REG}/WritePredictionLogs")
    for tenant_scopes in ({"tenant-admin"}, {"read", "write", "infer"}):
        assert not has_scope(frozenset(tenant_scopes), needed)
    assert required_scope(f"{REG}/ListPredictionLogs") == "read"
    assert required_scope(f"{REG}/GetModelVersionDrift") == "read"
    assert required_scope(f"{REG}/SetDriftReference") == "write"
