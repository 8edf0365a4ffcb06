"""Shared fixtures: random transformers checkpoints of chosen EXAONE 4 configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

# The hardening record behind docs/reliability.md: the `hardening` marker, the
# `hardening_cases` fixture and the hooks that write the record (tests/reliability.py).
from reliability import (  # noqa: F401
    hardening_cases,
    pytest_configure,
    pytest_runtest_makereport,
    pytest_sessionfinish,
)

# Small architectures that together cover the EXAONE 4 traps (docs/architecture.md#exaone-4-traps).
HYBRID = dict(sliding_window=4, layer_types=["sliding_attention"] * 3 + ["full_attention"])
ARCHITECTURES = {
    # 3:1 hybrid, small window, GQA, untied, plain RoPE on sliding layers only.
    "hybrid_gqa": dict(HYBRID, num_attention_heads=4, num_key_value_heads=2),
    # No window: every layer global AND rotated; MQA; tied embeddings.
    "all_global_mqa_tied": dict(
        sliding_window=None,
        layer_types=["full_attention"] * 3,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        tie_word_embeddings=True,
    ),
    # Real-checkpoint RoPE: llama3 scaling, theta 1e6 (original context shortened to bite here).
    "llama3_hybrid": dict(
        HYBRID,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 1e6,
            "factor": 16.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    ),
    # head_dim != hidden / heads, irregular layer_types.
    "head_dim_irregular": dict(
        sliding_window=3,
        num_hidden_layers=5,
        layer_types=["full_attention", "sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=24,
    ),
}


def hf_config(**overrides):
    transformers = pytest.importorskip("transformers")
    base = dict(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    base.update(overrides)
    return transformers.Exaone4Config(**base)


def random_hf_model(config, seed: int = 0, dtype=torch.float32, cls: str = "Exaone4ForCausalLM"):
    """A transformers EXAONE 4 model (`cls`: any of its five classes) with weights large enough to make errors visible."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    model = getattr(transformers, cls)(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 1:
                param.copy_(1.0 + 0.2 * torch.randn_like(param))
            else:
                param.normal_(std=0.15)
    model.config._attn_implementation = "eager"
    return model.to(dtype).eval()


def save_hf_checkpoint(model, directory: Path, **save_kwargs) -> Path:
    model.save_pretrained(directory, **save_kwargs)
    return directory


@pytest.fixture(params=sorted(ARCHITECTURES))
def hf_checkpoint(request, tmp_path):
    """(transformers model, checkpoint dir) for each architecture in ARCHITECTURES."""
    model = random_hf_model(hf_config(**ARCHITECTURES[request.param]))
    return model, save_hf_checkpoint(model, tmp_path / request.param)


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


SMALL_CONFIG = {
    "model_type": "exaone4",
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "sliding_window": 4,
    "layer_types": ["sliding_attention", "full_attention"],
    "max_position_embeddings": 64,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}


def write_random_checkpoint(directory: Path, config: dict | None = None, dtype=torch.float32, seed: int = 0) -> Path:
    """A checkpoint written with safetensors directly (no transformers), random weights."""
    from safetensors.torch import save_file

    from exaone4.exporter.checkpoint import expected_shapes
    from exaone4.exporter.config import parse_config

    config = dict(config or SMALL_CONFIG)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "config.json", config)
    parsed = parse_config(config)
    gen = torch.Generator().manual_seed(seed)
    tensors = {
        name: (torch.randn(shape, generator=gen) * 0.1 + (1.0 if len(shape) == 1 else 0.0)).to(dtype)
        for name, shape in expected_shapes(parsed).items()
        if not (name == "lm_head.weight" and parsed.tie_word_embeddings)
    }
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory):
    """The bundled model exported once per test session: {target: directory} (fp32)."""
    from exaone4.exporter.export import ExportOptions, export_checkpoint, lower_export
    from exaone4.exporter.tiny import TINY_DIR

    root = tmp_path_factory.mktemp("tiny-exports")
    dirs = {"canonical": root / "canonical"}
    export_checkpoint(TINY_DIR, dirs["canonical"], ExportOptions(target="canonical"))
    for target in ("ort", "standard"):
        dirs[target] = root / target
        lower_export(dirs["canonical"], dirs[target], target)
    return dirs


@pytest.fixture(scope="session")
def lg_bundled(tmp_path_factory):
    """The bundled model laid out as LG publishes EXAONE 4.0 (tests/lg_layout.py)."""
    from lg_layout import lg_from_bundled

    return lg_from_bundled(tmp_path_factory.mktemp("lg") / "bundled")


@pytest.fixture(scope="session")
def lg_bundled_exports(lg_bundled, tmp_path_factory):
    """The LG-layout bundled model exported once per session: {"canonical": dir, "ort": dir}."""
    from exaone4.exporter.export import ExportOptions, export_checkpoint, lower_export

    root = tmp_path_factory.mktemp("lg-exports")
    export_checkpoint(lg_bundled, root / "canonical", ExportOptions(target="canonical"))
    lower_export(root / "canonical", root / "ort", "ort")
    return {"canonical": root / "canonical", "ort": root / "ort"}


# Each head exported on two of ARCHITECTURES (one hybrid with its small window each), so every
# architecture is exported twice; the reference heads are checked on all sixteen pairs (tests/test_heads.py).
HEAD_EXPORTS = {
    "Exaone4Model": ("hybrid_gqa", "all_global_mqa_tied"),
    "Exaone4ForSequenceClassification": ("llama3_hybrid", "all_global_mqa_tied"),
    "Exaone4ForTokenClassification": ("hybrid_gqa", "head_dim_irregular"),
    "Exaone4ForQuestionAnswering": ("llama3_hybrid", "head_dim_irregular"),
}
HEAD_TARGETS = ("canonical", "ort", "standard", "trt")


@pytest.fixture(scope="session")
def head_exports(tmp_path_factory):
    """{(class, architecture): {"model": transformers model, "checkpoint": dir, target: export dir}}, fp32.

    Traced once per pair (canonical); the other targets are lowered from it.
    """
    from head_models import head_checkpoint

    from exaone4.exporter.export import ExportOptions, export_checkpoint, lower_export

    root = tmp_path_factory.mktemp("head-exports")
    exports = {}
    for cls, architectures in HEAD_EXPORTS.items():
        for architecture in architectures:
            where = root / f"{cls}-{architecture}"
            model, checkpoint = head_checkpoint(cls, architecture, where / "checkpoint")
            entry = {"model": model, "checkpoint": checkpoint, "canonical": where / "canonical"}
            export_checkpoint(checkpoint, entry["canonical"], ExportOptions(target="canonical"))
            for target in HEAD_TARGETS[1:]:
                entry[target] = where / target
                lower_export(entry["canonical"], entry[target], target)
            exports[(cls, architecture)] = entry
    return exports
