"""TensorRT path on a CPU-only machine: trt lowering and fp8 at parity in onnxruntime, real
fp16 / fp8 engines built with TensorRT for RTX, their build records, and refusals."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import ARCHITECTURES, hf_config, random_hf_model, save_hf_checkpoint

from exaone4.exporter.cli import main
from exaone4.exporter.export import ExportOptions, export_checkpoint, lower_export
from exaone4.exporter.quantize import quantize_export
from exaone4.exporter.tiny import TINY_DIR

trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX is not installed (pip install tensorrt-rtx)")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def trt_exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("trt")
    export_checkpoint(TINY_DIR, root / "canonical-fp16", ExportOptions(target="canonical", dtype="float16"))
    lower_export(root / "canonical-fp16", root / "trt-fp16", "trt")
    quantize_export(root / "trt-fp16", TINY_DIR, root / "trt-fp8")
    return root


def test_trt_lowered_graph_is_at_fp16_parity_in_onnxruntime(trt_exports, tmp_path):
    result = cli("verify", trt_exports / "trt-fp16", "--checkpoint", "bundled:tiny", "--backend", "ort",
                 "--report", tmp_path / "report", "--quiet", "--scenario", "prefill_decode", "--scenario", "left_padded_batch")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "report" / "report.json").read_text())["precision"] == "fp16"


def test_fp8_export_records_scales_and_is_within_fp8_tolerance(trt_exports, tmp_path):
    manifest = json.loads((trt_exports / "trt-fp8" / "export.json").read_text())
    quantization = manifest["quantization"]
    assert quantization["format"] == "fp8" and quantization["tokens"] >= 256
    assert len(quantization["activation_amax"]) == 8 * 7 == len(quantization["weight_amax"])  # q,k,v,o,gate,up,down
    assert "lm_head" not in json.dumps(quantization["weight_amax"])
    assert manifest["passes"]["fp8:quantize_fp8"] == {"matmuls": 56, "kept_high_precision": 1}
    result = cli("verify", trt_exports / "trt-fp8", "--checkpoint", "bundled:tiny", "--backend", "ort",
                 "--report", tmp_path / "report", "--quiet")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert result.exit_code == 0, (tmp_path / "report" / "report.md").read_text()
    assert report["precision"] == "fp8"
    worst = max(step["max_rel"] for s in report["scenarios"] for step in s["results"]["ort"]["steps"])
    print(f"fp8 on the bundled model: worst logits max rel error {worst:.3f}")
    assert 1e-3 < worst  # fp8 really quantizes: an fp16 export is 10x closer


@pytest.mark.parametrize("precision", ["fp16", "fp8"])
def test_engines_build_on_cpu_with_profiles_and_bindings(trt_exports, tmp_path, precision):
    out = tmp_path / "engine"
    result = cli("build", trt_exports / f"trt-{precision}", "--precision", precision, "-o", out, "--max-batch", "2", "--quiet")
    assert result.exit_code == 0, result.output
    build = json.loads((out / "build.json").read_text())
    manifest = json.loads((trt_exports / f"trt-{precision}" / "export.json").read_text())
    assert build["provider"] == "tensorrt-rtx" and build["precision"] == precision
    assert build["compute_capabilities"] == (["SM80", "SM86", "SM89"] if precision == "fp16" else ["SM89"])
    names = [b["name"] for b in build["io"]]
    assert names == [io["name"] for io in manifest["io"]["inputs"]] + [io["name"] for io in manifest["io"]["outputs"]]
    assert {b["name"]: b["dtype"] for b in build["io"]}["logits"] == "float32"  # one dtype spelling in every record
    prefill, decode = build["profiles"]
    assert prefill["shapes"]["past_key_values.0.key"][2] == [2, 2, 0, 32]  # past is empty when prefilling
    assert prefill["shapes"]["input_ids"][2] == [2, 512]
    assert decode["shapes"]["input_ids"] == [[1, 1], [1, 1], [2, 1]]
    assert decode["shapes"]["attention_mask"][2] == [2, 512]
    assert build["layer_types"]["ATTENTION_INPUT"] == 8 and build["layer_types"]["ROTARY_EMBEDDING"] == 12
    assert (build["layer_types"].get("QUANTIZE", 0) > 0) == (precision == "fp8")
    assert (out / "model.engine").stat().st_size == build["engine_bytes"] > 1 << 20
    shown = cli("inspect-engine", out)
    assert shown.exit_code == 0 and "ATTENTION_INPUT 8" in shown.output


def test_hybrid_random_model_builds_from_a_canonical_export(tmp_path):
    checkpoint = save_hf_checkpoint(random_hf_model(hf_config(**ARCHITECTURES["hybrid_gqa"], head_dim=16)), tmp_path / "ckpt")
    export_checkpoint(checkpoint, tmp_path / "canonical", ExportOptions(target="canonical", dtype="float16"))
    result = cli("build", tmp_path / "canonical", "--precision", "fp16", "-o", tmp_path / "engine", "--quiet")
    assert result.exit_code == 0, result.output
    build = json.loads((tmp_path / "engine" / "build.json").read_text())
    assert build["layer_types"]["ATTENTION_INPUT"] == 4 and build["layer_types"]["ROTARY_EMBEDDING"] == 6  # 3 sliding
    assert build["export"]["target"] == "canonical"


def test_attention_plugin_engine_builds_on_cpu(trt_exports, tmp_path):
    out = tmp_path / "engine"
    result = cli("build", trt_exports / "canonical-fp16", "--precision", "fp16", "--attention", "plugin", "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    build = json.loads((out / "build.json").read_text())
    assert build["options"]["attention"] == "plugin"
    assert build["layer_types"]["PLUGIN_V3"] == 8 and "ATTENTION_INPUT" not in build["layer_types"]
    assert b"Exaone4Attention" in (out / "model.engine").read_bytes()  # the engine names the plugin; its code is ours
    result = cli("build", trt_exports / "trt-fp16", "--precision", "fp16", "--attention", "plugin", "-o", out / "x", "--quiet")
    assert result.exit_code == 2 and "build it from a canonical export" in result.output


@pytest.mark.hardening("engines", tried="5 bad build requests (not an export, SM86 fp8, context too long, fp32, fp16 as fp8)", expect="exit 2, nothing written")
def test_build_refusals_exit_2_and_write_nothing(trt_exports, tmp_path, tiny_exports):
    cases = [
        (["build", tmp_path, "--precision", "fp16"], "not an export of this tool"),
        (["build", trt_exports / "trt-fp8", "--precision", "fp8", "--compute-capability", "SM86"], "SM86 has no FP8 tensor cores"),
        (["build", trt_exports / "trt-fp16", "--precision", "fp16", "--max-context", "4096"], "exceeds the model's max_position_embeddings 512"),
        (["build", tiny_exports["canonical"], "--precision", "fp16"], "float32 attention has no fused TensorRT kernel"),
        (["build", trt_exports / "trt-fp16", "--precision", "fp8"], "an fp8 engine needs an fp8 export"),
    ]
    for args, message in cases:
        out = tmp_path / "engine"
        result = cli(*args, "-o", out, "--quiet")
        assert result.exit_code == 2 and message in result.output, (args, result.output)
        assert not out.exists()


@pytest.mark.hardening("engines", tried="model.engine changed after build: inspect-engine, triton", expect="exit 2 naming the engine, nothing written")
def test_changed_engine_is_refused(trt_exports, tmp_path):
    out = tmp_path / "engine"
    assert cli("build", trt_exports / "trt-fp16", "--precision", "fp16", "-o", out, "--quiet").exit_code == 0
    data = bytearray((out / "model.engine").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "model.engine").write_bytes(bytes(data))
    result = cli("inspect-engine", out)
    assert result.exit_code == 2 and "changed since it was built" in result.output
    result = cli("triton", out, "--repo", tmp_path / "repo")
    assert result.exit_code == 2 and f"{out / 'model.engine'}: changed since it was built" in result.output
    assert not (tmp_path / "repo").exists()


def test_trt_backend_is_skipped_with_the_reason_without_a_gpu(trt_exports, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: scripts/gpu-check.sh runs the engine instead")
    engine = tmp_path / "engine"
    assert cli("build", trt_exports / "trt-fp16", "--precision", "fp16", "-o", engine, "--quiet").exit_code == 0
    result = cli("verify", trt_exports / "trt-fp16", "--checkpoint", "bundled:tiny", "--backend", "ort", "--backend", "trt",
                 "--engine", engine, "--report", tmp_path / "report", "--quiet", "--scenario", "prefill")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["skipped"] == {"trt": "no CUDA GPU on this machine (TensorRT engines run on NVIDIA GPUs only)"}


def test_generate_on_an_engine_needs_a_gpu(trt_exports, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: scripts/gpu-check.sh covers engine generation")
    engine = tmp_path / "engine"
    assert cli("build", trt_exports / "trt-fp16", "--precision", "fp16", "-o", engine, "--quiet").exit_code == 0
    result = cli("generate", engine, "--prompt", "hi")
    assert result.exit_code == 2 and "no CUDA GPU on this machine" in result.output
