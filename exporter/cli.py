"""The `exaone4-export` command line: a thin layer over the library.

Every command turns its options into library calls. Bad input raised as
`InputError` becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import signal
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .cache_budget import DEFAULT_BUDGET_GIB
from .contract import ENGINE_FILE
from .errors import InputError
from .tiny import BUNDLED_NAME, TINY_DIR

EXIT_BAD_INPUT = 2


def model_dir(value: str) -> Path:
    """A checkpoint directory; the literal `bundled:tiny` names the bundled model."""
    return TINY_DIR if value == BUNDLED_NAME else Path(value)


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C so staged outputs are cleaned up on the way out."""


def _raise_terminated(signum, frame):
    raise Terminated()


def reports_bad_input(command):
    """Turn InputError into one line and exit 2; Ctrl-C / SIGTERM clean up and exit 130 / 143."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            return command(*args, **kwargs)
        except InputError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted: partial outputs removed", err=True)
            sys.exit(130)
        except Terminated:
            click.echo("terminated: partial outputs removed", err=True)
            sys.exit(143)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="exaone4-export")
def main() -> None:
    """Export EXAONE 4.0 checkpoints to ONNX / TensorRT / Triton at numerical parity.

    CHECKPOINT arguments take a Hugging Face checkpoint directory, or
    `bundled:tiny` for the small trained model that ships with the tool.
    """


@main.command()
@click.argument("checkpoint", default=BUNDLED_NAME)
@click.option("--json", "as_json", is_flag=True, help="Print the parsed architecture as JSON.")
@reports_bad_input
def inspect(checkpoint: str, as_json: bool) -> None:
    """Print the parsed architecture of CHECKPOINT: class and labels, layer kinds, window, RoPE, size."""
    from .checkpoint import Checkpoint

    ckpt = Checkpoint.open(model_dir(checkpoint))
    summary = ckpt.config.to_summary()
    summary.update(directory=str(ckpt.directory), storage_dtype=ckpt.dtype, size_bytes=ckpt.size_bytes,
                   head=ckpt.config.head.to_summary())
    if as_json:
        import json

        click.echo(json.dumps(summary, indent=2))
        return
    Console().print(_architecture_table(summary))


def _architecture_table(summary: dict) -> Table:
    table = Table(title=f"EXAONE 4 checkpoint {summary['directory']}", show_header=False)
    kinds = summary["layer_kinds"]
    pattern = "".join("L" if k == "sliding_attention" else "G" for k in kinds)
    rope = summary["rope"]
    rope_layers = [i for i, r in enumerate(summary["layer_rope"]) if r]
    head = summary["head"]
    rows = [
        ("class", f"{head['architecture']} ({head['task']})"),
        *([("labels", _labels(head))] if "id2label" in head else []),
        ("parameters", f"{summary['parameters']:,}"),
        ("storage", f"{summary['storage_dtype']}, {summary['size_bytes'] / 2**20:.1f} MiB"),
        ("layers", f"{summary['num_layers']} ({pattern}: L sliding, G global)"),
        ("sliding window", str(summary["sliding_window"])),
        ("hidden / intermediate", f"{summary['hidden_size']} / {summary['intermediate_size']}"),
        ("heads / kv heads / head_dim", f"{summary['num_heads']} / {summary['num_kv_heads']} / {summary['head_dim']}"),
        ("rope", f"{rope['type']}, theta {rope['theta']:g}" + (f", factor {rope['factor']:g}" if rope["type"] != "default" else "")),
        ("rope on layers", "all" if len(rope_layers) == len(kinds) else ", ".join(map(str, rope_layers)) or "none"),
        ("vocab", str(summary["vocab_size"])),
        ("tied embeddings", str(summary["tie_word_embeddings"])),
        ("max positions", str(summary["max_position_embeddings"])),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def _labels(head: dict) -> str:
    """A classifier's labels by index, and its problem type when config.json names one."""
    labels = ", ".join(f"{i} {name}" for i, name in head["id2label"].items())
    return labels + (f" ({head['problem_type']})" if head.get("problem_type") else "")


