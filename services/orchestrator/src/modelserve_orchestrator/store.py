"""The system of record: pipelines (immutable versions), executions, node results and webhook
deliveries, in PostgreSQL or SQLite. All SQL lives in the store_* modules:

- store_base.py: the database, the parsed-pipeline cache, the tenant filter
- store_pipelines.py: pipeline versions
- store_executions.py: executions, their leases (claim, renew, release), finish, node results
- store_deliveries.py: webhook deliveries and their attempts"""

from __future__ import annotations

from modelserve_orchestrator.store_deliveries import DeliveryStore
from modelserve_orchestrator.store_executions import ExecutionStore
from modelserve_orchestrator.store_pipelines import PipelineStore


class OrchestratorStore(PipelineStore, ExecutionStore, DeliveryStore):
    """Every table of the orchestrator behind one object (constructor: StoreBase)."""
