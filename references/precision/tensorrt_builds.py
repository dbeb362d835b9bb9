"""TensorRT numbers into ``bench/results/``: what the TensorRT builder makes of every artifact, and
INT8 vs FP16 vs FP32 mask parity.

    python -m references.precision.tensorrt_builds --checkpoint runs/kvasir_tiny_128/best.pt \\
        --calib-data ../shared/data/kvasir-seg:train --name trt_kvasir_tiny_128 [--modelopt] [--torch-fp16]

One ``run_export`` (FP32, FP16, INT8 for TensorRT; the engines built by the installed builder, on
these machines TensorRT-RTX ahead of time), then per artifact: the builder's parse result, build
time, engine size and the layer census of the parsed network (layers by type and compute dtype,
INT8 convolutions); the built engine's layers by output precision, from TensorRT-RTX's own build log
(every build sets ``ProfilingVerbosity.DETAILED``; export/tensorrt.py) and from the engine inspector's
JSON where a GPU can deserialize the engine (TensorRT 10 and 11 forms, ``tensorrt.layer_precisions``). Parity (mean and worst image mask agreement against the FP32 PyTorch masks) comes from the
export's own gate.

``--modelopt`` adds NVIDIA ModelOpt's INT8 (same convs, same calibration images, FP16 base) where
``modelopt`` is importable, scored and built the same way, to compare the two quantizers.
``--torch-fp16`` adds PyTorch's CPU half-precision forward pass of the same weights, a check of FP16
arithmetic that ONNX Runtime's CPU provider does not make (it runs FP16 convs in FP32).

Writes ``<results>/<name>.json`` and ``.md`` with the command line, the machine, the load average
and the date.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from export import parity
from export import tensorrt as trt_route
from export.pipeline import ExportConfig, run_export
from references.precision.precision_parity import header


def fp32_compute_nodes(path: str | Path) -> dict[str, int]:
    """Compute nodes of an ONNX graph by output dtype (Q/DQ, Cast and shape arithmetic left out).

    A graph that is "FP16 outside Q/DQ" has no FLOAT entry.
    """
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.output]}
    skip = {"QuantizeLinear", "DequantizeLinear", "Cast", "Shape", "Slice", "Concat", "Gather", "Unsqueeze",
            "Constant", "Expand", "Reshape"}
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in skip or node.output[0] not in types:
            continue
        name = onnx.TensorProto.DataType.Name(types[node.output[0]])
        counts[name] = counts.get(name, 0) + 1
    return counts


def _build_row(onnx_path: Path, work: Path, size: int, builder: trt_route.Builder | None) -> dict[str, Any]:
    """Parse and build ``onnx_path`` with ``builder``; the row says what happened."""
    if builder is None:
        return {"parsed_and_built": None, "error": trt_route.unavailable_reason()}
    try:
        built = trt_route.build_engine(onnx_path, work / (onnx_path.stem + ".plan"), image_size=size, builder=builder)
    except trt_route.EngineBuildError as err:
        return {"parsed_and_built": False, "error": str(err)}
    row = {"parsed_and_built": True, **built.to_dict()}
    row["engine_inspector"] = _inspect(built.path, builder, built.targets, built.builder["version_compatible"])
    return row


def _inspect(path: Path, builder: trt_route.Builder, targets: list[str],
             version_compatible: bool = False) -> dict[str, Any] | str:
    runnable, why = trt_route.engine_runnable(builder, targets=targets, version_compatible=version_compatible)
    if not runnable:
        return f"not run: the engine inspector deserializes the engine, which this machine cannot ({why})"
    try:
        return trt_route.inspect_engine(path, builder)
    except trt_route.EngineBuildError as err:
        return f"failed: {err}"


def modelopt_int8(manifest: dict, config: ExportConfig, work: Path) -> dict[str, Any]:
    """ModelOpt INT8 of the export's FP32 graph on the same convs and calibration images (FP16 base)."""
    if importlib.util.find_spec("modelopt") is None:
        return {"skipped": "modelopt is not installed (pip install --no-deps nvidia-modelopt==0.47.0 plus its ONNX "
                           "dependencies; see docs/export.md)"}
    import onnx
    from importlib import metadata

    from banet import processing
    from export.precision import select_calibration_images

    folder, size = Path(manifest["directory"]), manifest["image_size"]
    int8 = next(a for a in manifest["artifacts"] if a["name"] == "onnx_int8")
    meta = {p.key: p.value for p in onnx.load(str(folder / int8["path"])).metadata_props}
    convs = meta["banet.int8_nodes"].split(",")
    calib = select_calibration_images(parity.image_paths(str(config.calib_data)), config.calib_count,
                                      source=str(config.calib_data))
    data = np.stack([processing.preprocess(processing.load_image(p), size) for p in calib]).astype(np.float32)
    out = work / "model_int8_modelopt.onnx"
    started = time.perf_counter()
    from modelopt.onnx.quantization import quantize

    quantize(onnx_path=str(folder / "model.onnx"), quantize_mode="int8", calibration_data=data,
             calibration_method="max", calibration_eps=["cpu"], high_precision_dtype="fp16",
             op_types_to_quantize=["Conv"], nodes_to_quantize=[f"^{n}$" for n in convs], output_path=str(out))
    seconds = time.perf_counter() - started
    files = metadata.files("nvidia-modelopt") or []
    return {"path": out, "quantize_seconds": seconds, "version": metadata.version("nvidia-modelopt"),
            "package_mb": sum(f.locate().stat().st_size for f in files if f.locate().is_file()) / 1e6,
            "calibration": {"images": len(calib), "method": "max"}, "convs": len(convs)}


