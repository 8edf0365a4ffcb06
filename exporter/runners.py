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
    END_LOGITS,
    INPUT_IDS,
    KV_KINDS,
    LAST_HIDDEN_STATE,
    LOGITS,
    POSITION_IDS,
    START_LOGITS,
    CacheLayout,
    hidden_state_name,
    past_name,
    present_name,
)
from .jsonfile import read_json
from .ort_runner import OrtRunner
from .session import KVCacheSession, Runner

__all__ = ["CacheLayout", "KVCacheSession", "OrtRunner", "Runner", "TorchHeadRunner", "TorchRunner", "TransformersHeadRunner",
           "TransformersRunner"]


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


def transformers_config(checkpoint_dir: Path):
    """transformers' config, with `layer_types` spelled out from our parse when config.json has none.

    transformers cannot expand a string `sliding_window_pattern` ("LLLG", as LG writes
    the 32B's) nor a null window without `layer_types` (EXAONE 4 trap 3): it would
    raise inside `from_pretrained`. Our parser's layer kinds are the ones exported.
    """
    import transformers

    raw = read_json(Path(checkpoint_dir) / CONFIG_FILE)
    if "layer_types" not in raw:
        raw["layer_types"] = [kind.value for kind in parse_config(raw).layer_kinds]
    raw.pop("auto_map", None)  # never code from a checkpoint
    return transformers.Exaone4Config(**raw)


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
            self.checkpoint_dir, config=transformers_config(self.checkpoint_dir), dtype=torch.float32, attn_implementation="eager"
        ).eval()

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


class TorchHeadRunner(Runner):
    """The reference model of a head (exporter/model_heads.py): input_ids, attention_mask -> its outputs."""

    name = "torch"

    def __init__(self, model) -> None:
        self.model = model

    @torch.no_grad()
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.model.predict(torch.from_numpy(feeds[INPUT_IDS]), torch.from_numpy(feeds[ATTENTION_MASK]))
        return {name: value.numpy() for name, value in outputs.items()}


class TransformersHeadRunner(Runner):
    """transformers' own class of a head checkpoint (its `architectures`), loaded from the same files.

    Called as a user calls it (ids and mask; transformers numbers positions itself).
    Only the transformers class of the architecture our config parser accepted is
    looked up by name; `auto_map` and remote code are never used.
    """

    name = "transformers"

    def __init__(self, checkpoint_dir: Path, architecture: str) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.architecture = architecture
        self.model = None

    def open(self) -> None:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        self.model = getattr(transformers, self.architecture).from_pretrained(
            self.checkpoint_dir, config=transformers_config(self.checkpoint_dir), dtype=torch.float32, attn_implementation="eager"
        ).eval()

    def close(self) -> None:
        self.model = None

    @torch.no_grad()
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.model is None:
            self.open()
        out = self.model(input_ids=torch.from_numpy(feeds[INPUT_IDS]), attention_mask=torch.from_numpy(feeds[ATTENTION_MASK]))
        names = (LOGITS, LAST_HIDDEN_STATE, START_LOGITS, END_LOGITS)
        return {name: getattr(out, name).float().numpy() for name in names if getattr(out, name, None) is not None}
