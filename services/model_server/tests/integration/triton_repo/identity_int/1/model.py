"""Identity model of the python backend: every input IN_<T> comes back as output OUT_<T>."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import json

        config = json.loads(args["model_config"])
        self.names = [i["name"] for i in config["input"]]

    def execute(self, requests):
        responses = []
        for r in requests:
            outs = []
            for name in self.names:
                t = pb_utils.get_input_tensor_by_name(r, name)
                if t is not None:
                    outs.append(pb_utils.Tensor("OUT_" + name[3:], t.as_numpy()))
            responses.append(pb_utils.InferenceResponse(output_tensors=outs))
        return responses
