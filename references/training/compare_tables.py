"""The results files of ``banet-compare`` (:mod:`references.training.compare`): JSON, Markdown and one plot.

The Markdown's first table is the paper's Table I layout (AC, DI, JA, SE, SP: mean over the test images,
in %), with parameters, GFLOPs, ONNX Runtime latency ratios and FP16/INT8 mask agreement beside it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from banet.metrics import METRIC_NAMES
from bench.results import ResultFiles
from references.training.paper_tables import plot_curves, table_markdown

log = logging.getLogger(__name__)

CAVEAT = ("These are not the paper's numbers and do not rank the networks as the paper does: every network "
          "here is a `{preset}` configuration (a fraction of the published width and depth), trained from "
          "random initialisation (no ImageNet weights can be fetched here) for {epochs} epoch(s) at {size} px "
          "on a shared CPU, once, with one seed. The paper trains the full-size networks from ImageNet weights "
          "for 200 epochs at full resolution. Differences of a few points between rows are within what another "
          "seed or another epoch would change.")


PLOTS = ("comparison", "curves")
"""The plots of a comparison: ``STEM_comparison.png`` (scores, compute, precision ratios) and ``STEM_curves.png``."""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _ratio(spread: dict[str, float] | None) -> str:
    if not spread:
        return "-"
    return f"{spread['median']:.2f} ({spread['min']:.2f}-{spread['max']:.2f})"


def _agreement(art: dict[str, Any] | None) -> str:
    if not art or art.get("mean_agreement") is None:
        return "-"
    return f"{art['mean_agreement']:.4f} / {art['worst_agreement']:.3f}"


def _gated(art: dict[str, Any] | None) -> str:
    """``mean / worst, gate`` (the export gate's verdict on these images), or just the agreement when none was made."""
    if not art or art.get("mean_agreement") is None:
        return "-"
    return f"{_agreement(art)}, {art['gate']}" if art.get("gate") else _agreement(art)


def _tensorrt_int8(art: dict[str, Any] | None) -> str:
    cell = _gated(art)
    return cell if cell == "-" else f"{cell} ({art.get('placement')})"


def markdown(result: dict[str, Any]) -> str:
    s, m, lat = result["settings"], result["machine"], result["latency"]
    entries = result["entries"]
    load = m.get("load_average")
    lines = [
        "# Comparison: the paper's Table I columns on one data set, one recipe",
        "",
        f"- command: `{result.get('command', '')}`",
        f"- machine: {m.get('cpu')}, {m.get('cores')} cores, GPU {m.get('gpu') or 'none'}; torch "
        f"{(m.get('libraries') or {}).get('torch')}, onnxruntime {(m.get('libraries') or {}).get('onnxruntime')}",
        f"- date (UTC): {m.get('date')} to {result.get('date_end')} ({result['wall_seconds'] / 60:.1f} min); "
        f"load average (1/5/15 min) {load} at the start, {result.get('load_average_end')} at the end",
        f"- data `{s['data']}`, split `{s['test_split']}` for the scores; recipe `{s['recipe']}`, preset `{s['preset']}`, "
        f"{s['size']}x{s['size']} px, {s['epochs']} epoch(s)" + (f" (at most {s['max_steps']} steps)" if s.get("max_steps") else "")
        + f", batch {s['batch_size']}, seed {s['seed']}",
        "",
        "**" + CAVEAT.format(preset=s["preset"], epochs=s["epochs"] if not s.get("patience") else
                             f"at most {s['epochs']} (early stopping after {s['patience']} epochs without a gain in "
                             "validation JA)", size=s["size"]).replace("once, with one seed", "with the seeds shown")
        + "**",
        "",
        "## The paper's tables",
        "",
        *table_markdown(entries, size=s["size"], data_name=Path(s["data"]).name),
        "",
        "## Every run: Table I columns scored at each image's original size (mean over test images, %), and "
        "deployment columns",
        "",
        "| network | ablation | seed | " + " | ".join(METRIC_NAMES) + " | params (M) | GFLOPs | FP32 time vs BA-Net | "
        "FP16 / FP32 time | CPU INT8 / FP32 time | FP16 agreement (mean / worst), gate | "
        "CPU INT8 agreement (mean / worst), gate | TensorRT INT8 graph: agreement, gate (placement) |",
        "|---|---|---:|" + "---:|" * len(METRIC_NAMES) + "---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for e in entries:
        r = lat["ratios"].get(e["label"], {})
        lines.append(
            f"| {e['arch']} | {e['ablation']} | {e.get('seed', '-')} | "
            + " | ".join(_pct(e["metrics"].get(k)) for k in METRIC_NAMES)
            + f" | {e['params'] / 1e6:.2f} | {e['gflops']:.2f} | {_ratio(r.get('fp32_vs_reference'))} | "
            f"{_ratio(r.get('fp16_vs_fp32'))} | {_ratio(r.get('int8_vs_fp32'))} | "
            f"{_gated(e['artifacts'].get('fp16'))} | {_gated(e['artifacts'].get('int8'))} | "
            f"{_tensorrt_int8(e.get('tensorrt_int8'))} |")
    parity_images = {a.get("images") for e in entries for a in e["artifacts"].values()} - {None}
    lines += [
        "",
        f"- Scores: `banet.evaluate.evaluate` of each run's `best.pt` (best validation JA), predicted at "
        f"{s['size']} px and scored at each test image's original size ({entries[0]['test_images']} images), "
        "threshold 0.5; the mean over images is the paper's convention.",
        f"- params and GFLOPs: `banet-info`'s counting at {s['size']}x{s['size']} (one multiply-add = 2 FLOPs; "
        "convolutions and matrix products only).",
        f"- Times: ONNX Runtime CPU, batch 1, {lat['images']} test images, {lat['rounds']} rounds per repeat with "
        f"every artifact of every network interleaved in each round, {len(lat['repeats'])} repeats: each ratio is "
        "the median of the per-repeat ratios of p50 latencies, with the range over the repeats in brackets. "
        "A time ratio below 1 is faster. Absolute CPU times on this shared machine mean little.",
        f"- Agreement: `export.parity` (the export gate): Jaccard of each artifact's masks with the FP32 PyTorch "
        f"model's, on {', '.join(str(n) for n in sorted(parity_images)) or '-'} test images; ONNX Runtime's CPU "
        "provider runs FP16 convolutions in FP32, so FP16 agreement checks weight rounding only. CPU INT8 is "
        "`model_int8_cpu.onnx`, the INT8 artifact ONNX Runtime runs (timed); the TensorRT INT8 graph "
        "(`model_int8.onnx`, what TensorRT would run: not timed here) is scored by the same gate on the same "
        "images (ONNX Runtime CPU), with the Q/DQ placement the export chose.",
        "",
        "## Training",
        "",
        "| network | ablation | seed | epochs | steps | train s (all sessions) | val JA per epoch | eval + export s |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for e in entries:
        t = e["training"]
        val = ", ".join(f"{h['JA']:.3f}" for h in t["val_history"] if h.get("JA") is not None)
        lines.append(f"| {e['arch']} | {e['ablation']} | {e.get('seed', '-')} | {t['epochs']} | {t['steps']} | {t['train_seconds']:.0f} | "
                     f"{val} | {e['timings']['eval_s'] + e['timings']['export_s']:.0f} |")
    lines += ["", "- train s: `history.json`'s epoch times summed over every session of a run (resumed runs included); "
              "eval + export s: the scoring and export of `best.pt` in the session that wrote the entry."]
    if lat.get("skipped"):
        lines += ["", "## Latency rows skipped", ""] + [f"- {k}: {v}" for k, v in lat["skipped"].items()]
    if result.get("plots"):
        lines += ["", "## Plot", ""] + [f"![{name}]({Path(p).name})" for name, p in result["plots"].items()]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> Path:
    """Three panels: DI and JA per entry; JA against GFLOPs; FP16 / INT8 time ratios with their range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = result["entries"]
    labels = [e["label"] for e in entries]
    y = np.arange(len(entries))
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 0.35 * len(entries) + 3))
    for offset, metric, color in ((-0.2, "DI", "tab:blue"), (0.2, "JA", "tab:green")):
        ax1.barh(y + offset, [100 * e["metrics"][metric] for e in entries], height=0.4, color=color, label=metric)
    ax1.set_yticks(y, labels)
    ax1.invert_yaxis()
    ax1.set(xlim=(0, 100), xlabel="% (mean over test images)", title="DI and JA")
    ax1.legend(loc="lower right")
    ax1.grid(axis="x", alpha=0.3)
    for e in entries:
        ax2.scatter(e["gflops"], 100 * e["metrics"]["JA"], color="tab:red" if e["arch"] == "banet" else "tab:gray")
        ax2.annotate(e["label"], (e["gflops"], 100 * e["metrics"]["JA"]), fontsize=7, xytext=(3, 3),
                     textcoords="offset points")
    s = result["settings"]
    ax2.set(xlabel=f"GFLOPs at {s['size']} px", ylabel="JA (%)", title="JA against compute")
    ax2.grid(alpha=0.3)
    ratios = result["latency"]["ratios"]
    for offset, key, color, name in ((-0.2, "fp16_vs_fp32", "tab:purple", "FP16 / FP32"),
                                     (0.2, "int8_vs_fp32", "tab:orange", "CPU INT8 / FP32")):
        med, lo, hi, ys = [], [], [], []
        for i, label in enumerate(labels):
            r = ratios.get(label, {}).get(key)
            if r:
                ys.append(i + offset)
                med.append(r["median"])
                lo.append(r["median"] - r["min"])
                hi.append(r["max"] - r["median"])
        ax3.errorbar(med, ys, xerr=[lo, hi], fmt="o", color=color, capsize=3, label=name)
    ax3.axvline(1.0, color="black", linewidth=0.8)
    ax3.set_yticks(y, labels)
    ax3.invert_yaxis()
    ax3.set(xlabel="time ratio, ONNX Runtime CPU, batch 1\n(< 1 is faster)", title="time vs FP32 (range over repeats)")
    ax3.legend(loc="lower right", fontsize=8)
    ax3.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{Path(s['data']).name}, {s['preset']} configurations, {s['size']} px, {s['epochs']} epoch(s) "
                 "from scratch on a CPU: not the paper's setting", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_results(result: dict[str, Any], files: ResultFiles) -> dict[str, Path]:
    """Write the comparison through the one results writer (claimed with :data:`PLOTS` before the runs)."""
    return files.write(result, markdown, {"comparison": lambda path: plot(result, path),
                                          "curves": lambda path: plot_curves(result["entries"], path)})
