"""Triton Python-backend model: the resident EXAONE 4 engine (`exaone4_stream` of a `--kv-cache static` export).

Decoupled. At load it opens the export with onnxruntime, allocates the slot pool
(max_batch x max_context positions of KV cache, config.pbtxt parameters) and starts
the in-flight batching scheduler on its own thread (exaone4.exporter.serving,
shipped beside this file). `execute` only reads each request, renders its chat
prompt and queues it: the scheduler streams one response per piece of text from
its thread, a last one with `tool_calls` when tools were offered, and frees the
slot on a stop token, max_tokens, client cancellation or an error of that request.
A full queue, an unusable request or a prompt that cannot fit gets one error
response at once. Metrics go to Triton's metrics endpoint (serving/metrics.py).

This file is glue: everything it calls is the project's own code.
"""

import functools
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shipped exaone4 package wins

from exaone4.exporter.chat import ChatTokenizer  # noqa: E402
from exaone4.exporter.contract import CHAT_TEMPLATE_FILE, GENERATION_SPEC_FILE  # noqa: E402
from exaone4.exporter.errors import InputError  # noqa: E402
from exaone4.exporter.ort_runner import OrtRunner  # noqa: E402
from exaone4.exporter.serving import (  # noqa: E402
    ChatRequest,
    EngineConfig,
    EngineSpec,
    Finish,
    GenerationRequest,
    MetricsObserver,
    QueueFull,
    Scheduler,
    ServingLoop,
    SlotPool,
    TextClient,
)
from exaone4.exporter.serving.inputs import TEXT_OUTPUT, TOOL_CALLS  # noqa: E402
from exaone4.exporter.serving.metrics import COUNTER, GAUGE, HISTOGRAM  # noqa: E402


class SenderClient(TextClient):
    """One request's response sender as the scheduler's client."""

    def __init__(self, sender, chat, tools_given):
        super().__init__(chat, tools_given)
        self.sender = sender

    def send_text(self, piece):
        self.sender.send(pb_utils.InferenceResponse(output_tensors=[_string(TEXT_OUTPUT, piece)]))

    def send_end(self, tool_calls):
        if tool_calls is None:
            self.sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        else:
            calls = _string(TOOL_CALLS, json.dumps(tool_calls, ensure_ascii=False))
            self.sender.send(pb_utils.InferenceResponse(output_tensors=[calls]), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def send_error(self, message, finish):
        if finish is Finish.CANCELLED:  # nobody is listening; the final flag is still owed
            self.sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        else:
            _refuse(self.sender, message)

    def cancelled(self):
        return self.sender.is_cancelled()


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.join(args["model_repository"], args["model_version"])
        where = os.path.join(args["model_repository"], "config.pbtxt")
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.config = EngineConfig.from_parameters(parameters, where)  # an InputError here fails the load, naming it
        spec = EngineSpec.read(os.path.join(here, GENERATION_SPEC_FILE))
        spec.check(self.config, where)
        self.chat = ChatTokenizer.open(here)
        if self.chat.template is None:
            raise InputError(os.path.join(here, CHAT_TEMPLATE_FILE), "missing: the generation model needs the chat template")
        runner = OrtRunner(here, threads=self.config.threads)
        runner.open()
        pool = SlotPool(runner, spec.layout, self.config.max_batch, self.config.max_context)  # the buffers, once
        self.families = {}  # MetricFamily objects live as long as their metrics
        observer = MetricsObserver(self._metric, {"model": args["model_name"]})
        self.scheduler = Scheduler(pool, self.config, observer)
        self.loop = ServingLoop(self.scheduler)
        self.loop.start()

    def _metric(self, spec, labels):
        kinds = {COUNTER: pb_utils.MetricFamily.COUNTER, GAUGE: pb_utils.MetricFamily.GAUGE,
                 HISTOGRAM: pb_utils.MetricFamily.HISTOGRAM}
        if spec.name not in self.families:
            self.families[spec.name] = pb_utils.MetricFamily(name=spec.name, description=spec.description, kind=kinds[spec.kind])
        family = self.families[spec.name]
        return family.Metric(labels=labels, buckets=list(spec.buckets)) if spec.buckets else family.Metric(labels=labels)

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                asked = ChatRequest.read(functools.partial(_first, request))
                prompt = asked.prompt_ids(self.chat)
                generation = GenerationRequest(tuple(prompt), asked.max_tokens, asked.sampling, self.chat.stop_ids)
                self.scheduler.submit(generation, SenderClient(sender, self.chat, bool(asked.tools)))
            except QueueFull as exc:
                _refuse(sender, str(exc), pb_utils.TritonError.UNAVAILABLE)
            except Exception as exc:  # this request alone is refused; the engine keeps serving
                _refuse(sender, str(exc), pb_utils.TritonError.INVALID_ARG)
        return None

    def finalize(self):
        self.loop.stop("the model is being unloaded")


def _first(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)[0]


def _string(name, text):
    return pb_utils.Tensor(name, np.array([text.encode("utf-8")], dtype=np.object_))


def _refuse(sender, message, code=None):
    error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
    sender.send(pb_utils.InferenceResponse(error=error), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