@main.command()
@click.argument("checkpoint")
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@click.option("--target", type=click.Choice(["canonical", "ort", "standard", "trt"]), default="canonical", show_default=True,
              help="canonical: exaone4::Attention custom op; ort: GroupQueryAttention; standard: opset-23 ops only; trt: for TensorRT.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True)
@click.option("--kv-cache", type=click.Choice(["full", "window", "static"]), default="full", show_default=True,
              help="window: sliding layers keep only their last W-1 keys/values (global layers keep all); "
                   "static (ort): one in-place buffer per global layer, written where it is each step, and a ring of about "
                   "the window on each sliding layer.")
@click.option("--max-context", default=0, type=click.IntRange(0),
              help="Slots of each global layer's in-place buffer (--kv-cache static; default: the model's positions within --kv-budget).")
@click.option("--kv-budget", default=DEFAULT_BUDGET_GIB, show_default=True, type=float,
              help="GiB of in-place KV cache one sequence may take (--kv-cache static).")
@click.option("--logits", type=click.Choice(["all", "last"]), default="all", show_default=True,
              help="last: output the last position's logits only (faster prefill for generation).")
@click.option("--force", is_flag=True, help="Overwrite an output directory that is not an earlier export.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Progress as JSON lines on stderr; the result as JSON on stdout.")
@reports_bad_input
def export(checkpoint, out, target, dtype, kv_cache, max_context, kv_budget, logits, force, quiet, as_json) -> None:
    """Export CHECKPOINT to ONNX with a KV cache (model.onnx + export.json in OUT)."""
    from .export import ExportOptions, export_checkpoint

    options = ExportOptions(target=target, dtype=dtype, force=force, kv_cache=kv_cache, logits=logits,
                            max_context=max_context, kv_budget_gib=kv_budget)
    with _progress(quiet, as_json) as step:
        manifest = export_checkpoint(model_dir(checkpoint), out, options, progress=step)
    _report_export(out, manifest, quiet, as_json)


@main.command()
@click.argument("canonical_export", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@click.option("--target", type=click.Choice(["ort", "standard", "trt", "canonical"]), required=True)
@click.option("--kv-cache", type=click.Choice(["full", "window", "static"]), default=None,
              help="window: bound the sliding layers' cache; static (ort): in-place buffers, rings on sliding layers "
                   "(default: keep the canonical export's kind).")
@click.option("--max-context", default=0, type=click.IntRange(0), help="Slots of each in-place buffer (--kv-cache static).")
@click.option("--kv-budget", default=DEFAULT_BUDGET_GIB, show_default=True, type=float,
              help="GiB of in-place KV cache one sequence may take (--kv-cache static).")
@click.option("--logits", type=click.Choice(["all", "last"]), default=None,
              help="last: the last position's logits only (default: keep the canonical export's).")
@click.option("--force", is_flag=True, help="Overwrite an output directory that is not an earlier export.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Progress as JSON lines on stderr; the result as JSON on stdout.")
@reports_bad_input
def lower(canonical_export, out, target, kv_cache, max_context, kv_budget, logits, force, quiet, as_json) -> None:
    """Lower a canonical export to another target without tracing again."""
    from .export import lower_export

    with _progress(quiet, as_json) as step:
        manifest = lower_export(canonical_export, out, target, force=force, progress=step, kv_cache=kv_cache, logits=logits,
                                max_context=max_context, kv_budget_gib=kv_budget)
    _report_export(out, manifest, quiet, as_json)


@main.command()
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("--checkpoint", required=True, help="The checkpoint the export came from (or bundled:tiny).")
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@click.option("--weights", type=click.Choice(["fp8", "int8", "int4"]), default="fp8", show_default=True,
              help="fp8: E4M3 Q/DQ (any float export; TensorRT). int8/int4: weight-only MatMulNBits (ort exports).")
@click.option("--block-size", type=click.Choice(["32", "64", "128"]), default=None,
              help="int8/int4: weights per scale along the input dimension (default 32; must divide every input dimension).")
@click.option("--method", type=click.Choice(["rtn", "calibrated"]), default=None,
              help="int8/int4: rtn (round to nearest, default) or calibrated (GPTQ on the reference model's activations).")
@click.option("--lm-head", type=click.Choice(["int8", "int4"]), default=None,
              help="int8/int4: the lm_head's (and a tied embedding's) width (default int8: int4 there costs the most accuracy).")
@click.option("--calib", type=click.Path(path_type=Path), default=None, help="UTF-8 text to calibrate on (default: built-in).")
@click.option("--force", is_flag=True, help="Overwrite an output directory that is not an earlier export.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Progress as JSON lines on stderr; the result as JSON on stdout.")
@reports_bad_input
def quantize(export_dir, checkpoint, out, weights, block_size, method, lm_head, calib, force, quiet, as_json) -> None:
    """Quantized export from EXPORT_DIR: fp8 Q/DQ calibrated on the reference model (default), or int8/int4 weights."""
    if weights == "fp8":
        from .quantize import quantize_export

        for name, value in (("--block-size", block_size), ("--method", method), ("--lm-head", lm_head)):
            if value is not None:
                raise InputError(name, "applies to --weights int8|int4 only")
        with _progress(quiet, as_json) as step:
            manifest = quantize_export(export_dir, model_dir(checkpoint), out, calib, force=force, progress=step)
    else:
        from .quantize_weights import DEFAULT_BLOCK_SIZE, WeightOptions, quantize_weights_export

        options = WeightOptions(weights, int(block_size or DEFAULT_BLOCK_SIZE), method or "rtn", lm_head or "int8")
        with _progress(quiet, as_json) as step:
            manifest = quantize_weights_export(export_dir, model_dir(checkpoint), out, options, calib, force=force, progress=step)
    _report_export(out, manifest, quiet, as_json)


@main.command()
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("--precision", type=click.Choice(["fp16", "fp8"]), required=True)
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Engine directory.")
@click.option("--max-batch", default=4, show_default=True, type=int)
@click.option("--max-prefill", default=0, type=int, help="Longest prompt in one call (default min(2048, max positions)).")
@click.option("--max-context", default=0, type=int, help="Longest cache (default min(8192, max positions)).")
@click.option("--compute-capability", "targets", multiple=True,
              help="TensorRT for RTX targets, e.g. SM89 (repeatable; default SM80/86/89 for fp16, SM89 for fp8).")
@click.option("--attention", type=click.Choice(["native", "plugin"]), default="native", show_default=True,
              help="native: TensorRT's attention layers; plugin: our IPluginV3 with the reference math (canonical exports).")
@click.option("--force", is_flag=True, help="Overwrite an output directory that is not an engine directory.")
@click.option("--quiet", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Progress as JSON lines on stderr; the result as JSON on stdout.")
@reports_bad_input
def build(export_dir, precision, out, max_batch, max_prefill, max_context, targets, attention, force, quiet, as_json) -> None:
    """Build a TensorRT engine (model.engine + build.json) from an fp16 or fp8 export."""
    import json

    from .trt.build import BuildOptions, build_engine

    options = BuildOptions(precision, max_batch, max_prefill, max_context, tuple(targets), force, attention)
    with _progress(quiet, as_json) as step:
        record = build_engine(export_dir, out, options, progress=step)
    if as_json:
        click.echo(json.dumps({k: v for k, v in record.to_json().items() if k != "layers"}))
    elif not quiet:
        click.echo(f"built {precision} engine with {record.provider} {record.provider_version} in "
                   f"{record.build_seconds:.1f} s: {Path(out) / ENGINE_FILE} ({record.engine_bytes / 2**20:.1f} MiB)", err=True)


@main.command("inspect-engine")
@click.argument("engine_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print build.json as is.")
@reports_bad_input
def inspect_engine(engine_dir, as_json) -> None:
    """Print an engine's build record and layer information."""
    import json

    from .artifacts import EngineDir
    from .contract import ATTENTION_MASK, INPUT_IDS

    build = EngineDir.open(engine_dir).build
    if as_json:
        click.echo(json.dumps(build.to_json(), indent=2))
        return
    table = Table(title=f"TensorRT engine {engine_dir}", show_header=False)
    targets = build.compute_capabilities
    for key, value in (
        ("provider", f"{build.provider} {build.provider_version}"),
        ("precision", build.precision),
        ("attention", build.attention),
        ("targets", ", ".join(targets) if isinstance(targets, list) else targets),
        ("size", f"{build.engine_bytes / 2**20:.1f} MiB, built in {build.build_seconds} s"),
        ("network layers", f"{build.num_layers} for {build.decoder_layers} decoder layers"),
        ("layer types", ", ".join(f"{k} {v}" for k, v in sorted(build.layer_types.items(), key=lambda kv: -kv[1]))),
    ):
        table.add_row(key, value)
    for profile in build.profiles:
        ids, mask = profile["shapes"][INPUT_IDS], profile["shapes"][ATTENTION_MASK]
        table.add_row(f"profile {profile['name']}", f"input_ids {ids[0]}..{ids[2]}, attention_mask {mask[0]}..{mask[2]}")
    for kind, tensor in build.io[:4]:
        table.add_row(kind, f"{tensor.name} {tensor.dtype} {list(tensor.shape)}")
    table.add_row("", f"... {len(build.io)} bindings in all")
    Console().print(table)


@main.command()
@click.argument("source", required=False, type=click.Path(path_type=Path))
@click.option("--repo", "repo", required=True, type=click.Path(path_type=Path), help="Model repository directory.")
@click.option("--runtime", type=click.Choice(["python-ort", "onnxruntime", "tensorrt"]), default=None,
              help="Decoder runtime (default: tensorrt for an engine, python-ort for an export).")
@click.option("--python-env", type=click.Path(path_type=Path), default=None,
              help="Virtual environment for the Python-backend models (EXECUTION_ENV_PATH).")
@click.option("--instances", default=2, show_default=True, type=click.IntRange(1, 64), help="Generation model instances.")
@click.option("--max-batch", type=int, default=None, help="Resident engine (--kv-cache static export): sequence slots [8].")
@click.option("--max-context", type=int, default=None, help="Resident engine: positions per slot [the export's].")
@click.option("--max-queue", type=int, default=None, help="Resident engine: requests waiting for a slot before refusing [64].")
@click.option("--prefill-chunk", type=int, default=None, help="Resident engine: prompt tokens prefilled per step [256].")
@click.option("--prefill-stall", type=int, default=None,
              help="Resident engine: while streams decode, a step's prefill takes about this many decode steps' time; 0: whole chunks [1].")
@click.option("--threads", type=int, default=None, help="Resident engine: onnxruntime intra-op threads [its default].")
@click.option("--check", is_flag=True, help="Validate REPO instead of writing it.")
@click.option("--force", is_flag=True, help="Overwrite a directory that is not a repository of this tool.")
@reports_bad_input
def triton(source, repo, runtime, python_env, instances, max_batch, max_context, max_queue, prefill_chunk, prefill_stall, threads,
           check, force) -> None:
    """Write a Triton Inference Server repository from an export or engine SOURCE (or --check one)."""
    from .triton import check_repository, write_repository

    if not check:
        if source is None:
            raise InputError("SOURCE", "an export or engine directory is needed (or pass --check)")
        engine = _engine_knobs(source, max_batch=max_batch, max_context=max_context, max_queue=max_queue,
                               prefill_chunk=prefill_chunk, prefill_stall=prefill_stall, threads=threads)
        summary = write_repository(source, repo, runtime, force=force, instances=instances, python_env=python_env,
                                   engine=engine)
        click.echo(f"wrote {', '.join(summary['models'])} ({summary['runtime']}) to {repo}", err=True)
        if "memory" in summary:
            click.echo(summary["memory"], err=True)
        click.echo(f"serve it with: tritonserver --model-repository={Path(repo).resolve()}", err=True)
    problems = check_repository(repo)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(EXIT_BAD_INPUT)
    click.echo(f"{repo}: every config.pbtxt parses and matches the export", err=True)


def _engine_knobs(source: Path, **asked):
    """The resident engine's knobs given on the command line (None when none is), flags named in errors."""
    from dataclasses import replace

    from .artifacts import ExportDir
    from .serving.config import EngineConfig

    given = {name: value for name, value in asked.items() if value is not None}
    if not given:
        return None
    context = ExportDir.open(source, check_files=False).static_context if ExportDir.exists(source) else None
    try:
        return replace(EngineConfig(max_context=context or EngineConfig.max_context), **given)
    except InputError as exc:
        raise InputError("--" + exc.where.replace("_", "-"), exc.problem) from None


def _report_export(out: Path, manifest, quiet: bool, as_json: bool = False) -> None:
    """One line (or the manifest as JSON) about an export just written; `manifest` is an ExportManifest."""
    if as_json:
        import json

        click.echo(json.dumps(manifest.to_json()))
        return
    if quiet:
        return
    size = sum((Path(out) / name).stat().st_size for name in manifest.files)
    cache = {"window": " with a window KV cache", "static": " with an in-place KV cache"}.get(manifest.kv_cache, "")
    click.echo(
        f"exported {manifest.target} {manifest.quantization_format or manifest.dtype}{cache} to {out} "
        f"({size / 2**20:.1f} MiB, {manifest.export_seconds:.1f} s)",
        err=True,
    )
    if manifest.max_context:
        from .artifacts import ExportDir
        from .cache_budget import describe

        click.echo(describe(ExportDir.open(out, check_files=False).config, manifest.dtype, manifest.max_context), err=True)


def _progress(quiet: bool, as_json: bool = False):
    from .progress import make_progress

    return make_progress(quiet=quiet, as_json=as_json)


@main.command()
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("--checkpoint", required=True, help="The checkpoint the export came from (or bundled:tiny).")
@click.option("--backend", "backends", multiple=True, type=click.Choice(["ort", "transformers", "trt"]),
              help="Backends to check against the reference (repeatable). Default: ort and transformers.")
@click.option("--report", "report_dir", required=True, type=click.Path(path_type=Path), help="Directory for the report files.")
@click.option("--scenario", "scenarios", multiple=True, help="Run only these scenarios (repeatable).")
@click.option("--engine", "engine_dir", type=click.Path(path_type=Path), default=None,
              help="TensorRT engine directory built from EXPORT_DIR, for --backend trt.")
@click.option("--polygraphy", "polygraphy_dir", type=click.Path(path_type=Path), default=None,
              help="Also save the feeds and reference outputs for `polygraphy run --load-inputs/--load-outputs`.")
@click.option("--ort-device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the ort backend runs: cuda needs onnxruntime-gpu (the [gpu] extra).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-context", default=4096, show_default=True, type=click.IntRange(8),
              help="Cap on the long-context scenario's length.")
@click.option("--text", "text_file", type=click.Path(path_type=Path), default=None,
              help="UTF-8 text for the perplexity scenario (default: the bundled model's held-out text).")
@click.option("--text-window", default=512, show_default=True, type=click.IntRange(2),
              help="Tokens per prefill of the perplexity scenario (also capped by the model's context).")
@click.option("--force", is_flag=True, help="Overwrite a report directory that holds something else.")
@click.option("--quiet", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Progress as JSON lines on stderr; the result as JSON on stdout.")
@reports_bad_input
def verify(export_dir, checkpoint, backends, report_dir, scenarios, engine_dir, polygraphy_dir, ort_device, seed, max_context,
           text_file, text_window, force, quiet, as_json) -> None:
    """Check EXPORT_DIR against the PyTorch reference; exit 0 within tolerance, 1 parity failure, 2 bad input."""
    from .parity.report import check_report_dir, markdown, write_report
    from .parity.verify import VerifyOptions, verify_export

    check_report_dir(report_dir, force)
    options = VerifyOptions(backends=tuple(backends) or ("ort", "transformers"), seed=seed, max_context=max_context,
                            scenarios=tuple(scenarios) or None, engine_dir=engine_dir, polygraphy_dir=polygraphy_dir,
                            ort_device=ort_device, text=text_file, text_window=text_window)
    with _progress(quiet, as_json) as step:
        report = verify_export(export_dir, model_dir(checkpoint), options, progress=step)
        write_report(report, report_dir, force=force)
    if as_json:
        import json

        summary = {s["name"]: {b: r["passed"] for b, r in s["results"].items()} for s in report["scenarios"]}
        ppl = report["perplexity"] and {b: r["passed"] for b, r in report["perplexity"]["results"].items()}
        click.echo(json.dumps({"passed": report["passed"], "report": str(report_dir), "scenarios": summary,
                               "perplexity": ppl, "skipped": report["skipped"]}))
    elif not quiet:
        click.echo(markdown(report).split("\n\nScenarios:")[0])
        click.echo(f"report written to {report_dir}", err=True)
    sys.exit(0 if report["passed"] else 1)


@main.command()
@click.argument("model", default=BUNDLED_NAME)
@click.option("--prompt", required=True, help="The user message.")
@click.option("--backend", type=click.Choice(["torch", "ort", "trt"]), default=None,
              help="Default: trt for an engine directory, ort for an export, torch for a checkpoint. "
                   "ort on a checkpoint exports it into the export cache first (reused while the weights match).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Export cache for --backend ort on a checkpoint (default $XDG_CACHE_HOME/exaone4-export).")
@click.option("--system", default=None, help="An optional system message.")
@click.option("--max-new-tokens", default=48, show_default=True, type=click.IntRange(1, 1 << 20))
@click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(0.0))
@click.option("--top-k", default=0, show_default=True, type=click.IntRange(0))
@click.option("--top-p", default=1.0, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--think", is_flag=True, help="Reasoning mode: open a <think> block.")
@click.option("--tools", "tools_file", type=click.Path(path_type=Path), default=None,
              help="JSON file with a list of tool schemas offered to the model.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (text, reasoning, content, tool calls, speed).")
@click.option("--quiet", is_flag=True, help="Print only the generated text.")
@reports_bad_input
def generate(model, prompt, backend, cache_dir, system, max_new_tokens, temperature, top_k, top_p, seed, think, tools_file,
             as_json, quiet) -> None:
    """Chat with MODEL (a checkpoint, an export or an engine), streaming tokens as they are made."""
    import json

    from .backends import open_backend
    from .chat import ChatTokenizer, Sampling, TextStream, conversation, parse_response
    from .generate import generate_tokens

    tools = _read_tools(tools_file) if tools_file else None
    notice = (lambda message: None) if quiet or as_json else (lambda message: click.echo(message, err=True))
    loaded = open_backend(model_dir(model), backend, cache_dir=cache_dir, notice=notice)
    chat = ChatTokenizer.open(loaded.tokenizer_dir)
    prompt_ids = chat.prompt_ids(conversation(prompt, system), enable_thinking=think, tools=tools)
    context = loaded.config.max_position_embeddings
    if len(prompt_ids) + max_new_tokens > context:
        raise InputError("--max-new-tokens", f"prompt ({len(prompt_ids)} tokens) plus new tokens exceed the context of {context}")
    sampling = Sampling(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    stream = TextStream(chat)
    with loaded.runner as runner:
        session = runner.new_session(loaded.layout)
        start, first = time.perf_counter(), None
        for token in generate_tokens(session, prompt_ids, max_new_tokens, chat.stop_ids, sampling):
            first = first or time.perf_counter()
            if token in chat.stop_ids:
                break
            piece = stream.push(token)
            if not as_json:
                click.echo(piece, nl=False)
        end = time.perf_counter()
    rest = stream.flush()
    if not as_json:
        click.echo(rest)
    tokens, text = stream.tokens, stream.text
    decoded = max(len(tokens) - 1, 0)
    speed = {"prefill_tokens": len(prompt_ids), "prefill_tokens_per_s": round(len(prompt_ids) / (first - start), 1),
             "decode_tokens": decoded, "decode_tokens_per_s": round(decoded / max(end - first, 1e-9), 1)}
    if as_json:
        parsed = parse_response(text, thinking_opened=think)
        click.echo(json.dumps({"backend": loaded.runner.name, "text": text, **parsed.to_dict(), "tokens": tokens, **speed}))
        return
    if not quiet:
        click.echo(f"[{loaded.runner.name}: prefill {len(prompt_ids)} tokens at {speed['prefill_tokens_per_s']:.0f} tok/s, "
                   f"decode {decoded} tokens at {speed['decode_tokens_per_s']:.0f} tok/s]", err=True)
        if tools or think:
            parsed = parse_response(text, thinking_opened=think)
            for call in parsed.tool_calls:
                click.echo(f"[tool call: {call['name']}({json.dumps(call['arguments'])})]", err=True)


def _read_tools(path: Path) -> list:
    from .chat import read_tools

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"is not a readable JSON file ({exc})") from None
    return read_tools(text, str(path))


if __name__ == "__main__":
    main()
