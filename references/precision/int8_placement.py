"""Where the TensorRT INT8 graph puts its Q/DQ: the export's placement against NVIDIA ModelOpt's, counted
with the static fusibility check (export/int8_fusion.py), parsed and built by the TensorRT builder here.

    python -m references.precision.int8_placement --onnx exports/r50/1/model.onnx --calib-data ../shared/data/kvasir-seg:train \\
        --tag resnet50-random-256 [--modelopt-python /path/to/venv/bin/python] [--extra before=old_int8.onnx]

Per graph: the fusibility counts (convs INT8, residual adds fused, Q/DQ between conv and ReLU,
INT8<->FP16 reformats, share of conv MACs in INT8), the mask agreement with the FP32 graph on held-out
images (ONNX Runtime CPU, network resolution), and whether the installed TensorRT builder (TensorRT-RTX
here, CPU-only ahead of time) parses and builds it. ModelOpt runs in the Python given by
``--modelopt-python`` (it pins onnx / onnxruntime-gpu versions that the project's environment does not
take; docs/export.md), with its own default INT8 placement (``quantize_mode="int8"``, FP16 base, same
calibration images). ``--extra NAME=PATH`` adds any other INT8 graph (e.g. an older export's).

Writes ``<out>/int8_placement_<date>_<machine>_<tag>.{json,md}`` (or ``--name``; refuses to replace them without ``--force``).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


log = logging.getLogger(__name__)

MODELOPT_SCRIPT = """
import sys, numpy as np
from modelopt.onnx.quantization import quantize
quantize(onnx_path=sys.argv[1], quantize_mode="int8", calibration_data=np.load(sys.argv[2]),
         calibration_method="max", calibration_eps=["cpu"], high_precision_dtype="fp16", output_path=sys.argv[3])
"""
"""ModelOpt 0.47's ONNX PTQ with its own TensorRT-oriented placement (modelopt/onnx/quantization/int8.py)."""


def int8_mac_share(path: str | Path) -> float:
    """Share of the graph's conv multiply-accumulates in convs whose input and weight are both dequantized."""
    import onnx
    from onnx import numpy_helper

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.output]}
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def weight_shape(name: str):
        while name not in inits:
            name = producer[name].input[0]
        return numpy_helper.to_array(inits[name]).shape

    total = int8 = 0
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        out = shapes.get(conv.output[0]) or [0, 0, 0, 0]
        macs = int(np.prod(weight_shape(conv.input[1]))) * out[-2] * out[-1]
        total += macs
        dq = [getattr(producer.get(i), "op_type", None) == "DequantizeLinear" for i in conv.input[:2]]
        int8 += macs if all(dq) else 0
    return int8 / total if total else 0.0


def _row(name: str, path: Path, fp32_logits: np.ndarray, images: np.ndarray, size: int, work: Path,
         build: bool, seconds: float | None) -> dict:
    from export import tensorrt as trt_route
    from export.int8_fusion import check_int8_fusion
    from export.precision import _logits, mask_agreement

    fusion = check_int8_fusion(path)
    agreement = mask_agreement(fp32_logits, _logits(path, images))
    row = {"graph": name, "path": str(path), "quantize_seconds": seconds, "mb": path.stat().st_size / 1e6,
           "int8_mac_share": int8_mac_share(path), "fusion": fusion.to_dict(), "summary": fusion.summary(),
           "agreement_mean": float(np.mean(agreement)), "agreement_worst": float(np.min(agreement))}
    if build:
        builder = trt_route.load_builder()
        if builder is None or not builder.can_build():
            row["tensorrt"] = {"parsed_and_built": None, "error": trt_route.unavailable_reason()}
        else:
            try:
                built = trt_route.build_engine(path, work / f"{name}.plan", image_size=size, builder=builder)
                row["tensorrt"] = {"parsed_and_built": True, "builder": builder.label, "seconds": built.seconds,
                                   "mb": built.path.stat().st_size / 1e6,
                                   "convolutions_int8": built.to_dict().get("network", {}).get("convolutions_int8")}
            except trt_route.EngineBuildError as err:
                row["tensorrt"] = {"parsed_and_built": False, "builder": builder.label, "error": str(err)[:500]}
    return row


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# TensorRT INT8 placement: {report['tag'] or report['name']}", "",
             f"- command: `{report['command']}`", f"- date: {m['date']}",
             f"- machine: {m['cpu']} ({m['cores']} cores), load average {m.get('load_average')}",
             f"- FP32 graph: `{report['onnx']}` ({report['image_size']} px); calibration: {report['calibration']}; "
             f"agreement: {report['parity']}", "",
             "Counts from `export.int8_fusion.check_int8_fusion` (TensorRT's documented Q/DQ fusion rules read "
             "from the ONNX graph; not the data-center builder's own report, which needs a GPU).", "",
             "| graph | convs INT8 | conv MACs in INT8 | residual adds fused (+ INT8 eltwise) | Q/DQ conv-ReLU "
             "| reformats (Q / DQ) | INT8 outputs | agreement mean / worst | TensorRT parse + build |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['graph']} | skipped: {r['skipped']} | | | | | | | |")
            continue
        f = r["fusion"]
        trt = r.get("tensorrt") or {}
        built = ("-" if not trt else "yes" if trt.get("parsed_and_built")
                 else f"no: {trt.get('error', '')[:120]}")
        if trt.get("parsed_and_built"):
            built += f" ({trt['builder']}, {trt['mb']:.1f} MB)"
        lines.append(f"| {r['graph']} | {f['convs_int8']}/{f['convs']} | {100 * r['int8_mac_share']:.1f} % | "
                     f"{f['residual_adds_fused']}/{f['residual_adds']} (+{f['residual_adds_int8']}) | "
                     f"{f['qdq_between_conv_and_relu']} | {f['reformats']} ({f['quantize_standalone']} / "
                     f"{f['dequantize_standalone']}) | {f['int8_outputs']} | {r['agreement_mean']:.4f} / "
                     f"{r['agreement_worst']:.4f} | {built} |")
    lines += ["", "Reformats: activation QuantizeLinear / DequantizeLinear nodes that TensorRT cannot fuse into a "
              "neighbouring INT8 kernel (each one an FP16<->INT8 conversion kernel). Agreement: mask Jaccard against "
              "the FP32 graph at network resolution, ONNX Runtime CPU (with random weights the masks say little).", ""]
    if report.get("note"):
        lines += [f"> {report['note']}", ""]
    return "\n".join(lines)


