"""Write a head checkpoint on the bundled model's trained decoder: a classifier, tagger or QA model to try.

    python scripts/make_head_checkpoint.py text-classification OUT_DIR --labels NEGATIVE,POSITIVE
    python scripts/make_head_checkpoint.py token-classification OUT_DIR --labels O,B-NAME,I-NAME
    python scripts/make_head_checkpoint.py question-answering OUT_DIR
    python scripts/make_head_checkpoint.py feature-extraction OUT_DIR

The decoder is the bundled tiny model's (exporter/tiny/), renamed to the class's
prefix as transformers saves it (`model.`, `transformer.` for QA, none for the base
model); the head (`score`, `qa_outputs`) is random and untrained (seeded), so the
answers mean nothing, but every command runs on it as on a fine-tuned checkpoint.
The tokenizer files are copied; config.json names the class in `architectures`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from exaone4.exporter.config import parse_config
from exaone4.exporter.contract import CONFIG_FILE, SPECIAL_TOKENS_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE
from exaone4.exporter.heads import LAYOUTS, Head
from exaone4.exporter.tiny import TINY_DIR

TASKS = {layout.task: head for head, layout in LAYOUTS.items() if head is not Head.CAUSAL_LM}


def head_config(head: Head, labels: list[str]) -> dict:
    config = json.loads((TINY_DIR / CONFIG_FILE).read_text())
    config["architectures"] = [head.value]
    if head in (Head.SEQUENCE_CLASSIFICATION, Head.TOKEN_CLASSIFICATION):
        config["id2label"] = dict(enumerate(labels))
        config["label2id"] = {label: i for i, label in enumerate(labels)}
    return config


def head_tensors(config: dict, seed: int) -> dict[str, torch.Tensor]:
    """The bundled decoder under the class's prefix (no lm_head), plus a random head."""
    parsed = parse_config(json.loads(json.dumps(config)))
    prefix = parsed.head.layout.prefix
    decoder = load_file(str(TINY_DIR / "model.safetensors"))
    tensors = {prefix + name.removeprefix("model."): t.clone() for name, t in decoder.items() if name != "lm_head.weight"}
    generator = torch.Generator().manual_seed(seed)
    for name, shape in parsed.head.head_tensors(parsed.hidden_size).items():
        tensors[name] = torch.randn(shape, generator=generator) * (0.5 if len(shape) == 2 else 0.1)
    return tensors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("out", type=Path)
    parser.add_argument("--labels", default="NEGATIVE,POSITIVE", help="comma-separated label names (classifiers)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = head_config(TASKS[args.task], args.labels.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    save_file(head_tensors(config, args.seed), str(args.out / "model.safetensors"), metadata={"format": "pt"})
    for name in (TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_FILE):
        shutil.copyfile(TINY_DIR / name, args.out / name)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
