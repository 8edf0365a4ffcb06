"""Write a random-weight EXAONE 4 checkpoint with a real model's shapes (no download needed).

    python scripts/make_random_checkpoint.py 1.2b OUT_DIR
    python scripts/make_random_checkpoint.py 32b OUT_DIR --layers 4

`1.2b` is EXAONE-4.0-1.2B's architecture (30 global layers, RoPE everywhere,
tied embeddings); `32b` is EXAONE-4.0-32B's (64 layers in the LLLG pattern,
4096-token window, untied), optionally cut to its first N layers. Weights are
bf16 like the real checkpoints, written in shards of about 1 GB with a
`model.safetensors.index.json`, one shard in memory at a time.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from exaone4.exporter.checkpoint import expected_shapes
from exaone4.exporter.config import parse_config
from exaone4.exporter.contract import CHAT_TEMPLATE_FILE, CONFIG_FILE, SPECIAL_TOKENS_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE

LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 16.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}
COMMON = {
    "architectures": ["Exaone4ForCausalLM"],
    "model_type": "exaone4",
    "vocab_size": 102400,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-5,
    "rope_theta": 1000000.0,
    "rope_scaling": LLAMA3_ROPE,
    "bos_token_id": 1,
    "eos_token_id": 361,
    "pad_token_id": 0,
    "torch_dtype": "bfloat16",
}
SHAPES = {
    "1.2b": dict(
        COMMON,
        hidden_size=2048,
        intermediate_size=4096,
        num_hidden_layers=30,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        max_position_embeddings=65536,
        sliding_window=None,
        tie_word_embeddings=True,
    ),
    "32b": dict(
        COMMON,
        hidden_size=5120,
        intermediate_size=27392,
        num_hidden_layers=64,
        num_attention_heads=40,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=131072,
        sliding_window=4096,
        sliding_window_pattern="LLLG",
        tie_word_embeddings=False,
    ),
}
SHARD_BYTES = 1 << 30


def make_config(shape: str, layers: int | None) -> dict:
    config = dict(SHAPES[shape])
    if layers:
        config["num_hidden_layers"] = layers
    # explicit layer_types, as the published configs have (transformers cannot derive them
    # itself when sliding_window is null: it takes an integer modulo by zero)
    config["layer_types"] = [kind.value for kind in parse_config(config).layer_kinds]
    return config


def write_checkpoint(out: Path, config: dict, seed: int = 0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    parsed = parse_config(config)
    shapes = {
        name: shape
        for name, shape in expected_shapes(parsed).items()
        if not (name == "lm_head.weight" and parsed.tie_word_embeddings)
    }
    generator = torch.Generator().manual_seed(seed)
    weight_map, shard, shard_bytes, index = {}, {}, 0, 1

    def flush():
        nonlocal shard, shard_bytes, index
        name = f"model-{index:05d}.safetensors"
        save_file(shard, str(out / name), metadata={"format": "pt"})
        weight_map.update({tensor: name for tensor in shard})
        shard, shard_bytes, index = {}, 0, index + 1

    for name, shape in shapes.items():
        if len(shape) == 1:
            tensor = torch.ones(shape, dtype=torch.bfloat16)
        else:
            tensor = (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)
        shard[name] = tensor
        shard_bytes += tensor.numel() * 2
        if shard_bytes >= SHARD_BYTES:
            flush()
    if shard:
        flush()
    index_data = {"metadata": {"total_size": sum(p.stat().st_size for p in out.glob("*.safetensors"))}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index_data, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=int, default=None, help="keep only the first N layers")
    parser.add_argument("--config-only", action="store_true", help="rewrite config.json of an existing checkpoint")
    args = parser.parse_args()
    config = make_config(args.shape, args.layers)
    if args.config_only:
        (args.out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return
    write_checkpoint(args.out, config)
    copy_tokenizer(args.out)
    print(f"wrote {args.out}")


def copy_tokenizer(out: Path) -> None:
    """The bundled model's tokenizer and chat template, so text can be tokenized (calibration, generate).

    Its 2048 ids are a subset of the real vocabulary; the weights are random either way.
    """
    from exaone4.exporter.tiny import TINY_DIR

    for name in (TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_FILE, CHAT_TEMPLATE_FILE):
        if (TINY_DIR / name).is_file():
            shutil.copyfile(TINY_DIR / name, out / name)


if __name__ == "__main__":
    main()