PROG = "python -m references.precision.int8_placement"


def main(argv: list[str] | None = None) -> int:
    from banet.data import kvasir_split
    from bench import options

    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", required=True, type=Path, help="the export's FP32 graph (model.onnx)")
    p.add_argument("--calib-data", required=True, help="INT8 calibration images: a folder or ROOT:SPLIT")
    p.add_argument("--calib-count", type=int, default=16, help="calibration images (default 16)")
    p.add_argument("--calib-method", default="percentile", help="percentile or minmax")
    p.add_argument("--parity-data", default=kvasir_split("test"),
                   help="held-out images: a folder or ROOT:SPLIT (default: the Kvasir-SEG test split)")
    p.add_argument("--parity-count", type=int, default=8, help="how many of them (default 8)")
    p.add_argument("--modelopt-python", default=None, help="a Python with nvidia-modelopt (default: this one, if it has it)")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=PATH", help="another INT8 graph to count")
    p.add_argument("--no-build", action="store_true", help="skip the TensorRT parse + build")
    options.add_output(p, tag=None, name="optional")
    options.add_note(p)
    args = p.parse_args(argv)
    if not (args.tag or args.name):
        p.error("--tag (or --name) is required: it names the graph (e.g. resnet50-random-256)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import importlib.util

    import onnx

    from banet import processing
    from export import parity
    from export.precision import _logits, quantize_int8, select_calibration_images

    files = options.claim(args, prog=PROG, argv=argv, kind="int8_placement")
    if files is None:
        return 2
    model = onnx.load(str(args.onnx), load_external_data=False)
    size = model.graph.input[0].type.tensor_type.shape.dim[-1].dim_value
    calib = select_calibration_images(parity.image_paths(args.calib_data), args.calib_count, source=args.calib_data)
    calib_batch = np.stack([processing.preprocess(processing.load_image(c), size) for c in calib]).astype(np.float32)
    par_spec = args.parity_data
    par_paths = parity.image_paths(par_spec)
    par_paths = [par_paths[i] for i in np.linspace(0, len(par_paths) - 1, args.parity_count).round().astype(int)]
    images = np.stack([processing.preprocess(processing.load_image(c), size) for c in par_paths]).astype(np.float32)
    fp32_logits = _logits(args.onnx, images)
    rows = []
    with tempfile.TemporaryDirectory(prefix="banet-int8-placement-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        ours = quantize_int8(args.onnx, work / "export.onnx", calib, image_size=size, method=args.calib_method)
        rows.append(_row("export (export.precision.quantize_int8)", ours, fp32_logits, images, size, work,
                         not args.no_build, time.perf_counter() - started))
        python = args.modelopt_python or (sys.executable if importlib.util.find_spec("modelopt") else None)
        if python is None:
            rows.append({"graph": "modelopt", "skipped": "no Python with nvidia-modelopt (--modelopt-python)"})
        else:
            np.save(work / "calib.npy", calib_batch)
            started = time.perf_counter()
            try:
                done = subprocess.run([python, "-c", MODELOPT_SCRIPT, str(args.onnx), str(work / "calib.npy"),
                                       str(work / "modelopt.onnx")], capture_output=True, text=True)
            except OSError as err:  # --modelopt-python is not a program: say so in the row, keep the others
                done = subprocess.CompletedProcess([python], 127, "", f"cannot run --modelopt-python {python}: {err}")
            if done.returncode != 0:
                rows.append({"graph": "modelopt", "skipped": f"failed: {done.stderr.strip().splitlines()[-1:]}"})
            else:
                version = subprocess.run([python, "-c", "from importlib.metadata import version;"
                                          "print(version('nvidia-modelopt'))"], capture_output=True, text=True)
                rows.append(_row(f"modelopt {version.stdout.strip()} (quantize_mode=int8, default placement)",
                                 work / "modelopt.onnx", fp32_logits, images, size, work, not args.no_build,
                                 time.perf_counter() - started))
        for extra in args.extra:
            name, _, path = extra.partition("=")
            rows.append(_row(name, Path(path), fp32_logits, images, size, work, not args.no_build, None))
    report = {"tag": args.tag, "name": files.stem, "note": args.note, "onnx": str(args.onnx), "image_size": size,
              "calibration": f"{len(calib)} images of {args.calib_data}, {args.calib_method} (ModelOpt: max)",
              "parity": f"{len(par_paths)} images of {par_spec}", "rows": rows}
    options.finish(files, report, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
