"""Which convs the CPU INT8 artifact quantizes, chosen by measurement: candidate node sets side by side.

Each candidate keeps a different set of convs float (the stem and head always; then none, layer1,
layer1-2, ...), is quantized with the CPU recipe (:func:`export.quantize_cpu.quantize_int8_cpu`)
and timed in ONNX Runtime against the FP32 graph, call by call interleaved (rotating order) in one
process, at each batch size. With ``--parity-count`` (a trained checkpoint) each candidate's masks
are also scored against the FP32 PyTorch masks (mean and worst image). The fused-node counts of
ORT's optimized graph say whether the quantized convs really ran in int8::

    python -m references.precision.int8_search --checkpoint runs/random_r50_256.pt --calib-data ../shared/data/kvasir-seg:train

Writes ``<out>/int8_search_<date>_<machine>_<tag>.{json,md}`` (refuses to replace them without ``--force``).
Only the ratios inside one run mean something on shared CPUs.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path


log = logging.getLogger(__name__)

CANDIDATES = {
    "all": (),
    "float-layer1": ("/encoder/layer1/",),
    "float-layer1-2": ("/encoder/layer1/", "/encoder/layer2/"),
    "float-layer1-3": ("/encoder/layer1/", "/encoder/layer2/", "/encoder/layer3/"),
    "float-encoder": ("/encoder/",),
}
"""Candidate node sets by name: the conv-name prefixes kept float (besides the stem and the head)."""


def _time_interleaved(sessions: dict, pool, batch_size: int, rounds: int, warmup: int) -> dict[str, list[float]]:
    names = list(sessions)
    for name in names:
        for i in range(warmup):
            sessions[name](pool.batch(batch_size, i).tensor)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            x = pool.batch(batch_size, r + 1).tensor
            started = time.perf_counter()
            sessions[name](x)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# CPU INT8 node selection: {report['model']}", "",
             f"- command: `{report['command']}`", f"- date (UTC): {m['date']}",
             f"- machine: {m['cpu']}, {m['cores']} cores, int8 ISA flags: {', '.join(m.get('cpu_flags') or []) or 'none'}; "
             f"load average at start {m.get('load_average')}",
             f"- onnxruntime {m['libraries'].get('onnxruntime')}, default intra-op threads; "
             f"{report['rounds']} interleaved rounds per batch size (one call of every graph per round, rotating order)",
             f"- calibration: {report['calibration']}", "",
             "Ratio: FP32 median / candidate median in the same run (higher is faster); spread: the per-round "
             "ratios' min-max. int8/float convs: QLinearConv vs Conv/FusedConv nodes in ORT's optimized graph.", ""]
    header = "| candidate | float besides stem/head | int8 convs | float convs | " + " | ".join(
        f"b{b} median ms | b{b} x FP32 [min-max]" for b in report["batch_sizes"]) + " | mean / worst agreement |"
    lines += [header, "|" + "---|" * (4 + 2 * len(report["batch_sizes"]) + 1)]
    for c in report["candidates"]:
        cells = [c["name"], ", ".join(c["float_prefixes"]) or "-", str(c.get("int8_convs", "-")),
                 str(c.get("float_convs", "-"))]
        for b in report["batch_sizes"]:
            t = c["timing"][str(b)]
            cells += [f"{t['median_ms']:.1f}",
                      "1.00x" if c["name"] == "fp32" else f"{t['ratio']:.2f}x [{t['ratio_min']:.2f}-{t['ratio_max']:.2f}]"]
        par = c.get("parity")
        cells.append(f"{par['mean_agreement']:.4f} / {par['worst_agreement']:.4f}" if par else "-")
        lines.append("| " + " | ".join(cells) + " |")
    if report.get("note"):
        lines += ["", report["note"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench import options
    from bench.results import command_line

    p = argparse.ArgumentParser(prog="python -m references.precision.int8_search", description=__doc__.split("\n\n")[0])
    options.add_checkpoint(p, required=True, help="BA-Net checkpoint (banet-train, or banet-info --random-checkpoint)")
    p.add_argument("--calib-data", required=True, help="calibration images: folder or ROOT:SPLIT")
    p.add_argument("--calib-count", type=int, default=8)
    p.add_argument("--calib-method", choices=("minmax", "percentile"), default="minmax",
                   help="minmax by default: the ranges do not change the speed, and it calibrates faster")
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    p.add_argument("--image-size", type=int, help="default: the checkpoint's training size")
    p.add_argument("--batch-sizes", type=lambda v: tuple(int(x) for x in v.split(",")), default=(1, 8))
    p.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds per batch size")
    p.add_argument("--warmup", type=int, default=1)
    options.add_data(p, help="images the timed batches come from: a folder or ROOT:SPLIT (default: Kvasir-SEG test)")
    p.add_argument("--parity-count", type=int, default=0, help="score each candidate on this many test images (0: no)")
    options.add_output(p, tag="search")
    p.add_argument("--note", help="a line of context written into the Markdown")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.calib_count < 1:
        p.error("--rounds and --calib-count must be >= 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from tqdm.auto import tqdm

    from banet.checkpoint import model_from_checkpoint
    from banet.inference import torch_runner
    from banet.spec import IMAGE_SIZE
    from bench.inputs import load_pool
    from export import parity
    from export.onnx import export_onnx, simplify_onnx
    from export.onnxruntime import ort_runner
    from export.precision import select_calibration_images
    from export.quantize_cpu import fused_node_counts, quantize_int8_cpu

    files = options.result_files(args, kind="int8_search", parser=p,
                                 command=command_line("python -m references.precision.int8_search", argv))
    machine = files.machine
    model, payload = model_from_checkpoint(args.checkpoint)
    size = args.image_size or int((payload.get("train_config") or {}).get("size") or IMAGE_SIZE)
    calib = select_calibration_images(parity.image_paths(args.calib_data), args.calib_count, source=args.calib_data)
    data = args.data
    root, _, split = data.rpartition(":")
    pool = load_pool(root, split=split, limit=16, size=size)
    random_weights = bool((payload.get("train_config") or {}).get("random_weights"))
    report = {"machine": machine, "model": f"{args.checkpoint} ({payload['model_config']['backbone']}, {size} px"
              f"{', random weights' if random_weights else ''})",
              "calibration": f"{args.calib_method} on {len(calib)} images of {args.calib_data}",
              "batch_sizes": list(args.batch_sizes), "rounds": args.rounds, "note": args.note, "candidates": []}
    with tempfile.TemporaryDirectory(prefix="banet-int8-search-") as tmp:
        fp32 = Path(tmp) / "model.onnx"
        export_onnx(model, Path(tmp) / "raw.onnx", image_size=size)
        simplify_onnx(Path(tmp) / "raw.onnx", fp32)
        graphs = {"fp32": (fp32, ())}
        for name in tqdm(args.candidates, desc="quantize candidates", unit="graph"):
            path = Path(tmp) / f"{name}.onnx"
            quantize_int8_cpu(fp32, path, calib, image_size=size, method=args.calib_method,
                              float_prefixes=CANDIDATES[name])
            graphs[name] = (path, CANDIDATES[name])
        entries = {}
        for name, (path, prefixes) in graphs.items():
            counts = fused_node_counts(path)
            entries[name] = {"name": name, "float_prefixes": list(prefixes), "int8_convs": counts["int8_convs"],
                             "float_convs": counts["float_convs"], "timing": {}}
        sessions = {name: ort_runner(path) for name, (path, _) in graphs.items()}
        for batch in tqdm(args.batch_sizes, desc="time (interleaved)", unit="batch size"):
            seconds = _time_interleaved(sessions, pool, batch, args.rounds, args.warmup)
            base = seconds["fp32"]
            for name, values in seconds.items():
                per_round = [b / v for b, v in zip(base, values)]
                entries[name]["timing"][str(batch)] = {
                    "median_ms": statistics.median(values) * 1e3,
                    "ratio": statistics.median(base) / statistics.median(values),
                    "ratio_min": min(per_round), "ratio_max": max(per_round),
                    "samples_ms": [round(v * 1e3, 3) for v in values]}
        if args.parity_count:
            par_data = parity.load_parity_set(data, count=args.parity_count)
            ref = parity.reference(torch_runner(model), par_data, image_size=size)
            for name in tqdm(list(graphs), desc="parity", unit="graph"):
                result = parity.score(sessions[name], par_data, ref, artifact=name, precision="int8",
                                      image_size=size, gate=parity.DEFAULT_GATES["int8"])
                entries[name]["parity"] = {k: result.to_dict()[k] for k in ("mean_agreement", "worst_agreement",
                                                                            "worst_image", "passed")}
    report["candidates"] = list(entries.values())
    options.finish(files, report, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
