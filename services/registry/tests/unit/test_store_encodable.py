"""The store refuses, before writing anything, a resource whose time could not be sent back as a
protobuf Timestamp (issue 13 item 5: such a row once broke Watch and the key reads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve_common.migrations import migrate
from modelserve_registry.db import open_database
from modelserve_registry.domain import ApiKey, Tenant
from modelserve_registry.migrations import SCHEMA
from modelserve_registry.store import MAX_TIME_US, RegistryStore, UnencodableResource, check_encodable


@pytest.mark.parametrize(
    "resource",
    [
        Tenant(name="t", create_time=MAX_TIME_US + 1),
        Tenant(name="t", create_time=-1),
        ApiKey(key="k000000000001", tenant="t", previous_expire_time=10**19),
        ApiKey(key="k000000000001", tenant="t", expire_time=MAX_TIME_US * 2),
    ],
)
def test_out_of_range_times_are_unencodable(resource: object) -> None:
    with pytest.raises(UnencodableResource):
        check_encodable(resource)


def test_in_range_times_pass() -> None:
    check_encodable(
        ApiKey(key="k000000000001", tenant="t", expire_time=MAX_TIME_US, previous_expire_time=None)
    )


async def test_record_refuses_before_any_write(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/r.db", tmp_path, min_size=0, max_size=1, timeout_s=2.0)
    await db.open()
    try:
        await migrate(db, SCHEMA)
        store = RegistryStore(db)
        with pytest.raises(UnencodableResource):
            async with store.transaction(write=True) as tx:
                await tx.record("CREATED", "t", "", Tenant(name="t", create_time=MAX_TIME_US + 1))
        async with store.transaction(write=False) as tx:
            assert await tx.revisions() == (0, 0)
            assert await tx.changes_after(0, tenant=None, model=None, limit=10) == ([], 0)
    finally:
        await db.close()
