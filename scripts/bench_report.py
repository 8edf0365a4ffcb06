"""Turn scripts/bench.py's results into results.json, table.md (for docs/benchmarks.md) and chart.png."""

from __future__ import annotations

import json
from pathlib import Path

GB = 1e9


def main() -> None:
    """Rewrite table.md and chart.png of a results folder from its results.json."""
    import sys

    out = Path(sys.argv[1])
    write_report(json.loads((out / "results.json").read_text()), out)


def write_report(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "table.md").write_text("\n".join(markdown(results)) + "\n")
    chart(results, out / "chart.png")


def markdown(results: dict) -> list[str]:
    copy = results.get("copy_bandwidth_bytes_per_s")
    best = max([results["bandwidth_bytes_per_s"], *(r.get("read_bandwidth", 0) for r in results.get("runtime", []))])
    lines = [f"Machine: {results['machine']}; best read bandwidth in the run {best / GB:.1f} GB/s"
             + (f" (copy: {copy / GB:.1f} GB/s, read + write)" if copy else "") + f". Command: `{results['command']}`.", ""]
    if "checkpoint" in results:
        c = results["checkpoint"]
        lines += [f"Checkpoint: {c['name']}, {c['layers']} layers, {c['parameters'] / 1e6:.0f}M parameters, "
                  f"{c['weight_bytes_fp32'] / GB:.2f} GB of fp32 weights.", ""]
    if "export" in results:
        lines += _export_table(results["export"])
    if "runtime" in results:
        lines += _runtime_table(results["runtime"])
    if "engines" in results:
        lines += _engine_table(results["engines"])
    if "window" in results:
        lines += _window_table(results["window"])
    return lines


def _export_table(export: dict) -> list[str]:
    lines = ["| export | wall | peak RSS |", "|---|---|---|"]
    for name, label in (("ours", "ours (canonical, fp32, streamed)"), ("naive", "naive transformers export, no cache")):
        r = export.get(name)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"| {label} | failed: {r['error']} | |")
        else:
            lines.append(f"| {label} | {r['seconds']:.1f} s | {r['peak_rss_kb'] / 2**20:.2f} GiB |")
    ours, naive = export.get("ours", {}), export.get("naive", {})
    if "seconds" in ours and "seconds" in naive:
        lines.append(f"| **naive / ours** | **{naive['seconds'] / ours['seconds']:.2f}x** | "
                     f"**{naive['peak_rss_kb'] / ours['peak_rss_kb']:.2f}x** |")
    lowers = ", ".join(f"{k[6:-2]} {v:.1f} s" for k, v in export.items() if k.startswith("lower_"))
    return lines + ["", f"Lowering the canonical export (no trace): {lowers}.", ""]