def torch_fp16_runner(model):
    """PyTorch CPU forward pass in float16 (a deep copy of ``model``), float32 in and out."""
    import copy

    import torch

    half = copy.deepcopy(model).eval().half()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return half(torch.from_numpy(np.ascontiguousarray(batch)).half()).float().numpy()

    return run


def _score(run, data, ref, name: str, precision: str, size: int, config: ExportConfig) -> dict[str, Any]:
    started = time.perf_counter()
    result = parity.score(run, data, ref, artifact=name, precision=precision, image_size=size,
                          gate=config.gate(precision), batch_size=config.batch_size)
    return {**result.to_dict(), "score_seconds": time.perf_counter() - started}


def collect(config: ExportConfig, work: Path, *, modelopt: bool, torch_fp16: bool) -> dict[str, Any]:
    manifest = run_export(config, show_progress=True)
    folder, size = Path(manifest["directory"]), manifest["image_size"]
    builder = trt_route.load_builder(config.trt_builder)
    engines = {e["source"]: e for e in manifest["engines"] if "source" in e}
    rows = []
    for art in manifest["artifacts"]:
        engine = engines.get(art["path"], {})
        rows.append({"artifact": art["name"], "precision": art["precision"], "quantizer": art.get("quantizer"),
                     "onnx_mb": art["bytes"] / 1e6, "export_seconds": art["export_seconds"],
                     "onnx_compute_dtypes": fp32_compute_nodes(folder / art["path"]),
                     "parity": art.get("parity"), "gate": art.get("gate"),
                     "engine": {k: v for k, v in engine.items() if k not in ("trtexec", "profile")},
                     "engine_inspector": (_inspect(folder / engine["path"], builder, engine.get("targets", []),
                                                   bool(engine.get("version_compatible")))
                                          if engine.get("status") == "built" and builder else None)})
    extra = []
    if modelopt or torch_fp16:
        from banet.checkpoint import model_from_checkpoint
        from banet.inference import torch_runner
        from export.onnxruntime import ort_runner

        model, _ = model_from_checkpoint(config.checkpoint)
        data = parity.load_parity_set(manifest["parity_data"]["source"], count=config.parity_count)
        ref = parity.reference(torch_runner(model), data, image_size=size, batch_size=config.batch_size)
        if modelopt:
            made = modelopt_int8(manifest, config, work)
            if "skipped" in made:
                extra.append({"artifact": "onnx_int8_modelopt", "precision": "int8", **made})
            else:
                path = made.pop("path")
                extra.append({"artifact": "onnx_int8_modelopt", "precision": "int8", "quantizer": "modelopt", **made,
                              "onnx_mb": path.stat().st_size / 1e6, "onnx_compute_dtypes": fp32_compute_nodes(path),
                              "parity": _score(ort_runner(path, threads=config.threads), data, ref,
                                               "onnx_int8_modelopt", "int8", size, config),
                              "engine": _build_row(path, work, size, builder)})
        if torch_fp16:
            extra.append({"artifact": "torch_fp16_cpu", "precision": "fp16",
                          "quantizer": "PyTorch CPU float16 forward pass (FP16 arithmetic check, not an artifact)",
                          "parity": _score(torch_fp16_runner(model), data, ref, "torch_fp16_cpu", "fp16", size, config)})
    return {"manifest": manifest, "rows": rows, "extra": extra}


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _engine_cells(engine: dict) -> list[str]:
    if not engine:
        return ["-"] * 6
    if engine.get("status", "built") != "built" and not engine.get("parsed_and_built"):
        return [f"**no**: {engine.get('error') or engine.get('status')}", "-", "-", "-", "-", "-"]
    net = engine.get("network", {})
    convs = net.get("convolution_dtypes", {})
    built = engine.get("layers") or {}
    return ["yes", _fmt(engine.get("build_seconds"), ".1f"), _fmt(engine.get("bytes", 0) / 1e6, ".2f"),
            str(net.get("layers", "-")),
            ", ".join(f"{k} {v}" for k, v in convs.items()) + f"; INT8 (Q/DQ in) {net.get('convolutions_int8', 0)}",
            (f"{built.get('layers')}: " + ", ".join(f"{k} {v}" for k, v in built.get("by_output_precision", {}).items()))
            if built else "-"]


