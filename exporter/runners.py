"""The runners of this process: the reference model, transformers, onnxruntime.

Each implements `Runner.infer(feeds) -> outputs` (exporter/session.py) with numpy
arrays named by the IO contract (docs/architecture.md#io-contract, names in
exporter/contract.py): input_ids, attention_mask, position_ids,
past_key_values.{i}.key/.value in; logits, present.{i}.key/.value out. `OrtRunner`
lives in exporter/ort_runner.py (torch-free, so the Triton engine ships it) and is
re-exported here; the TensorRT runner lives with the rest of TensorRT (exporter/trt/runner.py).

    with OrtRunner(export_dir) as runner:
        session = KVCacheSession(runner, layout)
        logits = session.prefill(ids, mask)      # [B, S, vocab]
        logits = session.decode(next_tokens)     # [B, 1, vocab]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import parse_config
from .contract import (
    ATTENTION_MASK,
    CONFIG_FILE,
    INPUT_IDS,
    KV_KINDS,
    LOGITS,
    POSITION_IDS,
    CacheLayout,
    hidden_state_name,
    past_name,
    present_name,
)
from .jsonfile import read_json
from .ort_runner import OrtRunner
from .session import KVCacheSession, Runner

__all__ = ["CacheLayout", "KVCacheSession", "OrtRunner", "Runner", "TorchRunner", "TransformersRunner"]


class TorchRunner(Runner):
    """The reference PyTorch model."""

    name = "torch"
    provides_hidden_states = True

    def __init__(self, model, hidden_states: bool = False) -> None:
        self.model = model
        self.hidden_states = hidden_states

    @torch.no_grad()
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        layers = self.model.config.num_layers
        dtype = self.model.lm_head.weight.dtype
        past = lambda i, kind: torch.from_numpy(np.ascontiguousarray(feeds[past_name(i, kind)])).to(dtype)  # noqa: E731
        logits, keys, values, hidden = self.model(
            torch.from_numpy(feeds[INPUT_IDS]),
            torch.from_numpy(feeds[ATTENTION_MASK]),
            torch.from_numpy(feeds[POSITION_IDS]),
            [past(i, "key") for i in range(layers)],
            [past(i, "value") for i in range(layers)],
            output_hidden_states=True,
        )
        outputs = {LOGITS: logits.float().numpy()}
        if self.hidden_states:
            outputs.update({hidden_state_name(i): h.float().numpy() for i, h in enumerate(hidden)})
        for i in range(layers):
            outputs[present_name(i, "key")] = keys[i].numpy()
            outputs[present_name(i, "value")] = values[i].numpy()
        return outputs


class TransformersRunner(Runner):
    """transformers' Exaone4ForCausalLM on the same checkpoint: an independent second reference."""

    name = "transformers"

    def __init__(self, checkpoint_dir: Path) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.model = None

    def open(self) -> None:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            self.checkpoint_dir, config=self._config(transformers), dtype=torch.float32, attn_implementation="eager"
        ).eval()

    def _config(self, transformers):
        """transformers' config, with `layer_types` spelled out from our parse when config.json has none.

        transformers cannot expand a string `sliding_window_pattern` ("LLLG", as LG writes
        the 32B's) nor a null window without `layer_types` (EXAONE 4 trap 3): it would
        raise inside `from_pretrained`. Our parser's layer kinds are the ones exported.
        """
        raw = read_json(self.checkpoint_dir / CONFIG_FILE)
        if "layer_types" not in raw:
            raw["layer_types"] = [kind.value for kind in parse_config(raw).layer_kinds]
        raw.pop("auto_map", None)  # never code from a checkpoint
        return transformers.Exaone4Config(**raw)

    def close(self) -> None:
        self.model = None

    @torch.no_grad()
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from transformers import DynamicCache

        if self.model is None:
            self.open()
        layers = self.model.config.num_hidden_layers
        cache = DynamicCache()  # full-length layers: presents keep every position, as in our contract
        for i in range(layers):
            key, value = (torch.from_numpy(np.ascontiguousarray(feeds[past_name(i, kind)])).float() for kind in KV_KINDS)
            cache.update(key, value, i)
        out = self.model(
            input_ids=torch.from_numpy(feeds[INPUT_IDS]),
            attention_mask=torch.from_numpy(feeds[ATTENTION_MASK]),
            position_ids=torch.from_numpy(feeds[POSITION_IDS]),
            cache=cache,
            use_cache=True,
        )
        outputs = {LOGITS: out.logits.float().numpy()}
        for i, layer in enumerate(out.cache.layers):
            outputs[present_name(i, "key")] = layer.keys.numpy()
            outputs[present_name(i, "value")] = layer.values.numpy()
        return outputs