def _runtime_table(rows: list[dict]) -> list[str]:
    lines = ["| context | batch | backend | prefill tok/s | prefill vs ort | decode ms/token (min-max) | "
             "decode time / ort's | roofline fraction |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ort = row["backends"].get("ort")
        for name, r in row["backends"].items():
            prefill_ratio = f"{r['prefill_tokens_per_s'] / ort['prefill_tokens_per_s']:.2f}x" if ort else "-"
            decode_ratio = f"{r['decode_ms_per_token'] / ort['decode_ms_per_token']:.2f}x" if ort else "-"
            label = f"**{name}**" if name == "ort" else name
            lines.append(f"| {row['context']} | {row['batch']} | {label} | {r['prefill_tokens_per_s']:.0f} | {prefill_ratio} | "
                         f"{r['decode_ms_per_token']:.1f} ({r['decode_ms'][0]:.1f}-{r['decode_ms'][2]:.1f}) | "
                         f"{decode_ratio} | {r['roofline_fraction']:.2f} |")
    lines += ["", "Roofline per decode token (weights + KV bytes / best read bandwidth measured so far in the run): " + ", ".join(
        f"context {row['context']} batch {row['batch']}: {row['roofline_ms_per_token']:.1f} ms"
        + (f" at {row['read_bandwidth'] / GB:.1f} GB/s" if "read_bandwidth" in row else "") for row in rows), ""]
    return lines


def _engine_table(engines: dict) -> list[str]:
    if "error" in engines:
        return [f"Engines: {engines['error']}", ""]
    lines = [f"| TensorRT ({engines['provider']}) | seconds | engine size |", "|---|---|---|",
             f"| export, trt target, fp16 | {engines['export_fp16_s']:.1f} | |",
             f"| quantize to fp8 (calibration on the reference model) | {engines['quantize_fp8_s']:.1f} | |"]
    for precision in ("fp16", "fp8"):
        lines.append(f"| build {precision} engine | {engines[f'build_{precision}_s']:.1f} | "
                     f"{engines[f'engine_{precision}_bytes'] / 2**20:.0f} MiB |")
    return lines + [""]


def _window_table(window: dict) -> list[str]:
    lines = [f"KV cache of {window['checkpoint']} (fp16), one decode step at the context, fresh process each:", "",
             "| context | KV cache | KV bytes, this cut | KV bytes, whole 64-layer 32B | full / window | step | peak RSS |",
             "|---|---|---|---|---|---|---|"]
    by_context: dict[int, dict[str, dict]] = {}
    for row in window["rows"]:
        by_context.setdefault(row["context"], {})[row["kv_cache"]] = row
    for kind, run in window.get("exports", {}).items():
        if "seconds" in run:
            lines.insert(1, f"Export of it to ort fp16 with the {kind} cache: {run['seconds']:.0f} s, "
                            f"peak RSS {run['peak_rss_kb'] / 2**20:.2f} GiB.")
    for context, kinds in by_context.items():
        for kind, r in kinds.items():
            if "error" in r:
                lines.append(f"| {context} | {kind} | failed: {r['error']} | | | | |")
                continue
            full = kinds.get("full", {})
            ratio = f"{full['whole_model_kv_bytes'] / r['whole_model_kv_bytes']:.2f}x" if "whole_model_kv_bytes" in full else "-"
            lines.append(f"| {context} | {kind} | {r['kv_bytes'] / 2**20:.0f} MiB | {r['whole_model_kv_bytes'] / 2**30:.2f} GiB | "
                         f"{ratio} | {1000 * r['step_s']:.0f} ms | {r['peak_rss_kb'] / 2**20:.2f} GiB |")
    return lines + [""]


def chart(results: dict, path: Path) -> None:
    """Decode ms/token and prefill tok/s per backend and context (batch 1), roofline marked; window memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in ("runtime", "window") if p in results]
    width = 2 * ("runtime" in results) + ("window" in results)
    fig, axes = plt.subplots(1, width, figsize=(5.5 * width, 4.2), squeeze=False)
    axes = list(axes[0])
    if "runtime" in panels:
        rows = [r for r in results["runtime"] if r["batch"] == 1]
        _bars(axes.pop(0), rows, "decode_ms_per_token", "decode ms/token (log; dashes: roofline)", log=True, roofline=True)
        _bars(axes.pop(0), rows, "prefill_tokens_per_s", "prefill tokens/s", log=False, roofline=False)
    if "window" in panels:
        _window_bars(axes.pop(0), results["window"])
    fig.suptitle(results.get("checkpoint", {}).get("name", "window cache"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bars(ax, rows: list[dict], key: str, title: str, log: bool, roofline: bool) -> None:
    names = [n for n in rows[0]["backends"]] if rows else []
    step = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        values = [row["backends"].get(name, {}).get(key, 0) for row in rows]
        ax.bar([x + i * step for x in range(len(rows))], values, step, label=name)
    if roofline:
        for x, row in enumerate(rows):
            ax.hlines(row["roofline_ms_per_token"], x - step / 2, x + 0.8 - step / 2, colors="k", linestyles="dashed")
    ax.set_xticks([x + 0.4 - step / 2 for x in range(len(rows))], [f"context {row['context']}" for row in rows])
    ax.set_title(title, fontsize=9)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=7)


def _window_bars(ax, window: dict) -> None:
    rows = [r for r in window["rows"] if "whole_model_kv_bytes" in r]
    contexts = sorted({r["context"] for r in rows})
    for i, kind in enumerate(("full", "window")):
        values = [next((r["whole_model_kv_bytes"] / 2**30 for r in rows if r["context"] == c and r["kv_cache"] == kind), 0)
                  for c in contexts]
        ax.bar([x + i * 0.4 for x in range(len(contexts))], values, 0.4, label=f"{kind} cache")
    ax.set_xticks([x + 0.2 for x in range(len(contexts))], [f"context {c}" for c in contexts])
    ax.set_title("KV cache GiB per sequence, 32B shape (64 layers), fp16", fontsize=9)
    ax.legend(fontsize=7)


if __name__ == "__main__":
    main()
