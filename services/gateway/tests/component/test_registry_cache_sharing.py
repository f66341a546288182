"""The gateway's view of ownership from the registry: own and shared deployments are usable, an
unshared one of another tenant is NOT_FOUND, a name without a deployment is left to the model
server; a model change seen on Watch (its shared flag) is looked up again at once."""

from __future__ import annotations

import grpc
import pytest

from modelserve.registry.v1 import registry_service_pb2 as reg_pb
from modelserve_common.errors import NotFound
from modelserve_gateway.clients import Upstream
from modelserve_gateway.protection import CircuitBreaker
from modelserve_gateway.registry_cache import RegistryCache


async def test_usable_deployments_and_shared_flag_changes(upstreams, registry) -> None:
    registry.deploy("add", "t1", {"1": 100})
    registry.deploy("identity", "t2", {"1": 100})
    async with grpc.aio.insecure_channel(upstreams["registry"]) as channel:
        up = Upstream("registry", channel, 5.0, CircuitBreaker("registry", 5, 5.0))
        cache = RegistryCache(up, key_ttl_s=60, deployment_ttl_s=600)
        assert (await cache.usable_deployment("add", "t1")).tenant == "t1"
        with pytest.raises(NotFound) as refused:
            await cache.usable_deployment("identity", "t1")
        assert refused.value.message == "model 'identity' not found in the repository"
        assert (await cache.usable_deployment("identity", "")).tenant == "t2"  # trusted caller
        # No deployment: not decided here (None), the model server decides.
        assert await cache.usable_deployment("local-model", "t1") is None

        # The platform admin shares the model: the cached entry is stale until Watch says so.
        registry.deployments["identity"].shared = True
        with pytest.raises(NotFound):
            await cache.usable_deployment("identity", "t1")
        cache.apply(
            reg_pb.WatchResponse(
                revision=7,
                type=reg_pb.CHANGE_TYPE_UPDATED,
                model=reg_pb.Model(name="identity", tenant="t2", shared=True),
            )
        )
        assert (await cache.usable_deployment("identity", "t1")).shared
        assert (await cache.usable_deployment("identity", "t1")).tenant == "t2"
        # Unshared again.
        registry.deployments["identity"].shared = False
        cache.apply(
            reg_pb.WatchResponse(
                revision=8, type=reg_pb.CHANGE_TYPE_UPDATED, model=reg_pb.Model(name="identity", tenant="t2")
            )
        )
        with pytest.raises(NotFound):
            await cache.usable_deployment("identity", "t1")
