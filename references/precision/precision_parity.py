"""Export numbers into ``bench/results/``: export time, file size and parity per artifact, and ONNX
Runtime CPU latency of FP32 vs FP16 vs INT8 as ratios measured side by side in one run.

    python -m references.precision.precision_parity --checkpoint runs/kvasir_tiny_128/best.pt \\
        --calib-data ../shared/data/kvasir-seg:train --name export_kvasir_tiny_128

Writes ``<results>/<name>.json`` and ``<name>.md`` with the command line, the machine and the date.
Latency rounds interleave the artifacts (FP32, FP16, INT8, FP32, ...) so that load from other
processes falls on all of them alike; absolute CPU times are for the ratios only.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from export.pipeline import ExportConfig, run_export, runtime_artifact


def ort_latency(paths: dict[str, Path], *, image_size: int, batches=(1, 8), rounds: int = 10, warmup: int = 2,
                threads: int | None = None) -> dict:
    """Median ms per call for each artifact and batch, interleaved; ratios against ``fp32``."""
    from export.onnxruntime import ort_runner

    runners = {name: ort_runner(path, threads=threads) for name, path in paths.items()}
    rng = np.random.default_rng(0)
    out: dict = {}
    for batch in batches:
        x = rng.normal(size=(batch, 3, image_size, image_size)).astype(np.float32)
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(warmup):
            for run in runners.values():
                run(x)
        for _ in range(rounds):
            for name, run in runners.items():
                started = time.perf_counter()
                run(x)
                times[name].append(1e3 * (time.perf_counter() - started))
        median = {name: float(np.median(t)) for name, t in times.items()}
        out[f"batch_{batch}"] = {
            name: {"median_ms": median[name], "p90_ms": float(np.percentile(times[name], 90)),
                   "ratio_vs_fp32": median[name] / median["fp32"]} for name in runners}
    return out


def calibration_sweep(manifest: dict, config: ExportConfig, methods: list[str]) -> list[dict]:
    """Re-quantize the FP32 graph with each calibration method and score it with the same gate."""
    from banet.checkpoint import model_from_checkpoint
    from banet.inference import torch_runner
    from export import parity
    from export.onnxruntime import ort_runner
    from export.precision import quantize_int8, select_calibration_images

    folder, size = Path(manifest["directory"]), manifest["image_size"]
    model, _ = model_from_checkpoint(config.checkpoint)
    data = parity.load_parity_set(manifest["parity_data"]["source"], count=config.parity_count)
    ref = parity.reference(torch_runner(model), data, image_size=size)
    calib = select_calibration_images(parity.image_paths(str(config.calib_data)), config.calib_count,
                                      source=str(config.calib_data))
    rows = []
    for method in methods:
        started = time.perf_counter()
        path = quantize_int8(folder / "model.onnx", folder / f"sweep_int8_{method}.onnx", calib,
                             image_size=size, method=method)
        seconds = time.perf_counter() - started
        result = parity.score(ort_runner(path, threads=config.threads), data, ref, artifact=path.name,
                              precision="int8", image_size=size, gate=config.gate("int8"))
        rows.append({"method": method, "calibration_seconds": seconds, **result.to_dict()})
    return rows


def header(report: dict, title: str, *, extra: Sequence[str] = (), against: str = "") -> list[str]:
    """The opening of an export report: title, command, date, machine, ``extra`` lines, the checkpoint, the
    size and the parity images (``against``: what they are scored against), the note."""
    from bench.results import header_lines

    m = report["manifest"]
    lines = [f"# {title}", "", *header_lines(report), *extra,
             f"- checkpoint: `{m['checkpoint']['path']}` (sha256 {m['checkpoint']['sha256'][:12]}...)",
             f"- input size: {m['image_size']} px; parity on {m['parity_data']['images']} images of "
             f"`{m['parity_data']['source']}`{against}", ""]
    return lines + ([f"> {report['note']}", ""] if report.get("note") else [])


def to_markdown(report: dict) -> str:
    m = report["manifest"]
    lines = header(report, f"Export: {report['name']}")
    lines += ["## Artifacts and accuracy gate", "",
              "| artifact | MB | export s | agreement (mean / worst) | max abs logit diff | JA (pts) | JA change (pts) | gate |",
              "|---|---|---|---|---|---|---|---|"]
    for a in [*m["artifacts"], *m["engines"]]:
        p = a.get("parity") or {}
        if "bytes" not in a:
            lines.append(f"| {a['name']} | - | - | - | - | - | - | {a.get('status', '-')} |")
            continue
        change = "-" if p.get("ja_loss") is None else f"{-p['ja_loss']:+.2f}"
        ja = "-" if p.get("artifact_ja") is None else f"{p['artifact_ja']:.2f}"
        lines.append(f"| {a['name']} | {a['bytes'] / 1e6:.2f} | {a.get('export_seconds', 0):.1f} | "
                     f"{p.get('mean_agreement', float('nan')):.4f} / {p.get('worst_agreement', float('nan')):.4f} | "
                     f"{p.get('max_abs_logit_diff', float('nan')):.2e} | {ja} | {change} | {a.get('gate')} |")
    ref = next((a["parity"]["reference_ja"] for a in m["artifacts"] if a.get("parity")), None)
    if ref is not None:
        lines += ["", f"FP32 PyTorch reference JA: {ref:.2f} points."]
    if report.get("calibration_sweep"):
        lines += ["", "## INT8 calibration methods (same images, same gate)", "",
                  "| method | calibration s | agreement (mean / worst) | worst image | JA change (pts) | gate |",
                  "|---|---|---|---|---|---|"]
        for r in report["calibration_sweep"]:
            change = "-" if r["ja_loss"] is None else f"{-r['ja_loss']:+.2f}"
            lines.append(f"| {r['method']} | {r['calibration_seconds']:.1f} | {r['mean_agreement']:.4f} / "
                         f"{r['worst_agreement']:.4f} | {r['worst_image']} | {change} | "
                         f"{'pass' if r['passed'] else 'fail'} |")
    lines += ["", "## ONNX Runtime CPU latency (ratios against FP32, same run, interleaved)", "",
              "| batch | artifact | median ms | p90 ms | ratio vs FP32 |", "|---|---|---|---|---|"]
    for batch, rows in report["latency"].items():
        for name, row in rows.items():
            lines.append(f"| {batch.split('_')[1]} | {name} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | "
                         f"{row['ratio_vs_fp32']:.2f} |")
    lines += ["", f"Latency: {report['latency_rounds']} interleaved rounds after 2 warm-up calls, random input; "
              "CPU absolute times mean little on this shared machine, the ratios are the result.", ""]
    return "\n".join(lines)


PROG = "python -m references.precision.precision_parity"


def main(argv: list[str] | None = None) -> int:
    from bench import options

    p = options.export_report_parser(PROG, __doc__)
    p.add_argument("--work", help="export directory to keep (default: a temporary one)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--calib-sweep", help="comma-separated calibration methods to compare for INT8 (e.g. minmax,percentile)")
    args = p.parse_args(argv)
    files = options.claim(args, prog=PROG, argv=argv)
    if files is None:
        return 2
    with tempfile.TemporaryDirectory(prefix="banet-export-report-") as tmp:
        config = ExportConfig(checkpoint=args.checkpoint, out=args.work or tmp, image_size=args.image_size,
                              fp16=True, int8=True, calib_data=args.calib_data, calib_count=args.calib_count,
                              calib_method=args.calib_method, parity_data=args.parity_data,
                              parity_count=args.parity_count, threads=args.threads)
        manifest = run_export(config, show_progress=True)
        folder = Path(manifest["directory"])
        # the float32-I/O graphs that ONNX Runtime serves (INT8: the CPU recipe, export/quantize_cpu.py); the
        # serving variants (uint8 in) are timed through the served path (references.serving.hotpath)
        found = {p: runtime_artifact(manifest["artifacts"], p, "onnxruntime-cpu") for p in ("fp32", "fp16", "int8")}
        paths = {precision: folder / art["path"] for precision, art in found.items() if art is not None}
        latency = ort_latency(paths, image_size=manifest["image_size"], rounds=args.rounds, threads=args.threads)
        sweep = calibration_sweep(manifest, config, args.calib_sweep.split(",")) if args.calib_sweep else None
    report = {"name": args.name, "date": files.machine["date"],
              "note": args.note, "manifest": manifest, "latency": latency, "latency_rounds": args.rounds,
              "calibration_sweep": sweep}
    options.finish(files, report, to_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
