"""FP8 calibration: activation and weight ranges (amax) measured on the reference model.

The reference model runs in fp32 over calibration text; a forward hook on every
Linear except the lm_head records the largest |input| it sees. Weight ranges
are read from the loaded weights, per output channel. The result is keyed by the
export's weight initializer names (`model.layers.0.mlp.up_proj.weight_t`), which
is all the Q/DQ graph pass needs to know.

Calibration text is, by default, a fixed sample of Python source plus chat turns
rendered with the checkpoint's own template, tokenized with its tokenizer; a
user file (`--calib`, UTF-8 text) replaces it.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .chat import ChatTokenizer
from .checkpoint import Checkpoint
from .errors import InputError
from .load import load_reference_model
from .model import Exaone4ForCausalLM

WEIGHT_SUFFIX = ".weight_t"


@dataclass
class Calibration:
    activation_amax: dict[str, float]  # weight initializer name -> max |input of that MatMul|
    weight_amax: dict[str, list[float]]  # weight initializer name -> max |weight| per output channel
    source: str
    tokens: int

    def to_dict(self) -> dict:
        """For the manifest: activation ranges in full, weight ranges summarised per matrix
        (the per-channel scales themselves are in the graph, next to each weight)."""
        return {
            "source": self.source,
            "tokens": self.tokens,
            "activation_amax": self.activation_amax,
            "weight_amax": {name: {"channels": len(v), "min": min(v), "max": max(v)} for name, v in self.weight_amax.items()},
        }


def default_calibration_text(tokenizer: ChatTokenizer) -> str:
    """Python source from the standard library plus a few chat turns in the checkpoint's format."""
    import json as json_module
    import textwrap

    code = inspect.getsource(json_module.encoder) + inspect.getsource(textwrap)
    turns = [
        [{"role": "user", "content": "Show me def dumps"}, {"role": "assistant", "content": inspect.getsource(json_module.dumps)}],
        [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "What does textwrap.dedent do?"},
         {"role": "assistant", "content": textwrap.dedent.__doc__ or ""}],
    ]
    chats = "".join(tokenizer.render(t, add_generation_prompt=False) for t in turns) if tokenizer.chat_template else ""
    return chats + code


def calibration_ids(directory: Path, calib_file: Path | None, max_tokens: int) -> tuple[list[int], str]:
    tokenizer = ChatTokenizer.open(directory)
    if calib_file is not None:
        try:
            text = Path(calib_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(str(calib_file), f"cannot be read as UTF-8 text ({exc})") from None
        source = str(Path(calib_file).resolve())
    else:
        text, source = default_calibration_text(tokenizer), "built-in (Python standard library source + chat turns)"
    ids = tokenizer.encode(text)[:max_tokens]
    if len(ids) < 16:
        raise InputError(str(calib_file or "calibration text"), f"has only {len(ids)} tokens; at least 16 are needed")
    return ids, source


@torch.no_grad()
def calibrate(checkpoint: Checkpoint, ids: list[int], source: str, sequence: int = 512) -> Calibration:
    """Run the reference over `ids` as independent sequences (within the context) and collect ranges."""
    model = load_reference_model(checkpoint)
    sequence = min(sequence, checkpoint.config.max_position_embeddings)
    amax: dict[str, float] = {}
    hooks = [_record_input_amax(module, name, amax) for name, module in _quantizable_linears(model)]
    try:
        forward_over(model, ids, sequence)
    finally:
        for hook in hooks:
            hook.remove()
    weights = {name: module.weight.abs().amax(dim=1).tolist() for name, module in _quantizable_linears(model)}
    return Calibration(activation_amax=amax, weight_amax=weights, source=source, tokens=len(ids))


@torch.no_grad()
def forward_over(model: Exaone4ForCausalLM, ids: list[int], sequence: int) -> None:
    """The model over `ids` as independent sequences of at most `sequence` tokens (for its hooks)."""
    for start in range(0, len(ids), sequence):
        piece = torch.tensor([ids[start : start + sequence]])  # [1, S]
        keys, values = model.empty_cache(1)
        model(piece, torch.ones_like(piece), torch.arange(piece.shape[1])[None], keys, values)


def _quantizable_linears(model: Exaone4ForCausalLM):
    """(export weight name, module) for every Linear but the lm_head (kept in higher precision)."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not model.lm_head:
            yield name + WEIGHT_SUFFIX, module


def _record_input_amax(module: torch.nn.Module, name: str, amax: dict[str, float]):
    def hook(_module, args):
        amax[name] = max(amax.get(name, 0.0), float(args[0].abs().max()))

    return module.register_forward_pre_hook(hook)


def save_calibration(calibration: Calibration, path: Path) -> None:
    path.write_text(json.dumps(calibration.to_dict(), indent=2) + "\n")
