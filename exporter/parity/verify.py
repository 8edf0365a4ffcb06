"""`exaone4-export verify`: an export against its checkpoint, every scenario, every backend.

    report = verify_export(export_dir, checkpoint_dir, VerifyOptions(backends=("ort", "transformers")))

The reference is our PyTorch model in fp32 on the checkpoint. Backends:
`ort` (the export in onnxruntime), `transformers` (the checkpoint in
transformers, an independent second reference), `trt` (a TensorRT engine built
from the export, `--engine`; skipped with the reason where no GPU is present).
Besides the synthetic scenarios, the perplexity scenario (perplexity.py) scores
real text, `--text` or the bundled model's held-out text, on the ort backend.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import ExportDir, ExportManifest
from ..checkpoint import Checkpoint
from ..contract import TOKENIZER_FILE, CacheLayout
from ..errors import InputError
from ..heads import Head
from ..load import load_reference_model
from ..runners import OrtRunner, Runner, TorchHeadRunner, TorchRunner, TransformersRunner
from . import heads, perplexity
from .harness import compare, run_scenario
from .polygraphy_io import RecordingRunner, save_polygraphy
from .scenarios import build_scenarios
from .tolerances import PERPLEXITY_TOLERANCES, TOLERANCES, precision_of

BACKENDS = ("ort", "transformers", "trt")


@dataclass(frozen=True)
class VerifyOptions:
    backends: tuple[str, ...] = ("ort", "transformers")
    seed: int = 0
    max_context: int = 4096
    scenarios: tuple[str, ...] | None = None  # None: all
    engine_dir: Path | None = None  # the TensorRT engine for the trt backend
    polygraphy_dir: Path | None = None  # also save feeds / reference outputs in Polygraphy's formats
    ort_device: str = "cpu"  # or "cuda": the ort backend on onnxruntime-gpu's CUDA execution provider
    text: Path | None = None  # UTF-8 text for the perplexity scenario; None: the bundled model's held-out text
    text_window: int = perplexity.DEFAULT_WINDOW  # tokens per prefill of that scenario (also capped by the context)


ORT_PROVIDERS = {"cpu": ("CPUExecutionProvider",), "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider")}


def ort_providers(device: str) -> tuple[str, ...]:
    """onnxruntime's execution providers for `--ort-device`; refuses CUDA where this onnxruntime has none."""
    import onnxruntime

    if device not in ORT_PROVIDERS:
        raise InputError("--ort-device", f"{device!r} is not one of {', '.join(ORT_PROVIDERS)}")
    missing = [p for p in ORT_PROVIDERS[device] if p not in onnxruntime.get_available_providers()]
    if missing:
        raise InputError("--ort-device", f"this onnxruntime has no {missing[0]} (on a GPU host: the [gpu] extra, README)")
    return ORT_PROVIDERS[device]


def _open_backend(
    name: str, export: ExportDir, checkpoint: Checkpoint, options: VerifyOptions
) -> tuple[Runner | None, CacheLayout | None, str | None]:
    """(runner, cache layout, None) or (None, None, why it is skipped)."""
    config = checkpoint.config
    engine_dir = options.engine_dir
    if name == "ort":
        runner = OrtRunner(export.model_path, hidden_states=True, providers=ort_providers(options.ort_device),
                           static_context=export.static_context)
        return runner, export.cache_layout(), None
    if name == "transformers":
        try:
            import transformers  # noqa: F401
        except ImportError:
            return None, None, "transformers is not installed (pip install 'exaone4-export[test]')"
        return TransformersRunner(checkpoint.directory), CacheLayout.of(config), None
    if name == "trt":
        from ..trt.provider import gpu_unavailable_reason

        if engine_dir is None:
            return None, None, "no engine given (--engine ENGINE_DIR)"
        reason = gpu_unavailable_reason()
        if reason:
            return None, None, reason
        from ..trt.runner import TrtRunner

        runner = TrtRunner(engine_dir)
        return runner, runner.artifact.cache_layout(), None
    raise InputError("--backend", f"{name!r} is not one of {', '.join(BACKENDS)}")


