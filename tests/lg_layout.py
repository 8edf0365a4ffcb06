"""Checkpoint directories laid out the way LG AI Research publishes EXAONE 4.0.

Our bundled model (exporter/tiny/) keeps its chat template inside tokenizer_config.json.
LG's repositories differ, and each difference has broken a tool before:

- the chat template is its own file, `chat_template.jinja`; tokenizer_config.json has no
  `chat_template` key but lists every special token in `added_tokens_decoder`;
- generation_config.json gives `eos_token_id` as a list;
- 1.2B: `sliding_window: null` with explicit all-"full_attention" `layer_types` (every layer
  global and every layer rotated), tied embeddings, llama3 RoPE;
- 32B: `sliding_window: 4096` with `sliding_window_pattern: "LLLG"` (a string), untied.

transformers (5.x) cannot read the string pattern by itself: `Exaone4Config.__post_init__`
computes `(i + 1) % sliding_window_pattern` when `layer_types` is absent, a TypeError for "LLLG"
(and a ZeroDivisionError whenever `sliding_window` is null). LG's configs that transformers loads
carry both keys: the string pattern and the explicit `layer_types` it expands to. So the writers
below add `layer_types` unless asked not to (`layer_types=False` gives the pattern-only form,
which only our parser, exporter/config.py, reads).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from exaone4.exporter.checkpoint import expected_shapes
from exaone4.exporter.config import parse_config
from exaone4.exporter.tiny import TINY_DIR

ENDOFTURN = 2  # "[|endofturn|]" in the bundled tokenizer, the turn end the chat template writes
EMBEDDINGS = ("model.embed_tokens.weight", "lm_head.weight")
TOKENIZER_KEYS = ("add_bos_token", "add_eos_token", "bos_token", "eos_token", "pad_token", "unk_token",
                  "clean_up_tokenization_spaces", "model_max_length", "tokenizer_class")

# Small random architectures in the two published shapes (the real ones: scripts/make_random_checkpoint.py).
_SMALL = {
    "architectures": ["Exaone4ForCausalLM"], "model_type": "exaone4", "vocab_size": 2048,
    "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
    "head_dim": 16, "hidden_act": "silu", "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
    "rope_theta": 1000000.0, "bos_token_id": 1, "eos_token_id": ENDOFTURN, "pad_token_id": 0,
    "torch_dtype": "float32", "use_cache": True,
}
STYLES = {
    # original_max_position_embeddings shortened so llama3 scaling bites inside a short prompt
    "1.2b": dict(_SMALL, num_hidden_layers=3, sliding_window=None, tie_word_embeddings=True,
                 rope_scaling={"rope_type": "llama3", "factor": 16.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    "32b": dict(_SMALL, num_hidden_layers=4, sliding_window=4, sliding_window_pattern="LLLG",
                tie_word_embeddings=False,
                rope_scaling={"rope_type": "llama3", "factor": 16.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
}


def lg_from_bundled(dest: Path, layer_types: bool = True) -> Path:
    """The bundled tiny model (same weights, 8 layers LLLGLLLG, window 16) in the 32B layout."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TINY_DIR / "model.safetensors", dest / "model.safetensors")
    config = _read(TINY_DIR / "config.json")
    config.pop("layer_types")
    config.update(sliding_window=16, sliding_window_pattern="LLLG")
    _write_config(dest, config, layer_types)
    write_lg_tokenizer(dest)
    return dest


def lg_random(dest: Path, style: str = "1.2b", seed: int = 0, layer_types: bool = True) -> Path:
    """A small random model in the 1.2B or 32B layout, with the bundled tokenizer so text works.

    Norm weights are near 1 and embeddings have std 0.15, as in tests/conftest.py's random_hf_model;
    the other matrices have std 0.5. At 0.15 everywhere the residual stream stays close to the
    token's own embedding and, with tied embeddings, greedy decoding repeats one token ("line line
    line ..."); at 0.5 it writes 30-odd distinct tokens in 40, so a greedy comparison means something.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    config = dict(STYLES[style])
    _write_config(dest, config, layer_types or style == "1.2b")
    parsed = parse_config(config)
    generator = torch.Generator().manual_seed(seed)
    tensors = {
        name: (1.0 + 0.2 * torch.randn(shape, generator=generator)) if len(shape) == 1
        else (0.15 if name in EMBEDDINGS else 0.5) * torch.randn(shape, generator=generator)
        for name, shape in expected_shapes(parsed).items()
        if not (name == "lm_head.weight" and parsed.tie_word_embeddings)
    }
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    write_lg_tokenizer(dest)
    return dest


def write_lg_tokenizer(dest: Path, eos_token_id: list[int] | None = None) -> None:
    """The bundled tokenizer in LG's file layout, plus generation_config.json with a list eos."""
    dest = Path(dest)
    shutil.copyfile(TINY_DIR / "tokenizer.json", dest / "tokenizer.json")
    shutil.copyfile(TINY_DIR / "special_tokens_map.json", dest / "special_tokens_map.json")
    bundled = _read(TINY_DIR / "tokenizer_config.json")
    (dest / "chat_template.jinja").write_text(bundled["chat_template"], encoding="utf-8")
    added = _read(TINY_DIR / "tokenizer.json")["added_tokens"]
    config = {"added_tokens_decoder": {
        str(token["id"]): {key: token[key] for key in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
        for token in added
    }}
    config.update({key: bundled[key] for key in TOKENIZER_KEYS if key in bundled})
    _write(dest / "tokenizer_config.json", config)
    _write(dest / "generation_config.json", {"bos_token_id": 1, "eos_token_id": eos_token_id or [ENDOFTURN],
                                             "pad_token_id": 0})


def _write_config(dest: Path, config: dict, layer_types: bool) -> None:
    """config.json; with `layer_types`, the explicit list our parser derives (see the module doc)."""
    if layer_types:
        config["layer_types"] = [kind.value for kind in parse_config(config).layer_kinds]
    _write(dest / "config.json", config)


def _read(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _write(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
