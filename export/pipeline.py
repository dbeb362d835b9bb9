"""The whole export as one function: checkpoint -> gated artifacts + manifest (+ Triton repository).

``run_export(ExportConfig(...))`` writes into a new version directory ``OUT/<n>``:

- ``model.onnx`` (FP32, simplified), ``model_fp16.onnx`` (``--fp16``), ``model_int8.onnx`` (``--int8``:
  INT8 for TensorRT) and ``model_int8_cpu.onnx`` (``--int8``: INT8 for ONNX Runtime's CPU kernels,
  export/quantize_cpu.py; the repository serves it on the ONNX Runtime backends);
- ``model*_serving.onnx``: each of them with uint8 I/O and the normalization/sigmoid inside
  (export/serving_graph.py), gated over the whole served path; the repository serves these by default;
- ``model_<precision>.plan`` TensorRT engines where ``tensorrt`` and a GPU are present, or
  ``model_<precision>_rtx.plan`` TensorRT-RTX engines (built ahead of time, also without a GPU; for
  RTX/A100-class GPUs, not for Triton); the exact ``trtexec`` commands that build the Triton plans
  are recorded either way; Torch-TensorRT engines on request;
- ``manifest.json`` (per artifact: path, precision, sha256, I/O names and shapes, export time, parity
  numbers and gate verdict; the source checkpoint's sha256; tool versions) and ``export_config.json``
  (the resolved :class:`ExportConfig`).

The version directory is assembled under a hidden staging name and renamed into place at the end,
so a failed export leaves no half-written version; if the export stops on an error, what it had
written is kept in ``OUT/<n>.incomplete`` (never deleted). An ONNX artifact that the TensorRT
builder cannot parse or build fails its check (the builder's message is in the manifest) and is
not promoted; every other artifact is kept. Nothing existing is replaced unless ``force``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from banet.checkpoint import file_sha256, model_from_checkpoint
from banet.processing import REDUCED_DECODE_OVERSAMPLE
from banet.inference import torch_runner
from banet.spec import (IMAGE_SIZE, MAX_BATCH_SIZE, NETWORK_INPUT, NETWORK_IO, NETWORK_OUTPUT, ONNX_OPSET,
                        OPT_BATCH_SIZE, network_tensors)
from export import parity, serving_graph
from banet.data import kvasir_split
from export import tensorrt as trt_route
from export import torch_tensorrt as torch_trt_route
from export.onnx import check_onnx, export_onnx, graph_opset, simplify_onnx
from export.onnxruntime import ort_runner
from export.precision import (CALIBRATION_METHODS, DEFAULT_CALIBRATION_METHOD, int8_opset, int8_placement_record,
                              quantize_int8, select_calibration_images)

log = logging.getLogger(__name__)

BACKENDS = ("python_onnxruntime", "onnxruntime_onnx", "tensorrt_plan")
PRECISIONS = ("fp32", "fp16", "int8")
ARTIFACT_FILES = {"fp32": "model.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx",
                  "int8_cpu": "model_int8_cpu.onnx"}
"""File of each artifact; ``int8`` is the TensorRT INT8 graph, ``int8_cpu`` the ONNX Runtime CPU one."""
ARTIFACT_BY_RUNTIME: dict[str, dict[str, str]] = {
    "onnxruntime-cpu": {"fp32": "onnx_fp32", "fp16": "onnx_fp16", "int8": "onnx_int8_cpu"},
    "onnxruntime-cuda": {"fp32": "onnx_fp32", "fp16": "onnx_fp16", "int8": "onnx_int8"},
    "tensorrt": {"fp32": "onnx_fp32", "fp16": "onnx_fp16", "int8": "onnx_int8"},
}
"""The one mapping of which ONNX artifact (manifest ``name``) each runtime runs at each precision: ONNX
Runtime's CPU kernels run the CPU INT8 graph (U8 activations, export/quantize_cpu.py), TensorRT and ORT's
CUDA provider the TensorRT INT8 graph. The bench's backends (bench.suite), banet-compare and the
reference commands pick artifacts only through :func:`runtime_artifact`."""
RUNTIME_BY_TRITON_BACKEND = {"tensorrt_plan": "tensorrt", "onnxruntime_onnx": "onnxruntime-cuda",
                             "python_onnxruntime": "onnxruntime-cpu"}
"""The runtime behind each Triton backend: ``onnxruntime_onnx`` is written with ``KIND_GPU`` (the CUDA
provider), the Python-backend ONNX Runtime model runs on the CPU."""
INT8_ARTIFACT_BY_BACKEND = {backend: ARTIFACT_BY_RUNTIME[runtime]["int8"]
                            for backend, runtime in RUNTIME_BY_TRITON_BACKEND.items() if runtime != "onnxruntime-cuda"}
"""Which INT8 artifact (by manifest name, before the serving suffix) each repository backend serves;
``onnxruntime_onnx`` (KIND_GPU) serves none: ORT's CUDA provider runs Q/DQ as float ops (slower than FP16),
and the CPU INT8 graph's U8 kernels are the CPU provider's (issue 19, defect 8)."""


def runtime_artifact(artifacts: list[dict[str, Any]], precision: str, runtime: str) -> dict[str, Any] | None:
    """The manifest entry that ``runtime`` runs at ``precision`` (:data:`ARTIFACT_BY_RUNTIME`), or None.

    No fallback to another artifact of the same precision: an export without the CPU INT8 graph has no
    ``onnxruntime-cpu`` INT8 artifact (timing the TensorRT graph in its place measured the wrong thing).
    """
    name = ARTIFACT_BY_RUNTIME[runtime][precision]
    return next((a for a in artifacts if a.get("name") == name), None)
MANIFEST = "manifest.json"
CONFIG_FILE = "export_config.json"


class ExportError(RuntimeError):
    """The export cannot go on (missing engine builder, bad version directory, ...)."""


class GateFailed(ExportError):
    """The artifact to promote failed its accuracy gate (artifacts and manifest are still written)."""


@dataclass(frozen=True)
class ExportConfig:
    """Everything that decides what ``banet-export`` writes; saved as ``export_config.json``."""

    checkpoint: str
    out: str
    version: int | None = None
    image_size: int | None = None
    """Network input size S; None takes the checkpoint's training size, else ``spec.IMAGE_SIZE``."""
    opset: int = ONNX_OPSET
    fp16: bool = False
    int8: bool = False
    calib_data: str | None = None
    calib_count: int = 256
    calib_method: str = DEFAULT_CALIBRATION_METHOD
    parity_data: str | None = None
    """A folder or ``ROOT:SPLIT``; None takes the Kvasir-SEG test split under ``BANET_DATA``."""
    parity_count: int | None = None
    batch_size: int = OPT_BATCH_SIZE
    threads: int | None = None
    min_agreement_fp32: float = parity.DEFAULT_GATES["fp32"].min_agreement
    max_ja_loss_fp32: float = parity.DEFAULT_GATES["fp32"].max_ja_loss
    min_agreement_fp16: float = parity.DEFAULT_GATES["fp16"].min_agreement
    max_ja_loss_fp16: float = parity.DEFAULT_GATES["fp16"].max_ja_loss
    min_agreement_int8: float = parity.DEFAULT_GATES["int8"].min_agreement
    max_ja_loss_int8: float = parity.DEFAULT_GATES["int8"].max_ja_loss
    min_worst_agreement_fp32: float = parity.DEFAULT_GATES["fp32"].min_worst_agreement
    min_worst_agreement_fp16: float = parity.DEFAULT_GATES["fp16"].min_worst_agreement
    min_worst_agreement_int8: float = parity.DEFAULT_GATES["int8"].min_worst_agreement
    engine: bool = True
    """Build TensorRT engines when a builder can (TensorRT with a GPU, or TensorRT-RTX anywhere)."""
    trt_builder: str | None = None
    """``tensorrt`` or ``tensorrt_rtx``; None takes ``tensorrt`` when installed, else TensorRT-RTX."""
    rtx_targets: tuple[str, ...] = trt_route.RTX_DEFAULT_TARGETS
    """Compute capabilities of TensorRT-RTX engines (``SM75``, ``SM80``, ``SM86``, ``SM89``, ``SM120``, ``SM121``)."""
    version_compatible: bool = False
    """TensorRT plans that later TensorRT runtimes load (Triton: ``--backend-config=tensorrt,version-compatible=true``)."""
    require_engine: bool = False
    torch_tensorrt: bool = False
    workspace_gib: float = trt_route.DEFAULT_WORKSPACE_GIB
    repository: str | None = None
    backend: str = "python_onnxruntime"
    promote: str | None = None
    """Precision to promote into ``repository``; None: FP16 when exported, else FP32."""
    network_io: str = "uint8"
    """What the repository serves: the uint8-I/O serving variant (the hot path) or the float32 graph."""
    decode_oversample: float = REDUCED_DECODE_OVERSAMPLE
    """The served path's reduced JPEG decode (gated here, written into the repository)."""
    force: bool = False
    force_promote: bool = False

    def __post_init__(self) -> None:
        if self.calib_method not in CALIBRATION_METHODS:
            raise ValueError(f"calib_method must be one of {CALIBRATION_METHODS}, got {self.calib_method!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.network_io not in NETWORK_IO:
            raise ValueError(f"network_io must be one of {NETWORK_IO}, got {self.network_io!r}")
        if self.promote is not None and self.promote not in PRECISIONS:
            raise ValueError(f"promote must be one of {PRECISIONS}, got {self.promote!r}")
        if self.repository and self.promote is not None and self.promote not in self.precisions:
            raise ValueError(f"--promote {self.promote}: no {self.promote} artifact would be exported "
                             f"(add --{self.promote})")
        if self.repository and self.promote == "int8" and self.backend == "onnxruntime_onnx":
            # export.repository refuses it too (the CPU INT8 graph on KIND_GPU): say so before exporting
            raise ValueError("--promote int8 --backend onnxruntime_onnx would serve the x86 CPU INT8 graph on "
                             "KIND_GPU, where ONNX Runtime's CUDA provider runs its Q/DQ as float ops (slower than "
                             "FP16); use --backend python_onnxruntime (KIND_CPU) or --backend tensorrt_plan")
        if self.int8 and not self.calib_data:
            raise ValueError("--int8 needs --calib-data (a folder of images or ROOT:SPLIT, "
                             "e.g. ../shared/data/kvasir-seg:train)")
        if self.trt_builder is not None and self.trt_builder not in trt_route.BUILDERS:
            raise ValueError(f"trt_builder must be one of {trt_route.BUILDERS}, got {self.trt_builder!r}")
        if isinstance(self.rtx_targets, list):  # from JSON / argparse
            object.__setattr__(self, "rtx_targets", tuple(self.rtx_targets))
        if self.version is not None and self.version < 1:
            raise ValueError(f"version must be >= 1, got {self.version}")
        if self.image_size is not None and self.image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {self.image_size}")
        for name in ("parity_count", "batch_size"):  # a zero would only fail in the gate, after the export
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def gate(self, precision: str) -> parity.Gate:
        return parity.Gate(getattr(self, f"min_agreement_{precision}"), getattr(self, f"max_ja_loss_{precision}"),
                           getattr(self, f"min_worst_agreement_{precision}"))

    @property
    def precisions(self) -> tuple[str, ...]:
        return ("fp32",) + (("fp16",) if self.fp16 else ()) + (("int8",) if self.int8 else ())


def tool_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("torch", "onnx", "onnxruntime", "onnxsim", "tensorrt", "tensorrt-rtx-cu13-bindings",
                 "tensorrt-rtx-cu12-bindings", "torch-tensorrt", "banet-deploy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def next_version(out: Path) -> int:
    """1 + the largest integer-named directory in ``out`` (1 when there is none)."""
    numbers = [int(p.name) for p in out.iterdir() if p.is_dir() and p.name.isdigit()] if out.is_dir() else []
    return max(numbers, default=0) + 1


def _image_size(config: ExportConfig, payload: dict[str, Any]) -> int:
    """``--image-size``, else the size the checkpoint was trained at (``train_config.size``), else the spec's."""
    if config.image_size is not None:
        return config.image_size
    train = payload.get("train_config")
    if isinstance(train, dict):
        for key in ("size", "image_size"):
            if isinstance(train.get(key), int):
                return int(train[key])
    return IMAGE_SIZE


def _bar(total: int | None, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img" if total else "step", disable=not enabled, leave=False)


def run_export(config: ExportConfig, *, show_progress: bool = False) -> dict[str, Any]:
    """Export, gate and (optionally) promote; returns the manifest written beside the artifacts.

    Raises :class:`banet.checkpoint.CheckpointError` for a missing/foreign checkpoint,
    :class:`ExportError` when an engine is required but cannot be built or the version exists,
    :class:`GateFailed` when the artifact to promote fails its gate (after writing everything).
    """
    builder = trt_route.load_builder(config.trt_builder) if config.engine else None
    can_build = builder is not None and builder.can_build()
    if config.require_engine and not can_build:
        reason = ("--no-engine was given" if not config.engine
                  else builder.cannot_build_reason() if builder else trt_route.unavailable_reason(config.trt_builder))
        raise ExportError(f"--require-engine: no TensorRT engine can be built here ({reason})")
    if can_build and not builder.for_triton:
        known = list(builder.module.ComputeCapability.__members__)
        unknown = [t for t in config.rtx_targets if t not in known or t in ("NONE", "CURRENT")]
        if unknown or not config.rtx_targets:
            raise ExportError(f"--rtx-targets {','.join(config.rtx_targets)}: {builder.label} builds for "
                              f"{', '.join(k for k in known if k.startswith('SM'))} (no SM90: H100/H200 need "
                              "the data-center TensorRT)")
    if config.repository and config.backend == "tensorrt_plan" and not (can_build and builder.for_triton):
        reason = (f"only {builder.label} is here, whose engines Triton's tensorrt_plan backend cannot load"
                  if can_build else trt_route.unavailable_reason("tensorrt"))
        raise ExportError(f"--backend tensorrt_plan needs a data-center TensorRT engine built for the serving GPU, "
                          f"which cannot be built here ({reason}); use python_onnxruntime or onnxruntime_onnx, "
                          "or build the plan with the printed trtexec command in the Triton container's TensorRT")

    model, payload = model_from_checkpoint(config.checkpoint)
    config = replace(config, image_size=_image_size(config, payload),
                     parity_data=config.parity_data or kvasir_split("test"))
    size = int(config.image_size or IMAGE_SIZE)
    # bad data fails here, before anything is written
    calib = (select_calibration_images(parity.image_paths(str(config.calib_data)), config.calib_count,
                                       source=str(config.calib_data)) if config.int8 else [])
    parity.image_paths(str(config.parity_data))

    out = Path(config.out)
    version = config.version or next_version(out)
    final = out / str(version)
    if final.exists() and not config.force:
        raise FileExistsError(f"{final} exists; pass --force to replace it (or omit --version for a new one)")
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".staging-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        manifest = _export_into(staging, config, model, size, calib, show_progress, builder if can_build else None)
        manifest["version"] = version
        manifest["directory"] = str(final)
        _write_json(staging / MANIFEST, manifest)
        _write_json(staging / CONFIG_FILE, asdict(config))
        if final.exists():
            if not config.force:  # it appeared while we worked (another export into OUT): keep it
                raise FileExistsError(f"{final} was created while this export ran; pass --force to replace "
                                      "it (or omit --version for a new one)")
            shutil.rmtree(final)  # force: the new version replaces the old one whole
        staging.rename(final)
    except FileExistsError:  # the version appeared while we worked: the message says to rerun with --force
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except BaseException as err:
        kept = _keep_incomplete(staging, out, version)
        if kept is not None and isinstance(err, Exception):
            raise ExportError(f"the export stopped: {type(err).__name__}: {err}; what it had written is kept "
                              f"in {kept}") from err
        raise
    log.info("export written to %s", final)
    if config.repository:
        manifest["promoted"] = promote(final, manifest, config)
        _write_json(final / MANIFEST, manifest)
    return manifest


def _keep_incomplete(staging: Path, out: Path, version: int) -> Path | None:
    """Move a staging folder that holds files to ``OUT/<version>.incomplete[.N]`` (never deleted)."""
    if not staging.is_dir():
        return None
    if not any(staging.iterdir()):
        staging.rmdir()
        return None
    kept = out / f"{version}.incomplete"
    n = 1
    while kept.exists():
        n += 1
        kept = out / f"{version}.incomplete.{n}"
    staging.rename(kept)
    log.error("export stopped; partial artifacts kept in %s", kept)
    return kept


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def _io(info: dict) -> dict:
    return {"inputs": info["inputs"], "outputs": info["outputs"]}


def _export_into(folder: Path, config: ExportConfig, model, size: int, calib: list[Path],
                 show: bool, builder: trt_route.Builder | None) -> dict[str, Any]:
    artifacts: list[dict[str, Any]] = []
    with _bar(None, "export ONNX", show) as bar:
        started = time.perf_counter()
        raw = folder / "model_raw.onnx"
        export_onnx(model, raw, image_size=size, opset=config.opset)
        bar.update()
        onnx_path = folder / ARTIFACT_FILES["fp32"]
        nodes = simplify_onnx(raw, onnx_path)
        raw.unlink()
        info = check_onnx(onnx_path, opset=config.opset)
        artifacts.append({"name": "onnx_fp32", "precision": "fp32", "format": "onnx", "path": onnx_path.name,
                          "target": None,
                          "nodes_before_simplify": nodes[0], "nodes": nodes[1], **_io(info),
                          "export_seconds": time.perf_counter() - started})
    if config.fp16:
        from export.precision import convert_fp16

        started = time.perf_counter()
        path = convert_fp16(onnx_path, folder / ARTIFACT_FILES["fp16"])
        info = check_onnx(path, opset=config.opset)
        artifacts.append({"name": "onnx_fp16", "precision": "fp16", "format": "onnx", "path": path.name,
                          "target": None,
                          "nodes": info["nodes"], **_io(info), "converter": "onnxruntime.transformers.float16",
                          "export_seconds": time.perf_counter() - started})
    if config.int8:
        started = time.perf_counter()
        source = str(config.calib_data)
        with _bar(len(calib), f"calibrate INT8 ({config.calib_method})", show) as bar:
            path = quantize_int8(onnx_path, folder / ARTIFACT_FILES["int8"], calib, image_size=size,
                                 method=config.calib_method, gate=config.gate("int8"), progress=bar.update)
        info = check_onnx(path, opset=int8_opset(config.opset))
        artifacts.append({"name": "onnx_int8", "precision": "int8", "format": "onnx", "path": path.name,
                          "target": "tensorrt", "opset": info["opset"],
                          "nodes": info["nodes"], **_io(info), "quantizer": "export.precision.quantize_int8 "
                          "(ORT calibration; Q/DQ placed by TensorRT's rules: conv inputs and per-channel weights, "
                          "fused residual inputs, float biases, FP16 outside Q/DQ; metadata banet.int8_nodes)",
                          **int8_placement_record(path),
                          "calibration": {"data": source, "images": len(calib), "method": config.calib_method},
                          "export_seconds": time.perf_counter() - started})
        from export.quantize_cpu import TARGET as CPU_TARGET
        from export.quantize_cpu import fused_node_counts, quantize_int8_cpu

        started = time.perf_counter()
        with _bar(len(calib), f"calibrate INT8 for ONNX Runtime CPU ({config.calib_method})", show) as bar:
            path = quantize_int8_cpu(onnx_path, folder / ARTIFACT_FILES["int8_cpu"], calib, image_size=size,
                                     method=config.calib_method, progress=bar.update)
        info = check_onnx(path, opset=graph_opset(path))
        fused = fused_node_counts(path)
        artifacts.append({"name": "onnx_int8_cpu", "precision": "int8", "format": "onnx", "path": path.name,
                          "target": CPU_TARGET, "opset": info["opset"],
                          "nodes": info["nodes"], **_io(info), "quantizer": "onnxruntime.quantization.quantize_static "
                          "(QDQ, U8 activations, S8 per-channel weights, int32 biases, ReLUs folded; "
                          "export/quantize_cpu.py; metadata banet.int8_recipe, banet.int8_nodes)",
                          "ort_optimized_graph": {k: fused.get(k, 0) for k in ("int8_convs", "float_convs", "int8_ops",
                                                                              "QuantizeLinear", "DequantizeLinear")},
                          "calibration": {"data": source, "images": len(calib), "method": config.calib_method},
                          "export_seconds": time.perf_counter() - started})

    # the served variant of every precision: uint8 pixels in, float16 probability out (export/serving_graph.py)
    artifacts.extend(serving_graph.serving_artifacts(folder, artifacts))

    engines = _engines(folder, config, model, size, artifacts, builder)

    # --- accuracy gate: every artifact against the FP32 PyTorch model on held-out real images
    with _bar(config.parity_count, "load parity images", show) as bar:
        data = parity.load_parity_set(config.parity_data, count=config.parity_count, progress=bar.update)
    with _bar(None, "parity", show) as bar:
        ref = parity.reference(torch_runner(model), data, image_size=size, batch_size=config.batch_size)
        bar.update()
        for item in [*artifacts, *engines]:
            if item.get("runner") is None and item["format"] != "onnx":
                item.setdefault("gate", "not run")  # a failed build says "fail", a CPU-only AOT build why
                continue
            io = item.get("io", "float32")
            run = item.pop("runner", None) or ort_runner(folder / item["path"], threads=config.threads, io=io)
            common = dict(artifact=item["name"], precision=item["precision"], image_size=size,
                          gate=config.gate(item["precision"]), batch_size=config.batch_size)
            try:
                if io == "uint8":  # the whole served path, from the encoded files
                    result = parity.score_served(run, data, ref, oversample=config.decode_oversample, **common)
                else:
                    result = parity.score(run, data, ref, **common)
            except Exception as err:  # noqa: BLE001 - an engine that fails to run is reported, the export goes on
                if item["format"] == "onnx":
                    raise
                reason = f"the engine failed to run: {type(err).__name__}: {err}"
                log.error("%s: %s", item["path"], reason)
                item.update(gate="fail", error=reason, parity={"reasons": [reason]})
                bar.update()
                continue
            item["parity"] = result.to_dict()
            item["gate"] = "pass" if result.passed else "fail"
            if item["format"] == "onnx":
                item["parity"]["runtime"] = "onnxruntime CPUExecutionProvider"
                if item["precision"] == "fp16":
                    item["parity"]["note"] = FP16_GATE_NOTE
            bar.update()
    # an ONNX artifact the TensorRT builder rejected fails its check, whatever its parity
    for item in artifacts:
        check = item.get("tensorrt_check")
        if check is not None and not check["built"]:
            item["gate"] = "fail"
            item.setdefault("parity", {}).setdefault("reasons", []).append(f"{check['builder_label']}: {check['error']}")

    for item in [*artifacts, *engines]:
        item.pop("runner", None)
        if (folder / item["path"]).is_file():
            item["sha256"] = file_sha256(folder / item["path"])
            item["bytes"] = (folder / item["path"]).stat().st_size
    return {
        "format": "banet-export/1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": {"path": str(config.checkpoint), "sha256": file_sha256(config.checkpoint)},
        "image_size": size,
        "input": {"name": NETWORK_INPUT.name, "dtype": NETWORK_INPUT.dtype},
        "output": {"name": NETWORK_OUTPUT.name, "dtype": NETWORK_OUTPUT.dtype},
        "serving": {io: {"input": {"name": i.name, "dtype": i.dtype}, "output": {"name": o.name, "dtype": o.dtype}}
                    for io, (i, o) in ((io, network_tensors(io)) for io in NETWORK_IO)},
        "batch": {"min": 1, "opt": OPT_BATCH_SIZE, "max": MAX_BATCH_SIZE},
        "parity_data": {"source": data.source, "images": len(data.images), "ground_truth": data.truths is not None},
        "tools": tool_versions(),
        "tensorrt_builder": builder.to_dict() if builder else None,
        "artifacts": artifacts,
        "engines": engines,
    }


FP16_GATE_NOTE = ("scored in ONNX Runtime's CPU provider, which runs this graph's FP16 convolutions in FP32 "
                  "(it checks FP16 weight rounding, not FP16 arithmetic); FP16 arithmetic is checked by the "
                  "TensorRT engine's own parity where a GPU runs it")


def _engines(folder: Path, config: ExportConfig, model, size: int, artifacts: list[dict],
             builder: trt_route.Builder | None) -> list[dict[str, Any]]:
    """TensorRT engines from each ONNX artifact meant for TensorRT, and the trtexec commands for Triton plans.

    A parse or build failure is recorded on the engine entry and on its ONNX artifact
    (``tensorrt_check``) and the export goes on; the artifact then fails its gate.
    """
    engines: list[dict[str, Any]] = []
    for art in artifacts:
        if art.get("target") not in (None, "tensorrt"):
            continue
        precision = art["precision"]
        io = art.get("io", "float32")  # uint8: the serving graph (export/serving_graph.py)
        suffix = serving_graph.SUFFIX if io == "uint8" else ""
        triton_plan = f"model_{precision}{suffix}.plan"
        rtx = builder is not None and not builder.for_triton
        plan = f"model_{precision}{suffix}_rtx.plan" if rtx else triton_plan
        entry: dict[str, Any] = {
            "name": f"tensorrt_rtx_{precision}{suffix}" if rtx else f"tensorrt_{precision}{suffix}", "precision": precision, "io": io,
            "format": "tensorrt_rtx_engine" if rtx else "tensorrt_plan", "path": plan, "source": art["path"],
            "profile": trt_route.profile_shapes(size, io=io),
            "triton": not rtx, "triton_plan": triton_plan,
            # the Triton plan is built with the TensorRT of the serving Triton container (docs/serving.md)
            "trtexec": trt_route.trtexec_command(art["path"], triton_plan, image_size=size,
                                                 timing_cache="timing.cache", workspace_gib=config.workspace_gib,
                                                 version_compatible=config.version_compatible, io=io)}
        if rtx:
            entry["note"] = ("TensorRT-RTX engine for RTX/A100-class GPUs (compiled for the GPU on first run); "
                             "Triton's tensorrt_plan backend cannot load it and it is never promoted")
        if builder is not None:
            cache = trt_route.timing_cache_path(Path(config.out), builder)
            try:
                built = trt_route.build_engine(folder / art["path"], folder / plan, image_size=size, builder=builder,
                                               timing_cache=cache, workspace_gib=config.workspace_gib,
                                               targets=config.rtx_targets, version_compatible=config.version_compatible,
                                               io=io)
            except trt_route.EngineBuildError as err:
                log.error("%s", err)
                entry.update(status="failed", gate="fail", error=str(err), **builder.to_dict())
                entry["parity"] = {"reasons": [str(err)]}
                art["tensorrt_check"] = {"built": False, "builder_label": builder.label, "error": str(err)}
            else:
                entry.update(status="built", export_seconds=built.seconds, **built.to_dict())
                art["tensorrt_check"] = {"built": True, "builder_label": builder.label, "engine": plan}
                # the builder's own I/O record against what the repository and the runner expect
                entry["io_check"] = trt_route.check_engine_io(built.tensors, io, image_size=size)
                runnable, why = trt_route.engine_runnable(builder, targets=built.targets,
                                                          version_compatible=built.builder["version_compatible"])
                entry["runtime"] = {"runnable": runnable, "reason": why, "gpu": trt_route.gpu()}
                if runnable:
                    _attach_runner(entry, lambda: trt_route.engine_runner(folder / plan, builder=builder, io=io))
                else:  # it parsed and built; this machine cannot run it (no GPU, or a GPU it was not built for)
                    log.info("%s not run: %s", plan, why)
                    entry["gate"] = f"not run: {why}"
        else:
            reason = "disabled (--no-engine)" if not config.engine else trt_route.unavailable_reason(config.trt_builder)
            entry["status"] = f"not built: {reason}"
        engines.append(entry)
    if config.torch_tensorrt:
        engines.extend(_torch_tensorrt_engines(folder, config, model, size))
    return engines


def _attach_runner(entry: dict[str, Any], make) -> None:
    """``entry["runner"] = make()``; an engine that fails to deserialize or set up is reported on its entry
    (gate "fail", with the reason) and the export goes on with every other artifact."""
    try:
        entry["runner"] = make()
    except Exception as err:  # noqa: BLE001 - one engine's failure must not stop the export
        reason = f"the engine could not be loaded to run: {type(err).__name__}: {err}"
        log.error("%s: %s", entry["path"], reason)
        entry.update(gate="fail", error=reason, parity={"reasons": [reason]})


def _torch_tensorrt_engines(folder: Path, config: ExportConfig, model, size: int) -> list[dict[str, Any]]:
    """Torch-TensorRT plans (GPU hosts); parity is scored on the plan bytes written, not on a second compile."""
    engines = []
    for precision in (p for p in config.precisions if p in torch_trt_route.PRECISIONS):
        plan = f"model_torchtrt_{precision}.plan"
        entry: dict[str, Any] = {"name": f"torch_tensorrt_{precision}", "precision": precision,
                                 "format": "tensorrt_plan", "path": plan, "route": "torch_tensorrt (dynamo)",
                                 "triton": False}
        if torch_trt_route.available():
            started = time.perf_counter()
            # serialize_engine works on a deep copy: ``model`` stays the FP32 CPU reference of every gate
            io = torch_trt_route.serialize_engine(model, folder / plan, precision=precision, image_size=size,
                                                  workspace_gib=config.workspace_gib)
            builder = trt_route.load_builder("tensorrt")
            entry.update(status="built", export_seconds=time.perf_counter() - started, io=io,
                         note=f"output tensor is named {io['output']!r} by Torch-TensorRT; the generated Triton "
                              "config names it logits, so this plan is not promoted (use the ONNX route's plan)")
            _attach_runner(entry, lambda: trt_route.engine_runner(folder / plan, builder=builder,
                                                                  output=io["output"]))
        else:
            entry["status"] = f"not built: {torch_trt_route.unavailable_reason()}"
        engines.append(entry)
    return engines


def promote(final: Path, manifest: dict[str, Any], config: ExportConfig) -> dict[str, Any]:
    """Write the Triton repository from the chosen artifact if it passed its gate (or ``force_promote``)."""
    precision = config.promote or ("fp16" if config.fp16 else "fp32")
    by_name = {a["name"]: a for a in [*manifest["artifacts"], *manifest["engines"]]}
    suffix = serving_graph.SUFFIX if config.network_io == "uint8" else ""
    onnx_name = INT8_ARTIFACT_BY_BACKEND[config.backend] if precision == "int8" else f"onnx_{precision}"
    onnx_art = by_name.get(f"{onnx_name}{suffix}")
    if onnx_art is None:
        raise ExportError(f"--promote {precision}: no {precision} artifact was exported (add --{precision})")
    chosen = by_name.get(f"tensorrt_{precision}{suffix}") if config.backend == "tensorrt_plan" else onnx_art
    if chosen is None or (config.backend == "tensorrt_plan" and not chosen.get("triton")):
        raise ExportError(f"--backend tensorrt_plan: no data-center TensorRT {precision} plan was built "
                          "(a TensorRT-RTX engine is never promoted: Triton cannot load it)")
    if config.backend == "tensorrt_plan" and chosen.get("status") != "built":
        raise GateFailed(f"{chosen['name']} was not built ({chosen.get('error') or chosen.get('status')}); "
                         f"not promoted into {config.repository}")
    if chosen.get("gate") != "pass" and not config.force_promote:
        raise GateFailed(f"{chosen['name']} failed its accuracy gate ({'; '.join(chosen.get('parity', {}).get('reasons', []))}); "
                         f"not promoted into {config.repository} (pass --force-promote to promote anyway)")
    try:
        from export.repository import RepositoryError, write_repository
    except ImportError as err:
        raise ExportError(f"cannot write the Triton repository: export.repository is not available ({err})") from None
    engine_path = final / chosen["path"] if config.backend == "tensorrt_plan" else None
    try:
        written = write_repository(Path(config.repository), onnx_path=final / onnx_art["path"],
                                   backend=config.backend, engine_path=engine_path,
                                   engine_tensors=chosen.get("tensors") if engine_path is not None else None,
                                   max_batch_size=MAX_BATCH_SIZE, image_size=int(config.image_size or IMAGE_SIZE),
                                   network_io=config.network_io, decode_oversample=config.decode_oversample,
                                   force=config.force)
    except RepositoryError as err:
        raise ExportError(f"artifacts are in {final}, but the repository was not written: {err}") from None
    log.info("promoted %s into %s", chosen["name"], config.repository)
    return {"artifact": chosen["name"], "repository": str(config.repository), "backend": config.backend,
            "gate": chosen.get("gate"), "forced": chosen.get("gate") != "pass", "result": str(written)}
