"""The served post-processing (exporter/head_serving.py) on the ort export equals transformers' pipelines,
without a server: batched and right-padded as the Triton model batches, one answer per text."""

from __future__ import annotations

import numpy as np
import pytest

from exaone4.exporter.errors import InputError
from exaone4.exporter.head_serving import HeadTokenizer, classify, embed, word_entities
from exaone4.exporter.runners import OrtRunner

TEXTS = ["def dumps(obj, indent=None): return json", "import os and sys", "class Quote(str): pass", "x",
         "for key in sorted(d): print(key)"]


def _batch_outputs(entry, texts):
    tokenizer = HeadTokenizer.open(str(entry["ort"]), 0)
    encodings = [tokenizer.encode(text) for text in texts]
    with OrtRunner(entry["ort"]) as runner:
        return tokenizer, encodings, runner.infer(tokenizer.batch(encodings))


def test_text_classification_equals_the_pipeline(head_exports):
    transformers = pytest.importorskip("transformers")
    entry = head_exports[("Exaone4ForSequenceClassification", "llama3_hybrid")]
    tokenizer, _, outputs = _batch_outputs(entry, TEXTS)
    pipe = transformers.pipeline("text-classification", model=entry["model"],
                                 tokenizer=transformers.AutoTokenizer.from_pretrained(entry["checkpoint"]))
    labels = ["NEGATIVE", "NEUTRAL", "POSITIVE"]
    for row, text in enumerate(TEXTS):
        label, scores = classify(outputs["logits"][row], labels, None)
        expected = {e["label"]: e["score"] for e in pipe(text, top_k=None)}
        assert label == max(expected, key=expected.get)
        assert np.abs(scores - [expected[name] for name in labels]).max() <= 1e-4


def test_token_classification_equals_the_pipeline_with_word_aggregation(head_exports):
    transformers = pytest.importorskip("transformers")
    entry = head_exports[("Exaone4ForTokenClassification", "hybrid_gqa")]
    tokenizer, encodings, outputs = _batch_outputs(entry, TEXTS)
    pipe = transformers.pipeline("token-classification", model=entry["model"], aggregation_strategy="first",
                                 tokenizer=transformers.AutoTokenizer.from_pretrained(entry["checkpoint"]))
    seen = 0
    for row, text in enumerate(TEXTS):
        got = word_entities(text, encodings[row], outputs["logits"][row], ["O", "B-PER", "I-PER"], tokenizer)
        expected = pipe(text)
        assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in got] == \
            [(e["entity_group"], e["word"], e["start"], e["end"]) for e in expected], text
        assert all(abs(g["score"] - float(e["score"])) <= 1e-4 for g, e in zip(got, expected))
        seen += len(got)
    assert seen > 0  # the random model tags something, so grouping is exercised


def test_embeddings_pool_the_texts_own_states_as_transformers_computes_them(head_exports):
    """Right-padded rows cut to their own tokens equal transformers' states of each text alone; last / mean / normalized."""
    torch = pytest.importorskip("torch")
    entry = head_exports[("Exaone4Model", "hybrid_gqa")]
    _, encodings, outputs = _batch_outputs(entry, TEXTS)
    for row, encoding in enumerate(encodings):
        states = outputs["last_hidden_state"][row, : len(encoding.ids)]
        with torch.no_grad():
            expected = entry["model"](input_ids=torch.tensor([encoding.ids])).last_hidden_state[0].numpy()
        np.testing.assert_allclose(embed(states), expected[-1], atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(embed(states, "mean"), expected.mean(0), atol=1e-4, rtol=1e-4)
        unit = embed(states, "mean", normalize=True)
        np.testing.assert_allclose(unit, expected.mean(0) / np.linalg.norm(expected.mean(0)), atol=1e-5)
    with pytest.raises(InputError, match="pooling: must be one of last, mean, got 'max'"):
        embed(states, "max")
