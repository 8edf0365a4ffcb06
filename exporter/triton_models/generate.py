"""Triton Python-backend model: EXAONE 4 text generation over the `exaone4_decoder` model (BLS).

Inputs (named as in the TensorRT-LLM Triton ensemble): text_input (string) or
messages (a JSON list of chat messages), max_tokens (int32), optional temperature,
top_p (fp32), top_k (int32), random_seed (uint64), enable_thinking (bool), tools
(a JSON list of tool schemas). Outputs: text_output (string) and tool_calls (a JSON
list of the `<tool_call>`s in the answer).

This file is glue: the chat template, tokenizer, stop tokens, sampling, the
generation loop and the response parser are the project's own modules
(exaone4.exporter.chat, .generate, .session), copied beside this file by
`exaone4-export triton`; the decoder is reached through a Runner whose `infer`
is a BLS call. In decoupled mode (`exaone4_stream`) every piece of text is sent
as soon as it is visible, and the tool calls in a last response.
"""

import functools
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shipped exaone4 package wins

from exaone4.exporter.chat import ChatTokenizer, TextStream, parse_response  # noqa: E402
from exaone4.exporter.contract import CHAT_TEMPLATE_FILE, GENERATION_SPEC_FILE, LOGITS, CacheLayout, present_for  # noqa: E402
from exaone4.exporter.errors import InputError  # noqa: E402
from exaone4.exporter.generate import generate_tokens  # noqa: E402
from exaone4.exporter.serving.inputs import TEXT_OUTPUT, TOOL_CALLS, ChatRequest  # noqa: E402
from exaone4.exporter.session import KVCacheSession, Runner  # noqa: E402


class BlsRunner(Runner):
    """The decoder model as a Runner: each `infer` is one BLS request."""

    name = "triton-bls"

    def __init__(self, model_name: str, output_names: list[str]) -> None:
        self.model_name, self.output_names = model_name, output_names

    def infer(self, feeds):
        request = pb_utils.InferenceRequest(model_name=self.model_name, requested_output_names=self.output_names,
                                            inputs=[pb_utils.Tensor(name, value) for name, value in feeds.items()])
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{self.model_name}: {response.error().message()}")
        return {tensor.name(): tensor.as_numpy() for tensor in response.output_tensors()}


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(here, GENERATION_SPEC_FILE)) as f:
            spec = json.load(f)
        self.chat = ChatTokenizer.open(here)  # an InputError here names the file: the model fails to load
        if self.chat.template is None:
            raise InputError(os.path.join(here, CHAT_TEMPLATE_FILE), "missing: the generation model needs the chat template")
        self.layout = CacheLayout(spec["num_layers"], spec["num_kv_heads"], spec["head_dim"], np.dtype(spec["kv_dtype"]))
        self.context = spec["max_position_embeddings"]
        outputs = [LOGITS, *[present_for(name) for name in self.layout.empty(1)]]
        self.runner = BlsRunner(spec["decoder_model"], outputs)
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(json.loads(args["model_config"]))

    def execute(self, requests):
        if self.decoupled:
            for request in requests:
                self._stream(request)
            return None
        return [self._respond(request) for request in requests]

    def _respond(self, request):
        try:
            pieces, tools_given = self._generate(request)
            text = "".join(pieces)
            return pb_utils.InferenceResponse(output_tensors=[_string(TEXT_OUTPUT, text), self._tool_calls(text, tools_given)])
        except Exception as exc:  # this request fails alone; the model keeps serving
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))

    def _stream(self, request):
        sender = request.get_response_sender()
        try:
            pieces, tools_given = self._generate(request)
            text = ""
            for piece in pieces:
                text += piece
                sender.send(pb_utils.InferenceResponse(output_tensors=[_string(TEXT_OUTPUT, piece)]))
            if tools_given:
                sender.send(pb_utils.InferenceResponse(output_tensors=[self._tool_calls(text, True)]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _tool_calls(self, text, tools_given):
        calls = parse_response(text).tool_calls if tools_given else []
        return _string(TOOL_CALLS, json.dumps(calls, ensure_ascii=False))

    # ------------------------------------------------------------------ one request

    def prompt(self, request):
        """(prompt ids, whether tools were offered) from the request's inputs."""
        return self._read(request)[:2]

    def _read(self, request):
        asked = ChatRequest.read(functools.partial(_scalar, request))
        return asked.prompt_ids(self.chat), bool(asked.tools), asked

    def _generate(self, request):
        """(a generator of text pieces, whether tools were offered); request errors raise before any text."""
        prompt, tools_given, asked = self._read(request)
        if len(prompt) + asked.max_tokens > self.context:
            too_long = f"prompt of {len(prompt)} tokens plus max_tokens {asked.max_tokens} exceeds the context of {self.context}"
            raise InputError("max_tokens", too_long)
        return self._pieces(prompt, asked.max_tokens, asked.sampling), tools_given

    def _pieces(self, prompt, max_tokens, sampling):
        stream = TextStream(self.chat)
        for token in generate_tokens(KVCacheSession(self.runner, self.layout), prompt, max_tokens, self.chat.stop_ids, sampling):
            if token in self.chat.stop_ids:
                break
            piece = stream.push(token)
            if piece:
                yield piece
        rest = stream.flush()
        if rest:
            yield rest


def _scalar(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)[0]


def _string(name, text):
    return pb_utils.Tensor(name, np.array([text.encode("utf-8")], dtype=np.object_))
