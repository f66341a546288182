"""What the registry's statement classes share: the transaction they run in and JSON encoding.
``StoreTx`` (store.py) combines them: store_models.py (models, deployments), store_versions.py
(versions, aliases, blobs) and store_access.py (tenants, API keys)."""

from __future__ import annotations

import json
from typing import Any

from modelserve_registry.db import Tx


def dumps(obj: Any) -> str:
    """Canonical JSON (compact, sorted keys) of a stored column."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


class TxBase:
    """Typed statements inside one transaction."""

    def __init__(self, tx: Tx, dialect: str, retention: int) -> None:
        self._tx = tx
        self._dialect = dialect
        self._retention = retention
