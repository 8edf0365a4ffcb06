"""Write a parity report four ways: report.json, report.md, junit.xml and PNG plots.

The JSON is the full record (schema in docs/parity-report.md); the Markdown is
the table a reviewer reads in a pull request; the JUnit file has one test case
per scenario and backend, so CI systems show failures with their numbers; the
plots show the error per layer (hidden state after the prefill) and per decode
step (logits).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from ..output_dir import check_output_dir, staged_directory
from .harness import scenario_top1
from .heads import head_summary

MARKER = "report.json"


def check_report_dir(directory: Path, force: bool) -> None:
    """Refuse, before any work, a report directory that holds something other than a report."""
    check_output_dir(Path(directory), MARKER, force)


def write_report(report: dict, directory: Path, force: bool = False) -> list[Path]:
    """Write all report files into `directory` (staged, then renamed); returns their paths."""
    with staged_directory(Path(directory), marker=MARKER, force=force) as staging:
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (staging / "report.md").write_text(markdown(report))
        ET.ElementTree(junit(report)).write(staging / "junit.xml", encoding="utf-8", xml_declaration=True)
        if not report.get("head"):  # a head's scenarios are single forwards: no layers or steps to plot
            plot_errors(report, staging)
    return sorted(Path(directory).iterdir())


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if value != 0 else "0"
    return str(value)


def _summary(result: dict) -> dict:
    steps = result["steps"]
    kv_worst = max((max(row[k]["prefill_max_rel"], row[k]["final_max_rel"]) for row in result["kv"] for k in ("key", "value")), default=0.0)
    return {
        "max_rel": max(s["max_rel"] for s in steps),
        "max_abs": max(s["max_abs"] for s in steps),
        "cosine": min(s["cosine"] for s in steps),
        "kl": max(s["kl"] for s in steps),
        "top1": scenario_top1(steps),
        "top5": min(s["top5"] for s in steps),
        "kv_rel": kv_worst,
    }


def head_markdown(report: dict) -> str:
    """The report of a head export: one row per scenario and backend (parity/heads.py)."""
    head = report["head"]
    labels = f", labels {', '.join(head['id2label'].values())}" if head.get("id2label") else ""
    lines = [
        f"# Parity report: {'PASS' if report['passed'] else 'FAIL'}",
        "",
        f"Export `{report['export']['directory']}` ({head['architecture']}, {head['task']}{labels}; "
        f"{report['export']['target']}, {report['export']['dtype']}) against the PyTorch reference on `{report['checkpoint']}`; "
        f"precision class **{report['precision']}**, seed {report['seed']}.",
        "", "| scenario | backend | result | max abs | max rel | min cosine | agreement |", "|---|---|---|---|---|---|---|",
    ]
    for scenario in report["scenarios"]:
        for backend, result in scenario["results"].items():
            s = head_summary(result)
            lines.append(f"| {scenario['name']} | {backend} | {'pass' if result['passed'] else '**FAIL**'} | {_fmt(s['max_abs'])} | "
                         f"{_fmt(s['max_rel'])} | {_fmt(s['cosine'], 8)} | {s['agreement'] or '-'} |")
    lines += ["", "Tolerances (" + report["precision"] + "): " + ", ".join(f"{k} {report['tolerance'][k]:g}"
                                                                        for k in ("logits_rel", "cosine", "top1")), ""]
    lines += [f"- `{backend}` skipped: {why}" for backend, why in report["skipped"].items()]
    failures = [f"- {s['name']} / {b}: {f}" for s in report["scenarios"] for b, r in s["results"].items() for f in r["failures"]]
    if failures:
        lines += ["", "## Failures", "", *failures]
    lines += ["", "Scenarios:", ""] + [f"- `{s['name']}`: {s['description']}" for s in report["scenarios"]]
    return "\n".join(lines) + "\n"


def markdown(report: dict) -> str:
    if report.get("head"):
        return head_markdown(report)
    status = "PASS" if report["passed"] else "FAIL"
    lines = [
        f"# Parity report: {status}",
        "",
        f"Export `{report['export']['directory']}` ({report['export']['target']}, {report['export']['dtype']}) "
        f"against the PyTorch reference on `{report['checkpoint']}`; precision class **{report['precision']}**, seed {report['seed']}.",
    ]
    if report["scenarios"]:  # none when only the perplexity scenario was selected
        lines += ["", "| scenario | backend | result | logits max abs | max rel | min cosine | max KL | top-1 | top-5 | KV max rel | "
                  "greedy match | first divergence |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for scenario in report["scenarios"]:
        for backend, result in scenario["results"].items():
            s = _summary(result)
            greedy = f"{result['greedy_match']}/{result['greedy_tokens']}" if result["greedy_tokens"] else "-"
            divergence = result["first_divergence"]
            where = "-"
            if divergence:
                where = divergence["what"] if divergence["layer"] is None else f"layer {divergence['layer']} ({divergence['what']})"
            lines.append(
                f"| {scenario['name']} | {backend} | {'pass' if result['passed'] else '**FAIL**'} | {_fmt(s['max_abs'])} | "
                f"{_fmt(s['max_rel'])} | {_fmt(s['cosine'], 8)} | {_fmt(s['kl'])} | {_fmt(s['top1'])} | {_fmt(s['top5'])} | "
                f"{_fmt(s['kv_rel'])} | {greedy} | {where} |"
            )
    lines += ["", "Tolerances (" + report["precision"] + "): " + ", ".join(f"{k} {v:g}" for k, v in report["tolerance"].items()), ""]
    for backend, why in report["skipped"].items():
        lines.append(f"- `{backend}` skipped: {why}")
    ppl = report.get("perplexity")
    if ppl:
        lines += ([] if lines[-1] == "" else [""]) + perplexity_markdown(ppl, report["precision"])
    failures = [(s["name"], b, f) for s in report["scenarios"] for b, r in s["results"].items() for f in r["failures"]]
    failures += [("perplexity", b, f) for b, r in (ppl or {}).get("results", {}).items() for f in r["failures"]]
    if failures:
        lines += ["", "## Failures", ""] + [f"- {name} / {backend}: {failure}" for name, backend, failure in failures]
    lines += ["", "Scenarios:", ""] + [f"- `{s['name']}`: {s['description']}" for s in report["scenarios"]]
    lines += ["", "![error per layer](error_per_layer.png) ![error per decode step](error_per_step.png)", ""]
    return "\n".join(lines)


def perplexity_markdown(ppl: dict, precision: str) -> list[str]:
    """The perplexity section: the text, the reference's perplexity, one row per scored backend, skips."""
    lines = ["## Perplexity on real text", ""]
    if ppl["text"]:
        text = ppl["text"]
        lines.append(f"Text: {text['source']} ({text['tokens']} tokens, windows of at most {ppl['window']})"
                     + (f"; reference perplexity **{ppl['reference_perplexity']:.4f}**." if ppl["results"] else "."))
    if ppl["results"]:
        lines += ["", "| backend | result | perplexity | rel diff | top-1 | mean KL | max KL |", "|---|---|---|---|---|---|---|"]
        for backend, r in ppl["results"].items():
            lines.append(f"| {backend} | {'pass' if r['passed'] else '**FAIL**'} | {r['perplexity']:.4f} | {r['rel_diff']:+.3g} | "
                         f"{_fmt(r['top1'], 4)} | {_fmt(r['kl_mean'])} | {_fmt(r['kl_max'])} |")
        bounds = ", ".join(f"{k} {v:g}" for k, v in ppl["tolerance"].items() if v is not None)
        lines += ["", f"Tolerances ({precision}): {bounds}"]
    lines += [""] + [f"- `{backend}` not scored: {why}" for backend, why in ppl["skipped"].items()]
    return lines


