"""Head exports on the real Triton server: concurrent requests, answers equal to transformers' own.

For each of feature extraction (the base model), sequence classification, token
classification and question answering,
`exaone4-export triton` writes the python-ort repository of the ort export
(conftest.head_exports: random transformers models carrying the bundled tokenizer);
the real `tritonserver` (tests/triton_server.py) serves it and 8 concurrent requests
go through its dynamic batcher. The references are transformers' feature-extraction,
text-classification and token-classification pipelines (aggregation "first") on the
same model and tokenizer; transformers 5 ships no question-answering pipeline, so QA is checked
against transformers' model logits on the tokenizer's pair encoding with the classic
span search written out here.
"""

from __future__ import annotations

import concurrent.futures
import json
import urllib.request

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from exaone4.exporter.cli import main

from triton_server import ensure_triton, triton_server

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
TEXTS = ["def dumps(obj, indent=None): return json", "import os and sys", "class Quote(str): pass",
         "raise ValueError('bad input')", "for key in sorted(d): print(key)", "return a + b",
         "with open(path) as f: data = f.read()", "x"]
QUESTIONS = [("what does it return", text) for text in TEXTS]
EXPORTS = {"feature-extraction": ("Exaone4Model", "hybrid_gqa"),
           "text-classification": ("Exaone4ForSequenceClassification", "llama3_hybrid"),
           "token-classification": ("Exaone4ForTokenClassification", "hybrid_gqa"),
           "question-answering": ("Exaone4ForQuestionAnswering", "llama3_hybrid")}


@pytest.fixture(scope="module", params=sorted(EXPORTS))
def served(request, head_exports, tmp_path_factory):
    """(task, export entry, http url) with a real server running the task's repository."""
    triton = ensure_triton()
    if triton is None:
        pytest.skip("the Triton server could not be unpacked (scripts/setup_triton.sh needs the nvidia-pytriton wheel)")
    entry = head_exports[EXPORTS[request.param]]
    repo = tmp_path_factory.mktemp("head-triton") / "repo"
    result = CliRunner().invoke(main, ["triton", str(entry["ort"]), "--repo", str(repo), "--python-env", str(triton / "env")])
    assert result.exit_code == 0, result.output
    with triton_server(repo, tmp_path_factory.mktemp("log") / "tritonserver.log") as urls:
        yield request.param, entry, urls.http


def _ask(url: str, task: str, values: tuple[str, ...]):
    client = httpclient.InferenceServerClient(url)
    names = ("question", "context") if task == "question-answering" else ("text_input",)
    inputs = []
    for name, value in zip(names, values):
        tensor = httpclient.InferInput(name, [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[value.encode()]], dtype=np.object_))
        inputs.append(tensor)
    result = client.infer("exaone4", inputs)
    return {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}


def _concurrently(url: str, task: str, requests: list[tuple[str, ...]]) -> list[dict]:
    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda values: _ask(url, task, values), requests))


def _pipeline(task: str, entry):
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(entry["checkpoint"])
    extra = {"aggregation_strategy": "first"} if task == "token-classification" else {}
    return transformers.pipeline(task, model=entry["model"], tokenizer=tokenizer, **extra), tokenizer


def test_concurrent_requests_get_the_reference_answers(served):
    task, entry, url = served
    requests = QUESTIONS if task == "question-answering" else [(text,) for text in TEXTS]
    answers = _concurrently(url, task, requests)
    if task == "question-answering":
        _check_answers(entry, requests, answers)
        return
    pipe, _ = _pipeline(task, entry)
    for (text,), answer in zip(requests, answers):
        if task == "feature-extraction":  # the text's token states, and the last one as its vector (the default pooling)
            expected = np.array(pipe(text)[0], np.float32)
            states = answer["last_hidden_state"][0]
            assert states.shape == expected.shape, text
            np.testing.assert_allclose(states, expected, atol=1e-4, rtol=1e-4, err_msg=text)
            np.testing.assert_allclose(answer["embedding"][0], expected[-1], atol=1e-4, rtol=1e-4, err_msg=text)
        elif task == "text-classification":
            expected = pipe(text, top_k=None)
            by_label = {e["label"]: e["score"] for e in expected}
            assert answer["label"][0][0].decode() == max(by_label, key=by_label.get)
            scores = answer["scores"][0]
            assert np.abs(scores - [by_label[label] for label in ("NEGATIVE", "NEUTRAL", "POSITIVE")]).max() <= 1e-4
        else:
            expected = pipe(text)
            got = json.loads(answer["entities"][0][0].decode())
            assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in got] == \
                [(e["entity_group"], e["word"], e["start"], e["end"]) for e in expected], text
            assert all(abs(g["score"] - float(e["score"])) <= 1e-4 for g, e in zip(got, expected))


