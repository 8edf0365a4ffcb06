"""Triton Python-backend model: an exaone4-export ONNX decoder run with onnxruntime on the CPU.

IO follows the export's contract (input_ids, attention_mask, position_ids,
past_key_values.* -> logits, present.*). Written by `exaone4-export triton`;
needs numpy and onnxruntime in the backend's Python environment.
"""

import json
import os

import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        threads = int(parameters.get("intra_op_threads", {}).get("string_value", "0"))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        here = os.path.join(args["model_repository"], args["model_version"])
        model_file = parameters["model_file"]["string_value"]  # written by `exaone4-export triton`
        self.session = ort.InferenceSession(os.path.join(here, model_file), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                feeds = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs}
                results = self.session.run(self.outputs, feeds)
                tensors = [pb_utils.Tensor(name, value) for name, value in zip(self.outputs, results)]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:  # report to the client, keep serving
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"exaone4_decoder: {exc}")))
        return responses