def junit(report: dict) -> ET.Element:
    cases = [(s, b, r) for s in report["scenarios"] for b, r in s["results"].items()]
    ppl = report.get("perplexity") or {"results": {}, "skipped": {}}
    cases += [({"name": "perplexity"}, b, r) for b, r in ppl["results"].items()]
    skips = [("all-scenarios", b, why) for b, why in report["skipped"].items()]
    skips += [("perplexity", b, why) for b, why in ppl["skipped"].items()]
    failures = sum(not r["passed"] for _, _, r in cases)
    suites = ET.Element("testsuites", name="exaone4-parity", tests=str(len(cases) + len(skips)), failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name="exaone4-parity", tests=str(len(cases) + len(skips)),
                          failures=str(failures), skipped=str(len(skips)), time=str(report["seconds"]))
    for scenario, backend, result in cases:
        case = ET.SubElement(suite, "testcase", classname=f"parity.{backend}", name=scenario["name"])
        perplexity = "steps" not in result and "outputs" not in result
        if "outputs" in result:  # a head export's scenario
            summary = head_summary(result)
        else:
            summary = {k: v for k, v in result.items() if k not in ("passed", "failures")} if perplexity else _summary(result)
        ET.SubElement(case, "system-out").text = json.dumps(summary)
        if not result["passed"]:
            failure = ET.SubElement(case, "failure", message=result["failures"][0], type="ParityFailure")
            where = [] if perplexity or "outputs" in result else [f"first divergence: {json.dumps(result['first_divergence'])}"]
            failure.text = "\n".join(result["failures"] + where)
    for name, backend, why in skips:
        case = ET.SubElement(suite, "testcase", classname=f"parity.{backend}", name=name)
        ET.SubElement(case, "skipped", message=why)
    return suites


def plot_errors(report: dict, directory: Path) -> None:
    """error_per_layer.png (hidden state after the prefill) and error_per_step.png (logits)."""
    tolerance = report["tolerance"]
    per_layer = {f"{b} / {s['name']}": [(h["layer"], h["max_rel"]) for h in r["hidden"]]
                 for s in report["scenarios"] for b, r in s["results"].items() if r["hidden"]}
    per_step = {f"{b} / {s['name']}": [(st["step"], st["max_rel"]) for st in r["steps"]]
                for s in report["scenarios"] for b, r in s["results"].items() if len(r["steps"]) > 1}
    _plot(per_layer, tolerance["hidden_rel"], "layer", "hidden state max rel error (prefill)", "Error per layer",
          directory / "error_per_layer.png", marker="o")
    _plot(per_step, tolerance["logits_rel"], "step (0 = prefill)", "logits max rel error", "Error per decode step",
          directory / "error_per_step.png", marker=".")


def _plot(series: dict[str, list[tuple[int, float]]], tolerance: float, xlabel: str, ylabel: str, title: str,
          path: Path, marker: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, points in series.items():
        ax.semilogy([x for x, _ in points], [max(y, 1e-12) for _, y in points], marker=marker, label=label)
    ax.axhline(tolerance, color="red", linestyle="--", label="tolerance")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
