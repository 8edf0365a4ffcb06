"""Generation: greedy tokens agree across backends and with transformers; responses parse."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from exaone4.exporter.chat import ChatTokenizer, parse_response
from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.cli import main
from exaone4.exporter.errors import InputError
from exaone4.exporter.generate import Sampling, generate_tokens
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.runners import CacheLayout, KVCacheSession, OrtRunner, TorchRunner
from exaone4.exporter.tiny import TINY_DIR

MAX_NEW = 48


@pytest.fixture(scope="module")
def prompt_ids():
    tokenizer = ChatTokenizer.open(TINY_DIR)
    return tokenizer.encode(tokenizer.render([{"role": "system", "content": "Answer with code."},
                                              {"role": "user", "content": "Show me def dumps"}]))


def test_greedy_tokens_identical_on_torch_every_ort_target_and_transformers(tiny_exports, prompt_ids):
    transformers = pytest.importorskip("transformers")
    model = load_reference_model(Checkpoint.open(TINY_DIR))
    layout = CacheLayout.of(model.config)
    stop = {2}
    results = {"torch": list(generate_tokens(KVCacheSession(TorchRunner(model), layout), prompt_ids, MAX_NEW, stop))}
    for target, directory in tiny_exports.items():
        with OrtRunner(directory) as runner:
            results[f"ort-{target}"] = list(generate_tokens(KVCacheSession(runner, layout), prompt_ids, MAX_NEW, stop))
    hf = transformers.AutoModelForCausalLM.from_pretrained(TINY_DIR, dtype=torch.float32).eval()
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                          max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=2, pad_token_id=0)
    results["transformers"] = out[0, len(prompt_ids):].tolist()
    reference = results["torch"]
    assert len(reference) > 10
    for name, tokens in results.items():
        assert tokens == reference, name


def test_seeded_sampling_is_repeatable_and_differs_from_greedy(tiny_exports, prompt_ids):
    model = load_reference_model(Checkpoint.open(TINY_DIR))
    layout = CacheLayout.of(model.config)
    sampling = Sampling(temperature=1.0, top_k=50, top_p=0.9, seed=7)
    runs = [list(generate_tokens(KVCacheSession(TorchRunner(model), layout), prompt_ids, 24, set(), sampling)) for _ in range(2)]
    greedy = list(generate_tokens(KVCacheSession(TorchRunner(model), layout), prompt_ids, 24, set()))
    assert runs[0] == runs[1] and runs[0] != greedy


def test_reasoning_and_tool_calls_are_parsed():
    text = 'checking the city</think>\n\nI will look it up.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Seoul"}}</tool_call>'
    parsed = parse_response(text, thinking_opened=True)
    assert parsed.reasoning == "checking the city"
    assert parsed.content == "I will look it up."
    assert parsed.tool_calls == [{"name": "get_weather", "arguments": {"city": "Seoul"}}]
    plain = parse_response("<think>\n\n</think>\n\nhello")
    assert plain.reasoning == "" and plain.content == "hello" and plain.tool_calls == []
    cut = parse_response("still thinking", thinking_opened=True)
    assert cut.reasoning == "still thinking" and cut.content == ""


def test_malformed_tool_call_is_a_clear_error():
    with pytest.raises(InputError, match=r"tool call 2: is not valid JSON"):
        parse_response('<tool_call>{"name": "a"}</tool_call><tool_call>{"name": "b", "arguments": {</tool_call>')
    with pytest.raises(InputError, match="needs a JSON object with a string 'name'"):
        parse_response("<tool_call>[1, 2]</tool_call>")


def test_generate_json_with_tools_on_an_export(tiny_exports, tmp_path):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]))
    result = CliRunner().invoke(main, ["generate", str(tiny_exports["ort"]), "--prompt", "Show me def dumps",
                                       "--tools", str(tools), "--json", "--max-new-tokens", "12"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["backend"] == "ort" and len(answer["tokens"]) <= 12 and answer["prefill_tokens"] > 50  # tools in the prompt
    assert {"text", "content", "reasoning", "tool_calls", "decode_tokens_per_s"} <= set(answer)
    tools.write_text("{not json")
    bad = CliRunner().invoke(main, ["generate", str(tiny_exports["ort"]), "--prompt", "x", "--tools", str(tools)])
    assert bad.exit_code == 2 and "tools.json: is not valid JSON" in bad.output