def to_markdown(report: dict) -> str:
    m = report["manifest"]
    b = m.get("tensorrt_builder") or {}
    targets = next((r["engine"].get("targets", []) for r in report["rows"] if r["engine"].get("targets")), [])
    lines = header(report, f"TensorRT: {report['name']}", against=", against the FP32 PyTorch masks", extra=[
        f"- builder: {b.get('builder', 'none')} {b.get('version', '')} (`{b.get('module', '-')}`); "
        f"engines for {', '.join(targets) or '-'}; "
        f"GPU: {'none (CPU-only ahead-of-time build; engines not run)' if not report['gpu'] else report['gpu']['name']}"])
    lines += ["## What the TensorRT builder makes of each artifact", "",
              "| artifact | ONNX MB | parsed and built | build s | engine MB | network layers | convolutions by compute dtype | engine layers by output precision |",
              "|---|---|---|---|---|---|---|---|"]
    for r in [*report["rows"], *[x for x in report["extra"] if "engine" in x]]:
        lines.append(f"| {r['artifact']} | {_fmt(r.get('onnx_mb'), '.2f')} | " + " | ".join(_engine_cells(r["engine"])) + " |")
    lines += ["", "Network layer counts are of the parsed, strongly typed network that the builder compiles "
              "(TensorRT's `INetworkDefinition`); the engine's layers (after fusion) by output precision come from "
              "the builder's DETAILED layer log (TensorRT-RTX). TensorRT's engine inspector, which deserializes "
              "the engine and so needs a GPU: "
              + str(next((r["engine_inspector"] for r in report["rows"] if r.get("engine_inspector")), "-")) + ".", ""]
    lines += ["## Mask parity against FP32 PyTorch", "",
              "| artifact | quantizer | agreement mean / worst | worst image | JA change (pts) | compute nodes by dtype (outside Q/DQ, Cast) | gate |",
              "|---|---|---|---|---|---|---|"]
    for r in [*report["rows"], *report["extra"]]:
        p = r.get("parity") or {}
        if r.get("skipped"):
            lines.append(f"| {r['artifact']} | - | skipped: {r['skipped']} | | | | |")
            continue
        change = "-" if p.get("ja_loss") is None else f"{-p['ja_loss']:+.2f}"
        dtypes = ", ".join(f"{k} {v}" for k, v in (r.get("onnx_compute_dtypes") or {}).items()) or "-"
        gate = r.get("gate") or ("pass" if p.get("passed") else "fail")
        quantizer = (r.get("quantizer") or "-").split(" (")[0]
        lines.append(f"| {r['artifact']} | {quantizer} | {_fmt(p.get('mean_agreement'), '.4f')} / "
                     f"{_fmt(p.get('worst_agreement'), '.4f')} | {p.get('worst_image', '-')} | {change} | {dtypes} | {gate} |")
    for r in report["extra"]:
        if r.get("quantize_seconds") is not None:
            lines += ["", f"ModelOpt {r['version']}: quantized in {r['quantize_seconds']:.1f} s "
                      f"({r['calibration']['method']} calibration on {r['calibration']['images']} images, {r['convs']} convs); "
                      f"the nvidia-modelopt package itself is {r['package_mb']:.0f} MB installed."]
    ort = next((r for r in report["rows"] if r["precision"] == "int8"), None)
    if ort:
        lines += [f"ONNX Runtime quantizer (the export's INT8): {ort['export_seconds']:.1f} s for quantization and "
                  "FP16 conversion, calibration included."]
    lines += ["", "Gates: " + "; ".join(f"{k} mean >= {v['min_agreement']}, worst >= {v['min_worst_agreement']}, "
                                        f"JA loss <= {v['max_ja_loss']}" for k, v in report["gates"].items()), ""]
    return "\n".join(lines)


PROG = "python -m references.precision.tensorrt_builds"


def main(argv: list[str] | None = None) -> int:
    from bench import options

    p = options.export_report_parser(PROG, __doc__, calib_method=False)
    p.add_argument("--trt-builder", choices=trt_route.BUILDERS)
    p.add_argument("--modelopt", action="store_true", help="also quantize with NVIDIA ModelOpt (if installed)")
    p.add_argument("--torch-fp16", action="store_true", help="also score PyTorch's CPU float16 forward pass")
    args = p.parse_args(argv)
    files = options.claim(args, prog=PROG, argv=argv)
    if files is None:
        return 2
    with tempfile.TemporaryDirectory(prefix="banet-trt-report-") as tmp:
        config = ExportConfig(checkpoint=args.checkpoint, out=str(Path(tmp) / "export"), image_size=args.image_size,
                              fp16=True, int8=True, calib_data=args.calib_data, calib_count=args.calib_count,
                              parity_data=args.parity_data, parity_count=args.parity_count, threads=args.threads,
                              trt_builder=args.trt_builder)
        collected = collect(config, Path(tmp), modelopt=args.modelopt, torch_fp16=args.torch_fp16)
    report = {"name": args.name, "date": files.machine["date"], "gpu": trt_route.gpu(),
              "note": args.note, "gates": {k: vars(config.gate(k)) for k in ("fp32", "fp16", "int8")}, **collected}
    options.finish(files, report, to_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
