"""Head exports (base model, sequence / token classification, QA) in onnxruntime against transformers.

Each head is exported (canonical, then lowered to ort, standard and trt) from a random
transformers model of its class on two of conftest.ARCHITECTURES (conftest.HEAD_EXPORTS)
and run in onnxruntime on a batch mixing no padding (a row longer than the hybrid
configs' window), left padding and right padding; outputs must match transformers'
own `Exaone4For*` at 1e-4 (fp32) wherever a real token is.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import HEAD_EXPORTS, HEAD_TARGETS
from head_models import max_error, padded_batch, transformers_outputs

from exaone4.exporter.artifacts import ExportDir
from exaone4.exporter.cli import main
from exaone4.exporter.export import ExportOptions, export_checkpoint
from exaone4.exporter.runners import OrtRunner

TOL = 1e-4
PAIRS = [(cls, arch) for cls, archs in HEAD_EXPORTS.items() for arch in archs]


def run_export(directory, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    with OrtRunner(directory) as runner:
        return runner.infer({"input_ids": ids, "attention_mask": mask})


@pytest.mark.parametrize("target", HEAD_TARGETS)
@pytest.mark.parametrize("cls, architecture", PAIRS)
def test_head_export_matches_transformers_on_a_padded_batch(head_exports, cls, architecture, target):
    entry = head_exports[(cls, architecture)]
    ids, mask = padded_batch(entry["model"].config.vocab_size)
    expected = transformers_outputs(entry["model"], ids, mask)
    assert max_error(expected, run_export(entry[target], ids, mask), mask) <= TOL


def test_the_parity_check_catches_a_wrong_padding_mask(head_exports):
    """The comparison above fails when padding is not masked (every key visible), on every class."""
    for cls, architecture in PAIRS[::2]:
        entry = head_exports[(cls, architecture)]
        ids, mask = padded_batch(entry["model"].config.vocab_size)
        expected = transformers_outputs(entry["model"], ids, mask)
        assert max_error(expected, run_export(entry["ort"], ids, np.ones_like(mask)), mask) > 1e-2, cls


@pytest.mark.parametrize("cls, architecture", PAIRS[::2])
def test_head_graphs_have_the_custom_op_no_kv_cache_and_optimum_io(head_exports, cls, architecture):
    entry = head_exports[(cls, architecture)]
    export = ExportDir.open(entry["canonical"])
    manifest = export.manifest
    assert [t.name for t in manifest.inputs] == ["input_ids", "attention_mask"]
    assert manifest.architecture == cls and manifest.kv_cache == "full"
    expected_outputs = {"Exaone4Model": ["last_hidden_state"], "Exaone4ForQuestionAnswering": ["start_logits", "end_logits"]}
    assert [t.name for t in manifest.outputs] == expected_outputs.get(cls, ["logits"])
    assert all(t.dtype == "float32" for t in manifest.outputs)
    layers = export.config.num_layers
    canonical = onnx.load(entry["canonical"] / "model.onnx", load_external_data=False)
    assert sum(n.op_type == "Attention" and n.domain == "exaone4" for n in canonical.graph.node) == layers
    ort = onnx.load(entry["ort"] / "model.onnx", load_external_data=False)
    assert sum(n.op_type == "GroupQueryAttention" for n in ort.graph.node) == layers
    assert not (entry["ort"] / "genai_config.json").exists()  # nothing to generate with


def test_classifier_manifest_carries_the_labels(head_exports):
    manifest = ExportDir.open(head_exports[("Exaone4ForSequenceClassification", "llama3_hybrid")]["ort"]).manifest
    assert manifest.task == "text-classification" and manifest.num_labels == 3
    assert manifest.labels == ("NEGATIVE", "NEUTRAL", "POSITIVE") and manifest.label2id == {"NEGATIVE": 0, "NEUTRAL": 1, "POSITIVE": 2}
    assert manifest.outputs[0].shape == ("batch", 3)


def test_fp16_head_export_agrees_with_transformers_fp32(head_exports, tmp_path):
    """fp16 weights and activations; outputs stay fp32, labels and token labels agree with the fp32 model."""
    for cls, architecture in (("Exaone4ForSequenceClassification", "llama3_hybrid"),
                              ("Exaone4ForTokenClassification", "hybrid_gqa")):
        entry = head_exports[(cls, architecture)]
        out = tmp_path / cls
        manifest = export_checkpoint(entry["checkpoint"], out, ExportOptions(target="ort", dtype="float16"))
        assert manifest.outputs[0].dtype == "float32"
        ids, mask = padded_batch(entry["model"].config.vocab_size)
        expected = transformers_outputs(entry["model"], ids, mask)["logits"]
        got = run_export(out, ids, mask)["logits"]
        assert np.isfinite(got).all()
        rows = mask.astype(bool) if got.ndim == 3 else slice(None)
        scale = np.abs(expected[rows]).max()
        assert np.abs(expected[rows] - got[rows]).max() / scale <= 2e-2
        assert (expected[rows].argmax(-1) == got[rows].argmax(-1)).mean() >= 0.95


@pytest.mark.parametrize("args, message", [
    (["--kv-cache", "window"], "--kv-cache: --kv-cache window needs an Exaone4ForCausalLM; this model is an "
                               "Exaone4ForSequenceClassification"),
    (["--logits", "last"], "--logits: --logits last needs an Exaone4ForCausalLM"),
])
@pytest.mark.hardening("exports", tried="KV-cache and last-logits options asked of a classifier (one forward, no cache)",
                       expect="exit 2, one line naming the option and the model's class, nothing written")
def test_cache_options_on_a_head_are_refused_in_one_line(head_exports, tmp_path, args, message):
    checkpoint = head_exports[("Exaone4ForSequenceClassification", "llama3_hybrid")]["checkpoint"]
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", str(checkpoint), "-o", str(out), "--quiet", *args])
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_a_head_export_whose_config_changed_labels_is_refused(head_exports, tmp_path):
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(head_exports[("Exaone4ForTokenClassification", "hybrid_gqa")]["ort"], copy)
    config = json.loads((copy / "config.json").read_text())
    renamed = {"id2label": {"0": "O", "1": "B-LOC", "2": "I-LOC"}, "label2id": {"O": 0, "B-LOC": 1, "I-LOC": 2}}
    (copy / "config.json").write_text(json.dumps({**config, **renamed}))
    with pytest.raises(Exception, match="architectures or labels differ from those recorded in export.json"):
        ExportDir.open(copy)


@pytest.mark.hardening("generate", tried="generate (and quantize) asked of a head export or checkpoint",
                       expect="exit 2, one line naming the model and its class, before anything is loaded")
def test_generate_and_quantize_refuse_a_head_in_one_line(head_exports, tmp_path):
    entry = head_exports[("Exaone4ForQuestionAnswering", "llama3_hybrid")]
    for args in (["generate", str(entry["ort"]), "--prompt", "hi"],
                 ["generate", str(entry["checkpoint"]), "--prompt", "hi", "--backend", "torch"],
                 ["quantize", str(entry["ort"]), "--checkpoint", str(entry["checkpoint"]), "-o", str(tmp_path / "q")]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1 and "needs an Exaone4ForCausalLM; this model is an " \
            "Exaone4ForQuestionAnswering (question-answering" in result.output
    assert not (tmp_path / "q").exists()


def test_inspect_shows_the_class_and_labels(head_exports):
    checkpoint = head_exports[("Exaone4ForSequenceClassification", "llama3_hybrid")]["checkpoint"]
    result = CliRunner().invoke(main, ["inspect", str(checkpoint)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "Exaone4ForSequenceClassification (text-classification)" in result.output
    assert "0 NEGATIVE, 1 NEUTRAL, 2 POSITIVE" in result.output
    summary = json.loads(CliRunner().invoke(main, ["inspect", str(checkpoint), "--json"]).output)
    assert summary["head"]["label2id"] == {"NEGATIVE": 0, "NEUTRAL": 1, "POSITIVE": 2}
