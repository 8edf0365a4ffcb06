"""Triton Python-backend model: text in, a head's answer out, over the `exaone4_model` graph (BLS).

text-classification   text_input (string) -> label (string), scores (fp32 [num_labels])
token-classification  text_input (string) -> entities (string: a JSON list of word-level entities)
question-answering    question, context (string) -> answer (string), score (fp32)
feature-extraction    text_input (string) -> last_hidden_state (fp32 [tokens, hidden]), embedding (fp32 [hidden]),
                      pooled as config.pbtxt's parameters say: pooling last | mean, normalize true | false

Dynamic batching is on: Triton hands `execute` several requests at once, which are
tokenized, right-padded into one batch and sent to the graph in one BLS call. This
file is glue: tokenization and post-processing are exaone4.exporter.head_serving,
copied beside it by `exaone4-export triton`; `head.json` says which task and labels.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shipped exaone4 package wins

from exaone4.exporter.head_serving import (  # noqa: E402
    HeadTokenizer,
    best_answer,
    classify,
    embed,
    entities_json,
    word_entities,
)

SPEC_FILE = "head.json"


def _text(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"input {name!r} is required")
    value = tensor.as_numpy().reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _string(value):
    """One request's string output: [1 (batch), 1]."""
    return np.array([[value.encode("utf-8")]], dtype=np.object_)


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(here, SPEC_FILE)) as f:
            self.spec = json.load(f)
        self.tokenizer = HeadTokenizer.open(here, self.spec["pad_token_id"])
        self.labels = self.spec.get("labels") or []
        parameters = json.loads(args["model_config"]).get("parameters", {})
        knob = {key: value.get("string_value", "") for key, value in parameters.items()}
        self.pooling, self.normalize = knob.get("pooling", "last"), knob.get("normalize", "false") == "true"
        embed(np.zeros((1, 1), np.float32), self.pooling)  # an unknown pooling fails the load, naming the parameter

    def execute(self, requests):
        responses, encoded = [None] * len(requests), []
        for index, request in enumerate(requests):
            try:
                encoded.append((index, *self._encode(request)))
            except Exception as exc:  # a bad request gets its own error; the batch goes on
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{self.spec['task']}: {exc}"))
        if encoded:
            try:
                outputs = self._forward([e for _, _, e in encoded])
                for row, (index, text, encoding) in enumerate(encoded):
                    responses[index] = self._respond(row, text, encoding, outputs)
            except Exception as exc:
                for index, _, _ in encoded:
                    responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{self.spec['task']}: {exc}"))
        return responses

    def _encode(self, request):
        if self.spec["task"] == "question-answering":
            question, text = _text(request, "question"), _text(request, "context")
            encoding = self.tokenizer.encode(question, text)
        else:
            text = _text(request, "text_input")
            encoding = self.tokenizer.encode(text)
        if not encoding.ids:
            raise ValueError("the text is empty")
        if len(encoding.ids) > self.spec["max_position_embeddings"]:
            raise ValueError(f"{len(encoding.ids)} tokens exceed the model's {self.spec['max_position_embeddings']} positions")
        return text, encoding

    def _forward(self, encodings):
        feeds = self.tokenizer.batch(encodings)
        request = pb_utils.InferenceRequest(model_name=self.spec["model"], requested_output_names=self.spec["outputs"],
                                            inputs=[pb_utils.Tensor(name, value) for name, value in feeds.items()])
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{self.spec['model']}: {response.error().message()}")
        return {tensor.name(): tensor.as_numpy() for tensor in response.output_tensors()}

    def _respond(self, row, text, encoding, outputs):
        task = self.spec["task"]
        if task == "text-classification":
            label, scores = classify(outputs["logits"][row], self.labels, self.spec["problem_type"])
            tensors = [pb_utils.Tensor("label", _string(label)), pb_utils.Tensor("scores", scores[None])]
        elif task == "token-classification":
            entities = word_entities(text, encoding, outputs["logits"][row], self.labels, self.tokenizer)
            tensors = [pb_utils.Tensor("entities", _string(entities_json(entities)))]
        elif task == "feature-extraction":
            states = outputs["last_hidden_state"][row, : len(encoding.ids)]  # right-padded: the text's own tokens
            vector = embed(states, self.pooling, self.normalize)
            tensors = [pb_utils.Tensor("last_hidden_state", states[None]), pb_utils.Tensor("embedding", vector[None])]
        else:
            answer, score = best_answer(text, encoding, outputs["start_logits"][row], outputs["end_logits"][row])
            tensors = [pb_utils.Tensor("answer", _string(answer)), pb_utils.Tensor("score", np.array([[score]], np.float32))]
        return pb_utils.InferenceResponse(output_tensors=tensors)
