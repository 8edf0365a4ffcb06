"""One chat path: the CLI's, the Triton model file's and transformers' renderings agree, text and ids.

The Triton side runs the generation model file of a real repository (written by
`exaone4-export triton` from an LG-layout checkpoint: template in chat_template.jinja
only) in the Triton backend's own Python environment, which has no exaone4-export
installed: the chat code it runs is the copy shipped in the repository.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from exaone4.exporter.chat import ChatTokenizer
from exaone4.exporter.cli import main
from exaone4.exporter.errors import InputError

from triton_server import ensure_triton

HERE = Path(__file__).resolve().parent
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
CONVERSATIONS = {
    "system": dict(messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Show me def dumps"}]),
    "multi_turn": dict(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello. What now?"},
                                 {"role": "user", "content": "Show me def quote"}]),
    "tools": dict(messages=[{"role": "user", "content": "Weather in Seoul?"}], tools=[WEATHER]),
    "tool_results": dict(
        messages=[{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather in Seoul and Busan?"},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Seoul"}}},
                      {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Busan"}}}]},
                  {"role": "tool", "content": "sunny, 21 C"}, {"role": "tool", "content": "rain, 17 C"}],
        tools=[WEATHER]),
    "reasoning_history": dict(messages=[{"role": "user", "content": "2+2?"},
                                        {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"},
                                        {"role": "user", "content": "and 3+3?"}]),
}
CASES = [(name, thinking) for name in CONVERSATIONS for thinking in (False, True)]


@pytest.fixture(scope="module")
def lg_checkpoint(lg_bundled):
    return lg_bundled


@pytest.fixture(scope="module")
def lg_repo(lg_bundled_exports, tmp_path_factory):
    """A Triton repository written from an ort export of the LG-layout checkpoint."""
    repo = tmp_path_factory.mktemp("lg-triton") / "repo"
    run = CliRunner().invoke(main, ["triton", str(lg_bundled_exports["ort"]), "--repo", str(repo)])
    assert run.exit_code == 0, run.output
    return repo


def _transformers(lg_checkpoint, name, thinking):
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(lg_checkpoint)
    case = CONVERSATIONS[name]
    text = tokenizer.apply_chat_template(case["messages"], tools=case.get("tools"), add_generation_prompt=True,
                                         enable_thinking=thinking, tokenize=False)
    return text, tokenizer(text, add_special_tokens=False)["input_ids"]


def _triton_model_file(repo: Path) -> list[dict]:
    """Every case through the repository's generation model file, in the Triton backend's environment."""
    triton = ensure_triton()
    if triton is None:
        pytest.skip("the Triton backend environment could not be set up (scripts/setup_triton.sh)")
    requests = [{"inputs": {"messages": json.dumps(CONVERSATIONS[name]["messages"]), "enable_thinking": thinking,
                            **({"tools": json.dumps(CONVERSATIONS[name]["tools"])} if "tools" in CONVERSATIONS[name] else {})}}
                for name, thinking in CASES]
    run = subprocess.run([str(triton / "env" / "bin" / "python"), str(HERE / "triton_model_probe.py"), str(repo / "exaone4" / "1")],
                         input=json.dumps(requests), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_cli_triton_and_transformers_render_the_same_text_and_ids(lg_checkpoint, lg_repo):
    chat = ChatTokenizer.open(lg_checkpoint)
    served = _triton_model_file(lg_repo)
    assert served[0]["exaone4_file"].startswith(str(lg_repo))  # the shipped copy ran, not an installed package
    for (name, thinking), triton in zip(CASES, served):
        case = CONVERSATIONS[name]
        text, ids = _transformers(lg_checkpoint, name, thinking)
        ours = chat.render(case["messages"], enable_thinking=thinking, tools=case.get("tools"))
        assert ours == text == triton["text"], (name, thinking)
        assert chat.encode(ours) == ids == triton["ids"], (name, thinking)
    assert "<think>\n" in _transformers(lg_checkpoint, "system", True)[0][-10:]  # the cases do differ in thinking
    assert "[|tool|]" in _transformers(lg_checkpoint, "tool_results", False)[0]


def test_the_triton_model_file_has_no_second_chat_implementation():
    source = (HERE.parent / "exporter" / "triton_models" / "generate.py").read_text()
    for second_copy in ("jinja2", "from_string", "token_to_id", "eos_token_id", "argmax", "tokenizers", "chat_template"):
        assert second_copy not in source, second_copy


@pytest.mark.hardening("Chat", tried="a template that raises, special tokens missing from the vocabulary, eos_token_id of the wrong type",
                       expect="one line naming the file and the problem")
def test_bad_chat_files_are_refused_naming_the_file(lg_checkpoint, tmp_path):
    import shutil

    broken = tmp_path / "ckpt"
    shutil.copytree(lg_checkpoint, broken)
    template = broken / "chat_template.jinja"
    template.write_text("{{ raise_exception('no system role here') }}")
    with pytest.raises(InputError, match=r"chat_template.jinja: cannot render this conversation \(no system role here\)"):
        ChatTokenizer.open(broken).render([{"role": "user", "content": "hi"}])
    template.write_text("{% for %}")
    with pytest.raises(InputError, match="chat_template.jinja: does not compile"):
        ChatTokenizer.open(broken)
    shutil.copy(lg_checkpoint / "chat_template.jinja", template)
    generation = broken / "generation_config.json"
    for bad in ("[|endofturn|]", [2, "x"], [], True):
        generation.write_text(json.dumps({"eos_token_id": bad}))
        with pytest.raises(InputError, match="generation_config.json: eos_token_id: must be a token id or a list of token ids"):
            ChatTokenizer.open(broken)
    generation.write_text(json.dumps({"eos_token_id": [2, 99999]}))
    with pytest.raises(InputError, match=r"eos_token_id: \[99999\] outside the vocabulary"):
        ChatTokenizer.open(broken)
    shutil.copy(lg_checkpoint / "generation_config.json", generation)
    config = json.loads((broken / "tokenizer_config.json").read_text())
    (broken / "tokenizer_config.json").write_text(json.dumps(dict(config, eos_token="<|im_end|>")))
    with pytest.raises(InputError, match=r"tokenizer_config.json: eos_token: '<\|im_end\|>' is not a token of tokenizer.json"):
        ChatTokenizer.open(broken)
