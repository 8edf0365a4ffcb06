"""Triton Python-backend model: `exaone4` of the resident engine's repository, one response per request.

It owns nothing: each request's inputs go unchanged to the engine model
(`exaone4_stream`, parameter `engine_model`) over BLS, its streamed pieces are
joined, and one response carries the whole text and the tool calls. The waiting
happens on a pool of threads (parameter `workers`: the engine's slots plus its
queue), so this model holds as many requests as the engine can and refuses the
rest at once, and plain requests batch with streaming ones in the engine's slots.
The engine's error for a request (a bad input, a full queue) comes back unchanged.
"""

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shipped exaone4 package wins

from exaone4.exporter.serving.inputs import GENERATION_OUTPUTS, TEXT_OUTPUT, TOOL_CALLS  # noqa: E402


class EngineError(Exception):
    """The engine refused or failed the request; `error` is its TritonError."""

    def __init__(self, error):
        super().__init__(error.message())
        self.error = error


class TritonPythonModel:
    def initialize(self, args):
        parameters = {key: value["string_value"] for key, value in json.loads(args["model_config"])["parameters"].items()}
        self.engine = parameters["engine_model"]
        self.capacity = int(parameters["workers"])
        self.workers = ThreadPoolExecutor(self.capacity, thread_name_prefix="exaone4-front")
        self.held = threading.BoundedSemaphore(self.capacity)  # requests in flight here

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            if not self.held.acquire(blocking=False):
                error = pb_utils.TritonError(f"{self.capacity} requests are in flight, as many as the engine holds; retry later",
                                             pb_utils.TritonError.UNAVAILABLE)
                sender.send(pb_utils.InferenceResponse(error=error), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                continue
            inputs = [pb_utils.Tensor(tensor.name(), tensor.as_numpy()) for tensor in request.inputs()]  # copied: ours now
            self.workers.submit(self._answer, inputs, sender)
        return None

    def _answer(self, inputs, sender):
        try:
            self._answer_once(inputs, sender)
        finally:
            self.held.release()

    def _answer_once(self, inputs, sender):
        try:
            text, calls = self._collect(inputs, sender)
            outputs = [_string(TEXT_OUTPUT, text), _string(TOOL_CALLS, calls)]
            sender.send(pb_utils.InferenceResponse(output_tensors=outputs), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except EngineError as exc:  # the engine's message and code, unchanged
            sender.send(pb_utils.InferenceResponse(error=exc.error), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _collect(self, inputs, sender):
        """(whole text, tool calls as JSON) from the engine's stream for these inputs."""
        request = pb_utils.InferenceRequest(model_name=self.engine, requested_output_names=list(GENERATION_OUTPUTS), inputs=inputs)
        pieces, calls = [], "[]"
        for response in request.exec(decoupled=True):
            if response.has_error():
                raise EngineError(response.error())
            text = pb_utils.get_output_tensor_by_name(response, TEXT_OUTPUT)
            if text is not None:
                pieces.append(text.as_numpy().reshape(-1)[0].decode("utf-8"))
            tools = pb_utils.get_output_tensor_by_name(response, TOOL_CALLS)
            if tools is not None:
                calls = tools.as_numpy().reshape(-1)[0].decode("utf-8")
            if sender.is_cancelled():
                raise RuntimeError("cancelled by the client")
        return "".join(pieces), calls

    def finalize(self):
        self.workers.shutdown(wait=False, cancel_futures=True)


def _string(name, text):
    return pb_utils.Tensor(name, np.array([text.encode("utf-8")], dtype=np.object_))
