"""Train the bundled tiny EXAONE 4 on the Python standard library, on CPU, in minutes.

    python scripts/train_tiny.py [--out exporter/tiny] [--steps 1500]

The result is a normal Hugging Face checkpoint directory (config.json,
model.safetensors, tokenizer files, generation_config.json) with the real EXAONE 4
layout at toy size: hybrid 3:1 sliding/global layers with a 16-token window,
GQA (6 query heads over 2 KV heads), QK-norm, llama3-scaled RoPE on sliding
layers only, tied embeddings. The corpus is CPython's own standard library, which
ships with every Python, plus chat turns built from it ("Show me def NAME" answered
with that function's source), so the model answers a chat prompt with code.

The model trained is this project's reference model (exporter/model.py), so the
training script and the exporter can never disagree about the architecture.
`training.json` records the steps, the time, and the held-out loss against the
uniform baseline ln(vocab).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
import time
from pathlib import Path

import jinja2
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_tokenizer  # noqa: E402  (a sibling script module)

from exaone4.exporter.config import parse_config  # noqa: E402
from exaone4.exporter.contract import CONFIG_FILE, GENERATION_CONFIG_FILE  # noqa: E402
from exaone4.exporter.model import Exaone4ForCausalLM  # noqa: E402

VOCAB = 2048
SEQ_LEN = 128
CONFIG = {
    "architectures": ["Exaone4ForCausalLM"],
    "model_type": "exaone4",
    "vocab_size": VOCAB,
    "hidden_size": 192,
    "intermediate_size": 512,
    "num_hidden_layers": 8,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "sliding_window": 16,
    "sliding_window_pattern": 4,
    "layer_types": ["sliding_attention"] * 3 + ["full_attention"] + ["sliding_attention"] * 3 + ["full_attention"],
    "rope_theta": 10000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 4.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 128,
    },
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "torch_dtype": "float32",
    "use_cache": True,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
}


def chat_samples(texts: list[str], limit: int) -> list[str]:
    """Chat turns "Show me def NAME" -> the function's source, rendered in the EXAONE format."""
    template = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(tiny_tokenizer.CHAT_TEMPLATE)
    samples = []
    for text in texts:
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        lines = text.splitlines()
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno < 25:
                source = "\n".join(lines[node.lineno - 1 : node.end_lineno])
                messages = [
                    {"role": "user", "content": f"Show me def {node.name}"},
                    {"role": "assistant", "content": source},
                ]
                samples.append(template.render(messages=messages, add_generation_prompt=False))
                if len(samples) >= limit:
                    return samples
    return samples


def token_stream(tokenizer, texts: list[str], eos_id: int) -> torch.Tensor:
    """All texts encoded and joined, each followed by EOS: a 1-D int64 tensor."""
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(texts, add_special_tokens=False):
        ids.extend(encoding.ids)
        ids.append(eos_id)
    return torch.tensor(ids, dtype=torch.long)


def batches(stream: torch.Tensor, batch: int, generator: torch.Generator):
    """Endless random windows [batch, SEQ_LEN + 1] from the stream."""
    while True:
        starts = torch.randint(0, len(stream) - SEQ_LEN - 1, (batch,), generator=generator)
        yield torch.stack([stream[s : s + SEQ_LEN + 1] for s in starts.tolist()])


def lm_loss(model: Exaone4ForCausalLM, window: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy over windows [B, SEQ_LEN + 1]."""
    inputs, targets = window[:, :-1], window[:, 1:]
    batch, seq = inputs.shape
    mask = torch.ones_like(inputs)
    positions = torch.arange(seq)[None].expand(batch, seq)
    keys, values = model.empty_cache(batch)
    logits, _, _ = model(inputs, mask, positions, keys, values)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def heldout_loss(model: Exaone4ForCausalLM, stream: torch.Tensor, windows: int = 64) -> float:
    """Loss over evenly spaced, non-overlapping held-out windows."""
    step = max((len(stream) - SEQ_LEN - 1) // windows, SEQ_LEN + 1)
    starts = range(0, len(stream) - SEQ_LEN - 1, step)
    chunk = torch.stack([stream[s : s + SEQ_LEN + 1] for s in starts][:windows])
    return float(lm_loss(model, chunk))


def init_weights(model: Exaone4ForCausalLM, num_layers: int) -> None:
    """Normal(0, 0.02) matrices, residual outputs scaled down by depth (GPT-2 style), norms at 1."""
    for name, param in model.named_parameters():
        if param.dim() == 2:
            std = 0.02 / math.sqrt(2 * num_layers) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
            torch.nn.init.normal_(param, std=std)


def train(out: Path, steps: int, batch: int, seed: int) -> dict:
    torch.manual_seed(seed)
    started = time.time()
    train_texts, heldout_texts = tiny_tokenizer.stdlib_corpus()
    tokenizer = tiny_tokenizer.train_tokenizer(train_texts, vocab_size=VOCAB)
    eos_id = tokenizer.token_to_id(tiny_tokenizer.EOS_TOKEN)
    chats = chat_samples(train_texts, limit=6000)
    train_stream = token_stream(tokenizer, train_texts, eos_id)
    chat_stream = token_stream(tokenizer, chats, eos_id)
    heldout_stream = token_stream(tokenizer, heldout_texts, eos_id)

    config = parse_config(CONFIG)
    model = Exaone4ForCausalLM(config)
    init_weights(model, config.num_layers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.05)
    warmup = max(steps // 20, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))) * 0.97 + 0.03,
    )
    generator = torch.Generator().manual_seed(seed)
    code, chat = batches(train_stream, batch - batch // 4, generator), batches(chat_stream, batch // 4, generator)
    model.train()
    for step in range(steps):
        window = torch.cat((next(code), next(chat)))
        loss = lm_loss(model, window)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 25 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}  {time.time() - started:.0f}s", flush=True)
    model.eval()
    report = {
        "steps": steps,
        "batch": batch,
        "seq_len": SEQ_LEN,
        "seed": seed,
        "train_tokens": len(train_stream),
        "chat_samples": len(chats),
        "heldout_tokens": len(heldout_stream),
        "heldout_loss": heldout_loss(model, heldout_stream),
        "uniform_loss": math.log(VOCAB),
        "seconds": round(time.time() - started, 1),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }
    save(model, tokenizer, out, report)
    return report


def save(model: Exaone4ForCausalLM, tokenizer, out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / CONFIG_FILE).write_text(json.dumps(CONFIG, indent=2) + "\n")
    generation = {"bos_token_id": 1, "eos_token_id": [2], "pad_token_id": 0, "do_sample": False}
    (out / GENERATION_CONFIG_FILE).write_text(json.dumps(generation, indent=2) + "\n")
    tiny_tokenizer.save_tokenizer(tokenizer, out, model_max_length=CONFIG["max_position_embeddings"])
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "exporter" / "tiny")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    report = train(args.out, args.steps, args.batch, args.seed)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
