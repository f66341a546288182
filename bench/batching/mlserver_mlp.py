"""MLServer custom runtime "mlp" (model-settings.json implementation "mlserver_mlp.MLPModel").
With adaptive batching MLServer concatenates queued requests (up to max_batch_size rows, waiting up
to max_batch_time) into one predict call, so the fixed part is paid once per batch."""

import os
import sys

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlp_compute  # noqa: E402


class MLPModel(MLModel):
    async def load(self) -> bool:
        mlp_compute.forward(np.zeros((1, mlp_compute.D_IN), np.float32))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        y = mlp_compute.forward(x)
        return InferenceResponse(
            model_name=self.name, model_version=self.version, outputs=[NumpyCodec.encode_output("y", y)]
        )
