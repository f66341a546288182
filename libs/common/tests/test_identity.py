"""modelserve_common.identity: the one Caller and the scope names."""

from __future__ import annotations

from modelserve_common.context import SCOPES_HEADER, TENANT_HEADER
from modelserve_common.identity import ADMIN, PLATFORM_OWNER, TENANT_ADMIN, TRUSTED, Caller


def test_no_tenant_header_is_a_trusted_caller_that_sees_everything() -> None:
    c = Caller.from_metadata([(SCOPES_HEADER, "read")])
    assert c.is_trusted and c.visible is None and c.owner == PLATFORM_OWNER
    assert c.has(ADMIN) and c.can_see("acme")
    assert c.metadata() is None


def test_tenant_caller_is_confined_whatever_its_scopes() -> None:
    c = Caller.from_metadata([(TENANT_HEADER, "acme"), (SCOPES_HEADER, "admin, read")])
    assert not c.is_trusted
    assert c.visible == "acme" and c.owner == "acme"
    assert c.can_see("acme") and not c.can_see("other")
    assert c.has("read") and c.has(ADMIN)  # holds the name, yet is_trusted stays False
    assert not c.has("write")


def test_tenant_admin_implies_read_write_infer_only() -> None:
    c = Caller("acme", frozenset({TENANT_ADMIN}))
    assert all(c.has(s) for s in ("read", "write", "infer", TENANT_ADMIN))
    assert not c.has(ADMIN)


def test_empty_tenant_header_reads_as_absent_and_bytes_values_decode() -> None:
    assert Caller.from_metadata([(TENANT_HEADER, "")]).is_trusted
    c = Caller.from_metadata([(TENANT_HEADER, b"acme"), (SCOPES_HEADER, b"infer")])
    assert c == Caller("acme", frozenset({"infer"}))


def test_a_binary_header_of_the_client_is_not_decoded() -> None:
    """A "-bin" value that is not UTF-8 (grpc passes binary headers as bytes) names no one: it
    neither fails the call nor changes the caller."""
    md = [("x-client-trace-bin", b"\xff\xfe\x00"), (TENANT_HEADER, "acme"), (SCOPES_HEADER, "infer")]
    assert Caller.from_metadata(md) == Caller("acme", frozenset({"infer"}))
    assert Caller.from_metadata([("x-client-trace-bin", b"\xff")]).is_trusted


def test_metadata_round_trips_and_may_replace_the_scopes() -> None:
    c = Caller("acme", frozenset({"write", "read"}))
    md = c.metadata()
    assert md == ((TENANT_HEADER, "acme"), (SCOPES_HEADER, "read,write"))
    assert Caller.from_metadata(md) == c
    assert c.metadata(frozenset({"infer"})) == ((TENANT_HEADER, "acme"), (SCOPES_HEADER, "infer"))
    assert TRUSTED.is_trusted and TRUSTED.metadata() is None