def _check_answers(entry, requests, answers):
    """The answer span from transformers' logits on its tokenizer's pair encoding, searched as the classic pipeline did."""
    _, tokenizer = _pipeline("text-classification", entry)  # only its tokenizer
    for (question, context), answer in zip(requests, answers):
        encoded = tokenizer(question, context, return_offsets_mapping=True)
        with torch.no_grad():
            out = entry["model"](input_ids=torch.tensor([encoded["input_ids"]]))
        context_tokens = np.array([s == 1 for s in encoded.sequence_ids()])
        probs = []
        for logits in (out.start_logits[0].numpy(), out.end_logits[0].numpy()):
            logits = np.where(context_tokens, logits.astype(np.float64), -np.inf)
            probs.append(np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum())
        best = max(((i, j) for i in np.flatnonzero(context_tokens) for j in range(i, min(i + 15, len(context_tokens)))
                    if context_tokens[j]), key=lambda ij: probs[0][ij[0]] * probs[1][ij[1]])
        offsets = encoded["offset_mapping"]
        assert answer["answer"][0][0].decode() == context[offsets[best[0]][0] : offsets[best[1]][1]], (question, context)
        assert abs(float(answer["score"][0][0]) - probs[0][best[0]] * probs[1][best[1]]) <= 1e-4


def test_requests_are_batched_and_a_bad_one_does_not_stop_the_server(served):
    task, _, url = served
    names = ("question", "context") if task == "question-answering" else ("text_input",)
    client = httpclient.InferenceServerClient(url)
    with pytest.raises(Exception, match="is required|unexpected|expected"):
        tensor = httpclient.InferInput("nonsense", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[b"x"]], dtype=np.object_))
        client.infer("exaone4", [tensor])
    with pytest.raises(Exception, match="the text is empty|exceed"):
        _ask(url, task, ("",) * len(names))
    _concurrently(url, task, [("what", TEXTS[0]) if len(names) == 2 else (TEXTS[0],)] * 8)
    with urllib.request.urlopen(f"http://{url}/v2/models/exaone4/stats") as response:
        stats = json.loads(response.read())["model_stats"][0]
    assert stats["execution_count"] < stats["inference_count"], stats  # the dynamic batcher stacked requests


def test_check_accepts_the_repository_and_names_a_missing_tokenizer(served, tmp_path):
    task, entry, _ = served
    repo = tmp_path / "repo"
    assert CliRunner().invoke(main, ["triton", str(entry["ort"]), "--repo", str(repo)]).exit_code == 0
    (repo / "exaone4" / "1" / "tokenizer.json").unlink()
    result = CliRunner().invoke(main, ["triton", "--repo", str(repo), "--check"])
    assert result.exit_code == 2 and "tokenizer.json: missing" in result.output


def test_check_names_a_wrong_pooling_parameter(head_exports, tmp_path):
    repo = tmp_path / "repo"
    assert CliRunner().invoke(main, ["triton", str(head_exports[EXPORTS["feature-extraction"]]["ort"]), "--repo", str(repo)]).exit_code == 0
    config = repo / "exaone4" / "config.pbtxt"
    assert 'key: "pooling", value: { string_value: "last" }' in config.read_text()
    config.write_text(config.read_text().replace('string_value: "last"', 'string_value: "max"'))
    result = CliRunner().invoke(main, ["triton", "--repo", str(repo), "--check"])
    assert result.exit_code == 2 and "parameter pooling must be one of last, mean, got 'max'" in result.output, result.output
