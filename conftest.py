"""Fixtures shared by every test: real PostgreSQL and Redis (see modelserve_common.testing)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from modelserve_common.testing import databases


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database on the loopback PostgreSQL (dropped afterwards)."""
    url, name = databases.create_database()
    try:
        yield url
    finally:
        databases.drop_database(name)


@pytest.fixture
def redis_url() -> str:
    """The loopback Redis URL; use ``redis_prefix`` to keep keys apart."""
    return databases.redis_url()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to this test."""
    return f"mstest:{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def throwaway_postgres() -> Iterator[databases.ThrowawayPostgres]:
    """A PostgreSQL server of the test's own, started; the test may kill and restart it."""
    pg = databases.ThrowawayPostgres().init().start()
    try:
        yield pg
    finally:
        pg.cleanup()


@pytest.fixture
def throwaway_redis() -> Iterator[databases.ThrowawayRedis]:
    """A redis-server of the test's own, started; the test may stop it."""
    r = databases.ThrowawayRedis().start()
    try:
        yield r
    finally:
        r.stop()
