"""Triton Python-backend model: EXAONE 4 text generation over the `exaone4_decoder` model (BLS).

Inputs (named as in the TensorRT-LLM Triton ensemble): text_input (string),
max_tokens (int32), optional temperature, top_p (fp32), top_k (int32),
random_seed (uint64), enable_thinking (bool). Output: text_output (string).

The user text is wrapped in the checkpoint's chat template (rendered in Jinja's
immutable sandbox), tokenized, and generated token by token against the decoder
model with the KV cache carried between calls; greedy unless a temperature is
given. Generation stops at EOS / [|endofturn|] or max_tokens. In decoupled mode
(`exaone4_stream`) every token's text is sent as soon as it is made. Written by
`exaone4-export triton`; needs numpy, tokenizers and jinja2.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer


def _tojson(value, indent=None, ensure_ascii=False):
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(here, "generation.json")) as f:
            self.spec = json.load(f)
        with open(os.path.join(here, "tokenizer_config.json")) as f:
            tokenizer_config = json.load(f)
        self.tokenizer = Tokenizer.from_file(os.path.join(here, "tokenizer.json"))
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = _tojson
        self.template = env.from_string(tokenizer_config["chat_template"])
        self.special = {k: (v["content"] if isinstance(v, dict) else v) for k, v in tokenizer_config.items()
                        if k in ("bos_token", "eos_token", "pad_token", "unk_token") and v}
        end_of_turn = self.tokenizer.token_to_id("[|endofturn|]")
        self.stop_ids = set(self.spec["eos_token_ids"]) | ({end_of_turn} if end_of_turn is not None else set())
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(json.loads(args["model_config"]))

    # ------------------------------------------------------------------ requests

    def execute(self, requests):
        if self.decoupled:
            for request in requests:
                sender = request.get_response_sender()
                try:
                    for piece in self._generate(request):
                        sender.send(pb_utils.InferenceResponse(output_tensors=[self._text(piece)]))
                    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                except Exception as exc:
                    sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))),
                                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            return None
        responses = []
        for request in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=[self._text("".join(self._generate(request)))]))
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses

    @staticmethod
    def _text(text):
        return pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_))

    @staticmethod
    def _scalar(request, name, default):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        return default if tensor is None else tensor.as_numpy().reshape(-1)[0]

    # ------------------------------------------------------------------ generation

    def _prompt_ids(self, request):
        raw = self._scalar(request, "text_input", b"")
        text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        if not text.strip():
            raise ValueError("text_input is empty")
        thinking = bool(self._scalar(request, "enable_thinking", False))
        prompt = self.template.render(messages=[{"role": "user", "content": text}], add_generation_prompt=True,
                                      enable_thinking=thinking, **self.special)
        return self.tokenizer.encode(prompt, add_special_tokens=False).ids

    def _generate(self, request):
        """Yield the text of each new token (detokenized incrementally)."""
        prompt = self._prompt_ids(request)
        max_tokens = int(self._scalar(request, "max_tokens", 64))
        context = self.spec["max_position_embeddings"]
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if len(prompt) + max_tokens > context:
            raise ValueError(f"prompt of {len(prompt)} tokens plus max_tokens {max_tokens} exceeds the context of {context}")
        temperature = float(self._scalar(request, "temperature", 0.0))
        top_k = int(self._scalar(request, "top_k", 0))
        top_p = float(self._scalar(request, "top_p", 1.0))
        rng = np.random.default_rng(int(self._scalar(request, "random_seed", 0)))

        past = {name: np.zeros(shape, dtype=self.spec["kv_dtype"]) for name, shape in self._empty_past().items()}
        ids = np.array([prompt], dtype=np.int64)
        mask = np.ones_like(ids)
        positions = np.arange(len(prompt), dtype=np.int64)[None]
        tokens, shown = [], ""
        for _ in range(max_tokens):
            logits, past = self._step(ids, mask, positions, past)
            token = self._choose(logits[0, -1], temperature, top_k, top_p, rng)
            if token in self.stop_ids:
                return
            tokens.append(token)
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            if len(text) > len(shown):
                yield text[len(shown):]
                shown = text
            ids = np.array([[token]], dtype=np.int64)
            positions = positions[:, -1:] + 1
            mask = np.concatenate((mask, np.ones((1, 1), np.int64)), axis=1)

    def _empty_past(self):
        shape = (1, self.spec["num_kv_heads"], 0, self.spec["head_dim"])
        return {f"past_key_values.{i}.{kind}": shape for i in range(self.spec["num_layers"]) for kind in ("key", "value")}

    def _step(self, ids, mask, positions, past):
        inputs = [pb_utils.Tensor("input_ids", ids), pb_utils.Tensor("attention_mask", mask),
                  pb_utils.Tensor("position_ids", positions)] + [pb_utils.Tensor(n, v) for n, v in past.items()]
        presents = [n.replace("past_key_values.", "present.") for n in past]
        response = pb_utils.InferenceRequest(
            model_name=self.spec["decoder_model"], requested_output_names=["logits", *presents], inputs=inputs
        ).exec()
        if response.has_error():
            raise RuntimeError(f"decoder: {response.error().message()}")
        out = {t.name(): t.as_numpy() for t in response.output_tensors()}
        return out["logits"], {n: out[n.replace("past_key_values.", "present.")] for n in past}

    @staticmethod
    def _choose(logits, temperature, top_k, top_p, rng):
        if temperature <= 0:
            return int(np.argmax(logits))
        logits = logits.astype(np.float64) / temperature
        if top_k > 0:
            kth = np.sort(logits)[-min(top_k, logits.size)]
            logits = np.where(logits < kth, -np.inf, logits)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        if top_p < 1.0:
            order = np.argsort(-probs)
            cumulative = np.cumsum(probs[order])
            drop = order[(cumulative - probs[order]) >= top_p]
            probs[drop] = 0.0
            probs /= probs.sum()
        return int(rng.choice(probs.size, p=probs))
