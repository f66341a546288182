#!/usr/bin/env python3
"""KServe 0.21 ModelServer serving "mlp" over v2 gRPC (KServe has no in-process dynamic batcher:
every request is one call). Modeled on ../shared/peer-bench/servers/kserve_server.py.

    kserve_mlp.py --grpc_port P --http_port Q [--quiet true]   (other kserve flags pass through)

predict is async and computes on the event loop (--inline true, the default, as
../shared/peer-bench's kserve_server.py does); --inline false hands it to a worker thread
(asyncio.to_thread), which measured about 10x slower here (GIL hand-offs between the threads).
"""

import argparse
import asyncio
import logging
import os
import sys

ours = argparse.ArgumentParser(add_help=False)
ours.add_argument("--quiet", default="true")
ours.add_argument("--inline", default="true")
q, rest = ours.parse_known_args()
sys.argv = [sys.argv[0], *rest]

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kserve  # noqa: E402
import mlp_compute  # noqa: E402
import numpy as np  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse  # noqa: E402

INLINE = q.inline.lower() in ("1", "true", "yes")


class MLPModel(kserve.Model):
    def __init__(self, name: str):
        super().__init__(name)
        self.load()

    def load(self) -> bool:
        mlp_compute.forward(np.zeros((1, mlp_compute.D_IN), np.float32))
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        x = payload.inputs[0].as_numpy()
        y = mlp_compute.forward(x) if INLINE else await asyncio.to_thread(mlp_compute.forward, x)
        out = InferOutput(name="y", shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=True)
        return InferResponse(
            response_id=payload.id or "", model_name=self.name, infer_outputs=[out], use_binary_outputs=True
        )


if __name__ == "__main__":
    server = kserve.ModelServer()
    if q.quiet.lower() in ("1", "true", "yes"):
        from kserve.logging import logger as klog
        from kserve.logging import trace_logger

        for lg in (klog, trace_logger, logging.getLogger("uvicorn.access")):
            lg.setLevel(logging.WARNING)
    server.start([MLPModel("mlp")])
