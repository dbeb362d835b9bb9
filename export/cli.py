"""``banet-export``: checkpoint -> ONNX (+FP16, +INT8 Q/DQ) -> gated artifacts (+ TensorRT engines).

    banet-export --checkpoint runs/kvasir_tiny_128/best.pt --out exports/banet --fp16 \\
        --int8 --calib-data ../shared/data/kvasir-seg:train [--repository model_repository]

Exit status: 0 done (a failed gate is reported in the table and the manifest); 2 bad input
(missing or foreign checkpoint, existing version without --force, too little calibration data,
--require-engine where no engine can be built); 3 the artifact to promote failed its gate;
4 the TensorRT builder rejected an artifact (its parser's message is printed; every artifact,
the rejected one included, is kept in the export).
"""

from __future__ import annotations

import argparse
import logging
import sys

from banet.checkpoint import CheckpointError
from banet.data.pairs import DatasetError
from banet.processing import REDUCED_DECODE_OVERSAMPLE, ImageDecodeError
from banet.spec import NETWORK_IO, ONNX_OPSET, OPT_BATCH_SIZE
from export import parity
from export import tensorrt as trt_route
from export.onnx import OnnxExportError
from export.pipeline import BACKENDS, PRECISIONS, ExportConfig, ExportError, GateFailed, run_export
from export.precision import CALIBRATION_METHODS, DEFAULT_CALIBRATION_METHOD, CalibrationError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="banet-export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="BA-Net checkpoint (banet-train's best.pt)")
    p.add_argument("--out", required=True, help="export root; each export goes into OUT/<version>")
    p.add_argument("--version", type=int, help="version directory number (default: next free)")
    p.add_argument("--force", action="store_true", help="replace an existing version / repository")
    p.add_argument("--image-size", type=int, help="network input size (default: the checkpoint's training size)")
    p.add_argument("--opset", type=int, default=ONNX_OPSET)
    g = p.add_argument_group("precision")
    g.add_argument("--fp16", action="store_true", help="also write an FP16 graph (I/O stay float32)")
    g.add_argument("--int8", action="store_true", help="also write an INT8 Q/DQ graph (needs --calib-data)")
    g.add_argument("--calib-data", help="calibration images: a folder or ROOT:SPLIT (e.g. ../shared/data/kvasir-seg:train)")
    g.add_argument("--calib-count", type=int, default=256)
    g.add_argument("--calib-method", choices=CALIBRATION_METHODS, default=DEFAULT_CALIBRATION_METHOD)
    g = p.add_argument_group("accuracy gate")
    g.add_argument("--parity-data", help="held-out images: a folder or ROOT:SPLIT (default: Kvasir-SEG test split)")
    g.add_argument("--parity-count", type=int, help="use this many parity images (default: all)")
    for precision in PRECISIONS:
        gate = parity.DEFAULT_GATES[precision]
        g.add_argument(f"--min-agreement-{precision}", type=float, default=gate.min_agreement,
                       help=f"{precision}: lowest mean mask Jaccard vs the FP32 PyTorch masks")
        g.add_argument(f"--min-worst-agreement-{precision}", type=float, default=gate.min_worst_agreement,
                       help=f"{precision}: lowest mask Jaccard vs the FP32 PyTorch mask on any one image")
        g.add_argument(f"--max-ja-loss-{precision}", type=float, default=gate.max_ja_loss,
                       help=f"{precision}: largest JA drop vs ground truth, in points")
    g.add_argument("--batch-size", type=int, default=OPT_BATCH_SIZE)
    g.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    g = p.add_argument_group("engines")
    g.add_argument("--no-engine", dest="engine", action="store_false", help="do not build TensorRT engines")
    g.add_argument("--require-engine", action="store_true", help="fail when no TensorRT engine can be built")
    g.add_argument("--trt-builder", choices=trt_route.BUILDERS,
                   help="tensorrt (data-center, Triton plans; needs a GPU) or tensorrt_rtx (TensorRT for RTX, "
                        "builds without a GPU); default: tensorrt when installed, else tensorrt_rtx")
    g.add_argument("--rtx-targets", type=lambda v: tuple(x.strip().upper() for x in v.split(",") if x.strip()),
                   default=trt_route.RTX_DEFAULT_TARGETS,
                   help="compute capabilities of TensorRT-RTX engines, comma-separated (SM75,SM80,SM86,SM89,SM120,SM121)")
    g.add_argument("--version-compatible", action="store_true",
                   help="TensorRT plans later TensorRT runtimes load (start Triton with "
                        "--backend-config=tensorrt,version-compatible=true)")
    g.add_argument("--torch-tensorrt", action="store_true", help="also compile through Torch-TensorRT (GPU hosts)")
    g.add_argument("--workspace-gib", type=float, default=4.0)
    g = p.add_argument_group("Triton repository")
    g.add_argument("--repository", help="write a Triton model repository from the promoted artifact")
    g.add_argument("--backend", choices=BACKENDS, default="python_onnxruntime")
    g.add_argument("--promote", choices=PRECISIONS, help="precision to promote (default: fp16 if exported, else fp32)")
    g.add_argument("--force-promote", action="store_true", help="promote even if the artifact failed its gate")
    g.add_argument("--network-io", choices=NETWORK_IO, default="uint8",
                   help="uint8 (default): serve the *_serving graph (uint8 in, normalization and sigmoid inside, "
                        "float16 probability out: the hot path); float32: serve the float graph as before")
    g.add_argument("--decode-oversample", type=float, default=REDUCED_DECODE_OVERSAMPLE,
                   help="served JPEGs are decoded at a reduced size that keeps >= this x the network size "
                        "(1 = fastest); the gate scores the served path with it (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(manifest: dict) -> str:
    """The final table: one row per artifact / engine."""
    header = ("artifact", "precision", "MB", "export s", "agree", "worst", "max|dlogit|", "JA", "dJA pts", "gate")
    rows = [header]
    for item in [*manifest["artifacts"], *manifest["engines"]]:
        par = item.get("parity") or {}
        rows.append((item["name"], item["precision"], _fmt(item.get("bytes", 0) / 1e6 if "bytes" in item else None, ".2f"),
                     _fmt(item.get("export_seconds"), ".1f"), _fmt(par.get("mean_agreement")),
                     _fmt(par.get("worst_agreement")), _fmt(par.get("max_abs_logit_diff"), ".2e"),
                     _fmt(par.get("artifact_ja"), ".2f"), _fmt(par.get("ja_loss"), "+.2f"),
                     item.get("gate", "-") if item.get("status", "built") == "built" else item["status"]))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    values = vars(args)
    quiet = values.pop("quiet")
    try:
        config = ExportConfig(**values)
        manifest = run_export(config, show_progress=not quiet)
    except GateFailed as err:
        print(f"banet-export: {err}", file=sys.stderr)
        return 3
    except (CheckpointError, DatasetError, CalibrationError, ImageDecodeError, FileExistsError,
            FileNotFoundError, OnnxExportError, ExportError, ValueError) as err:
        print(f"banet-export: error: {err}", file=sys.stderr)
        return 2
    print(format_table(manifest))
    builder = manifest.get("tensorrt_builder")
    if builder and not builder["for_triton_tensorrt_plan"]:
        built = [e for e in manifest["engines"] if e.get("status") == "built" and not e.get("triton")]
        if built:
            print(f"\nTensorRT-RTX {builder['version']} built {len(built)} engine(s) ahead of time for "
                  f"{', '.join(built[0]['targets'])} (RTX / A100-class GPUs; not loadable by Triton's tensorrt_plan).")
    for item in manifest["artifacts"]:
        if item.get("int8_fusion"):
            from export.int8_fusion import Int8Fusion

            fields = {k: v for k, v in item["int8_fusion"].items() if k != "rules"}
            print(f"\n{item['name']} (placement {item.get('placement')}), TensorRT INT8 fusibility (static check): "
                  f"{Int8Fusion(**fields).summary()}")
    print(f"\nwritten: {manifest['directory']} (manifest.json, export_config.json)")
    print(f"parity: {manifest['parity_data']['images']} images from {manifest['parity_data']['source']}")
    failed = [a["name"] for a in [*manifest["artifacts"], *manifest["engines"]] if a.get("gate") == "fail"]
    if failed:
        print(f"GATE FAILED: {', '.join(failed)} (kept in the export, not promoted)")
    unbuilt = [e for e in manifest["engines"] if e.get("status", "").startswith("not built")]
    if unbuilt:
        print(f"\nNo TensorRT engine was built ({unbuilt[0]['status'][len('not built: '):]}).")
    no_plan = [e for e in manifest["engines"] if "trtexec" in e and not (e.get("triton") and e.get("status") == "built")]
    if no_plan:
        print(f"Triton tensorrt_plan engines: build them with the TensorRT of the Triton container that will "
              f"serve them (docs/serving.md), from {manifest['directory']}:")
        for engine in no_plan:
            print(f"  {engine['trtexec']}")
    rejected = [e for e in manifest["engines"] if e.get("status") == "failed"]
    if "promoted" in manifest:
        print(f"promoted {manifest['promoted']['artifact']} into {manifest['promoted']['repository']} "
              f"({manifest['promoted']['backend']})")
    if rejected:
        for engine in rejected:
            print(f"banet-export: error: {engine['error']}", file=sys.stderr)
        print(f"banet-export: the TensorRT builder rejected {', '.join(e['source'] for e in rejected)}; "
              f"every artifact is kept in {manifest['directory']} (see manifest.json)", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
