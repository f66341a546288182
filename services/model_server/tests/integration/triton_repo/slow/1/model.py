"""Echo model with a latency set per request (parameter "delay_ms") or per model (DEFAULT_DELAY_MS)."""

import json
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.default_ms = int(config["parameters"]["DEFAULT_DELAY_MS"]["string_value"])

    def execute(self, requests):
        responses = []
        for r in requests:
            delay = json.loads(r.parameters() or "{}").get("delay_ms", self.default_ms)
            time.sleep(int(delay) / 1000.0)
            x = pb_utils.get_input_tensor_by_name(r, "x").as_numpy()
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("y", x)]))
        return responses