def verify_export(
    export_dir: Path,
    checkpoint_dir: Path,
    options: VerifyOptions = VerifyOptions(),
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """Run every scenario on every backend; returns the report dictionary (docs/parity-report.md)."""
    started = time.perf_counter()
    if "ort" in options.backends:
        ort_providers(options.ort_device)  # refuse a missing execution provider before any work
    export = ExportDir.open(export_dir)
    manifest = export.manifest
    checkpoint = Checkpoint.open(checkpoint_dir)
    export.check_architecture(checkpoint.config, checkpoint_dir)
    precision = precision_of(manifest.dtype, manifest.quantization_format)
    tolerance = TOLERANCES[precision]
    if manifest.head is not Head.CAUSAL_LM:
        return _verify_head(export, checkpoint, options, precision, progress, started)
    scenarios = build_scenarios(checkpoint.config, options.seed, options.max_context)
    if options.scenarios:
        unknown = set(options.scenarios) - {s.name for s in scenarios} - {perplexity.NAME}
        if unknown:
            raise InputError("--scenario", f"unknown scenario(s) {', '.join(sorted(unknown))}")
        scenarios = [s for s in scenarios if s.name in options.scenarios]
    text, ppl_why_not = _perplexity_text(export, options)  # a bad --text refused before any work

    progress("loading reference model")
    reference = RecordingRunner(TorchRunner(load_reference_model(checkpoint), hidden_states=True))
    reference_layout = CacheLayout.of(checkpoint.config)
    backends, skipped = {}, {}
    for name in options.backends:
        runner, layout, why = _open_backend(name, export, checkpoint, options)
        if runner is None:
            skipped[name] = why
        else:
            backends[name] = (runner, layout)

    results = []
    with ExitStack() as stack:
        for runner, _ in backends.values():
            stack.enter_context(runner)
        for done, scenario in enumerate(scenarios):
            advance = getattr(progress, "advance", None)
            if advance:
                advance(done, len(scenarios))
            progress(f"scenario {scenario.name}: reference")
            reference.recording = options.polygraphy_dir is not None and scenario.batch == 1
            ref_trace = run_scenario(reference, reference_layout, scenario, None)
            reference.recording = False
            entry = {
                "name": scenario.name,
                "description": scenario.description,
                "feeds": {"prompts": [list(p) for p in scenario.prompts], "decode_tokens": ref_trace.decode_tokens,
                          "greedy_reference": ref_trace.greedy},
                "results": {},
            }
            for name, (runner, layout) in backends.items():
                progress(f"scenario {scenario.name}: {name}")
                got = run_scenario(runner, layout, scenario, ref_trace.decode_tokens)
                entry["results"][name] = compare(ref_trace, got, checkpoint.config.num_layers, tolerance)
            results.append(entry)
        ppl = None
        if text is not None or ppl_why_not:
            scored = {} if ppl_why_not else {n: backend for n, backend in backends.items() if n in perplexity.BACKENDS}
            window = min(options.text_window, checkpoint.config.max_position_embeddings)
            ppl = perplexity.run_perplexity(reference, reference_layout, scored, text, window, PERPLEXITY_TOLERANCES[precision],
                                            progress)
            ppl["skipped"] = {n: ppl_why_not or perplexity.NOT_SCORED for n in backends if n not in scored}

    if options.polygraphy_dir is not None:
        save_polygraphy(reference.records, options.polygraphy_dir)
    passed = all(r["passed"] for s in results for r in s["results"].values())
    passed = passed and (ppl is None or all(r["passed"] for r in ppl["results"].values()))
    return {
        "format": "exaone4-parity/1",
        "passed": passed,
        "export": {"directory": str(export.directory.resolve()), "target": manifest.target, "dtype": manifest.dtype,
                   "kv_cache": manifest.kv_cache, "logits": manifest.logits, "files": manifest.files},
        "checkpoint": str(checkpoint.directory.resolve()),
        "precision": precision,
        "tolerance": tolerance.to_dict(),
        "seed": options.seed,
        "backends": list(backends),
        "skipped": skipped,
        "scenarios": results,
        "perplexity": ppl,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "seconds": round(time.perf_counter() - started, 2),
    }


def _verify_head(export: ExportDir, checkpoint: Checkpoint, options: VerifyOptions, precision: str,
                 progress: Callable[[str], None], started: float) -> dict:
    """A head export: single-forward scenarios (parity/heads.py), no decoding, no perplexity."""
    config, manifest = checkpoint.config, export.manifest
    if options.text is not None:
        raise InputError("--text", f"the perplexity scenario needs an {Head.CAUSAL_LM.value}; {export.directory} is an "
                         f"{manifest.architecture}")
    scenarios = heads.head_scenarios(config.vocab_size, config.sliding_window, min(config.max_position_embeddings,
                                     options.max_context), config.pad_token_id, options.seed)
    if options.scenarios:
        unknown = set(options.scenarios) - {s["name"] for s in scenarios}
        if unknown:
            raise InputError("--scenario", f"unknown scenario(s) {', '.join(sorted(unknown))} for a head export")
        scenarios = [s for s in scenarios if s["name"] in options.scenarios]
    progress("loading reference model")
    reference = RecordingRunner(TorchHeadRunner(load_reference_model(checkpoint)))
    reference.recording = options.polygraphy_dir is not None
    backends, skipped = heads.head_backends(export, checkpoint, options.backends, ort_providers(options.ort_device))
    with ExitStack() as stack:
        for runner in backends.values():
            stack.enter_context(runner)
        results = heads.run_head_scenarios(manifest.head, reference, backends, scenarios, TOLERANCES[precision], progress)
    if options.polygraphy_dir is not None:
        save_polygraphy(reference.records, options.polygraphy_dir)
    return {
        "format": "exaone4-parity/1",
        "passed": all(r["passed"] for s in results for r in s["results"].values()),
        "export": {"directory": str(export.directory.resolve()), "target": manifest.target, "dtype": manifest.dtype,
                   "kv_cache": manifest.kv_cache, "logits": manifest.logits, "files": manifest.files},
        "head": ExportManifest.head_fields(config.head),
        "checkpoint": str(checkpoint.directory.resolve()),
        "precision": precision,
        "tolerance": TOLERANCES[precision].to_dict(),
        "seed": options.seed,
        "backends": list(backends),
        "skipped": skipped,
        "scenarios": results,
        "perplexity": None,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "seconds": round(time.perf_counter() - started, 2),
    }


def _perplexity_text(export: ExportDir, options: VerifyOptions) -> tuple[perplexity.Text | None, str | None]:
    """The perplexity scenario's text, and why its backends are not scored (None: they are).

    (None, None) when --scenario leaves it out. The text is read whenever the scenario is selected
    (a bad --text is bad input even for an export the scenario then skips), except the default text
    for an export without a tokenizer.
    """
    if options.scenarios and perplexity.NAME not in options.scenarios:
        if options.text is not None:
            raise InputError("--text", f"given, but --scenario does not select {perplexity.NAME}")
        return None, None
    if options.text is None and not (export.directory / TOKENIZER_FILE).is_file():
        return None, f"the export has no {TOKENIZER_FILE} to tokenize the default text with"
    text = perplexity.read_text(options.text, export.directory)
    if export.manifest.logits != "all":
        return text, (f"the {perplexity.NAME} scenario needs every position's logits: this export has --logits "
                      f"{export.manifest.logits}; export (or lower) it with --logits all")
    return text, None
