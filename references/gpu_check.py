"""The prepared GPU check: every CUDA path of the project in one command, under 10 minutes.

NOT RUN ON A GPU YET: no GPU was lent to the issues that wrote it (14, 19). Its CPU rehearsal
(``--dry-run``: tiny model, 64 px, a few steps, on the CPU) runs in ``tests/references/test_gpu_check.py``;
the CUDA paths (bf16 autocast, channels_last, torch.compile, CUDA graphs, TensorRT) are written to be
ready, not verified.

    # here: a 256 px copy of Kvasir-SEG (about 25 MB) in the git-ignored devdata/, to carry along
    python -m references.gpu_check prepare-data --data ../shared/data/kvasir-seg --out devdata/kvasir-seg-256
    # on the GPU machine (carry devdata/kvasir-seg-256), every step, results into $OUT:
    python -m references.gpu_check run --data devdata/kvasir-seg-256 --out $OUT
    # the CPU rehearsal (what the test runs)
    python -m references.gpu_check run --data DATA --out OUT --dry-run

Steps (``--steps``, in this order), each in its own process with a time budget (``BUDGET_S``,
``--budget STEP=SECONDS``; 560 s in all): a step that raises is recorded as ``failed`` with its error
and the tail of its log, one that overruns is stopped and recorded as ``timeout`` with what it had
reported so far, and the next step runs either way (a CUDA error in one step cannot poison the next:
each gets a fresh process and CUDA context).

- ``environment``: Python, torch and its CUDA/cuDNN, the GPU (name, compute capability, memory,
  bf16), an FP16 matmul checked against the CPU and its TFLOP/s, ONNX Runtime's providers, and which
  of tensorrt, torch_tensorrt, TensorRT-RTX, DALI, tritonclient, ModelOpt are importable.
- ``throughput``: training images/s of the official recipe's model and loss (ResNet-50, CE + Dice,
  deep supervision, the authors' augmentation on the GPU, bf16 autocast, channels_last): eager and
  ``torch.compile`` (``--train-modes``; ``cudagraphs`` = ``torch.compile(mode="reduce-overhead")``),
  at the recipe's batch 8 and at batch 64. Goal: >= 1,000 images/s on an H100/H200.
- ``train``: the issue-21 run: :func:`banet.train.fit` with the ``official`` recipe from scratch
  (no ImageNet weights) on the resized Kvasir-SEG, ``torch.compile`` when its row worked; the epochs
  are the recipe's 150, cut to what the measured speed fits into this step's budget (or
  ``--train-minutes``); then :func:`banet.evaluate.evaluate` on the test split. Goal: test JA >= 0.80
  within 10 minutes (give the step the whole call with ``--steps train --budget train=570``).
- ``bench``: the bench's PyTorch latency rows (:func:`bench.backends.torch_variants`: FP32/FP16/BF16
  eager, channels_last, CUDA graph, torch.compile) at batch 1 and 32.
- ``parity``: ``banet-export`` of FP32 and FP16 ONNX (its own ONNX Runtime gates), then every CUDA
  PyTorch path and ONNX Runtime's FP32/FP16 graphs scored against FP32 PyTorch on the CPU with the
  export's mask gates (:func:`bench.backend_parity.score_backends`). ONNX Runtime's CUDA provider is listed
  and skipped with the reason where the installed build has none.
- ``tensorrt``: where the data-center ``tensorrt`` is importable and a GPU visible, ``banet-export``
  builds and gates the FP16 engines and their latency and parity rows are measured; likewise
  Torch-TensorRT. Otherwise each is recorded as ``absent`` with the reason (on the H200 used for
  checks neither is installed: see /work/shared/FACTS.md).

The model of ``bench``, ``parity`` and ``tensorrt`` is ``--checkpoint``, else the ``train`` step's
best checkpoint, else the recipe's model with seeded random weights (the results say which).

Writes ``OUT/<date>_<machine>_gpu_check[-dry-run].json`` (``--tag``, or ``--name`` for the whole stem) and
``.md`` (command, machine and GPU, library versions, load average, date, each step's status, seconds and
budget, every number) through ``bench.results.ResultFiles`` after every step, so a run stopped from outside
keeps the steps it finished; each step's log is in ``OUT/<stem>_logs/STEP.log``. Refuses to replace
results without ``--force``. The data copy is scored at its own (256 px short side) resolution, not
at the original images' sizes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("references.gpu_check")

PROG = "python -m references.gpu_check"
STEPS = ("environment", "throughput", "train", "bench", "parity", "tensorrt")
BUDGET_S = {"environment": 20.0, "throughput": 90.0, "train": 225.0, "bench": 90.0, "parity": 90.0,
            "tensorrt": 45.0}
"""Seconds per step on the GPU (560 in all: the whole check fits a 10-minute call with startup)."""
DRY_RUN_BUDGET_S = 180.0
"""Seconds per step of the CPU rehearsal (a loaded 2-core machine)."""
TRAIN_MODES = ("eager", "compile", "cudagraphs")
GOAL_JA, GOAL_MINUTES, GOAL_IMAGES_PER_S = 0.80, 10.0, 1000.0
OPTIONAL_MODULES = ("onnx", "onnxruntime", "onnxsim", "tensorrt", "torch_tensorrt", "tensorrt_rtx_bindings",
                    "nvidia.dali", "tritonclient", "modelopt", "torchvision")
"""Importability recorded by the environment step (found, not imported: some take seconds to load)."""


@dataclass(frozen=True)
class Scale:
    """How big each step is: the real check on a GPU, or the CPU rehearsal."""

    preset: str
    size: int
    train_batch_sizes: tuple[int, ...]
    throughput_warmup: int
    throughput_steps: int
    bench_batch_sizes: tuple[int, ...]
    bench_warmup: int
    bench_iters: int
    pool_images: int
    parity_images: int
    workers: int
    max_steps: int | None


FULL = Scale(preset="resnet50", size=256, train_batch_sizes=(8, 64), throughput_warmup=15, throughput_steps=40,
             bench_batch_sizes=(1, 32), bench_warmup=10, bench_iters=50, pool_images=64, parity_images=16,
             workers=8, max_steps=None)
DRY_RUN = Scale(preset="tiny", size=64, train_batch_sizes=(2,), throughput_warmup=1, throughput_steps=2,
                bench_batch_sizes=(1, 2), bench_warmup=1, bench_iters=2, pool_images=4, parity_images=4,
                workers=1, max_steps=2)


# --- data ------------------------------------------------------------------------------------------
def prepare_data(src: str | Path, out: str | Path, *, size: int = 256, quality: int = 95,
                 force: bool = False) -> dict:
    """Write a copy of the dataset ``src`` whose images' shorter side is ``size`` (aspect kept).

    Images become JPEG (``quality``), masks 0/255 PNG (resized nearest, as training does); the
    ``splits*.csv`` files are copied, so the splits stay the same. Written into a temporary folder
    and renamed into place; an existing ``out`` is refused unless ``force``.
    """
    from PIL import Image

    from banet import processing
    from banet.data.annotations import read_pair
    from banet.data.pairs import find_pairs

    src, out = Path(src), Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    pairs = find_pairs(src)
    if any(p.mask is None for p in pairs):
        raise ValueError(f"{src} has images without masks")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / "masks").mkdir()
    for pair in pairs:
        image, mask = read_pair(pair)
        h, w = image.shape[:2]
        scale = size / min(h, w)
        shape = (max(1, round(h * scale)), max(1, round(w * scale)))
        Image.fromarray(processing.resize_image(image, shape)).save(tmp / "images" / f"{pair.name}.jpg",
                                                                    quality=quality)
        Image.fromarray(processing.resize_mask(mask, shape).astype("uint8") * 255).save(
            tmp / "masks" / f"{pair.name}.png")
    for csv_file in sorted(src.glob("splits*.csv")):
        shutil.copyfile(csv_file, tmp / csv_file.name)
    (tmp / "SOURCE.txt").write_text(
        f"Derived from {src.resolve()} by `python -m references.gpu_check prepare-data` (shorter side {size} px, "
        f"JPEG quality {quality}, masks nearest-resized PNG). Same terms as the source dataset.\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"out": str(out), "pairs": len(pairs), "megabytes": round(total / 2**20, 1)}


# --- what the steps share --------------------------------------------------------------------------
def _device(name: str):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _compiled(model, mode: str):
    import torch

    if mode == "eager":
        return model
    return torch.compile(model, mode="reduce-overhead" if mode == "cudagraphs" else None)


def _fresh(folder: Path) -> Path:
    """``folder`` emptied: a scratch folder of this check under ``--work``, never a user's output."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _model_checkpoint(ctx: dict, scale: Scale) -> tuple[Path, str]:
    """(checkpoint, what it is): ``--checkpoint`` or the train step's best, else seeded random weights
    of the recipe's model written under ``--work``."""
    if ctx.get("checkpoint"):
        return Path(ctx["checkpoint"]), ctx.get("checkpoint_source", "given")
    import torch

    from banet.checkpoint import save_checkpoint
    from banet.model import build_model
    from banet.train import build_model_config, resolve_config

    path = Path(ctx["work"]) / "random_weights.pt"
    if not path.is_file():
        torch.manual_seed(ctx["seed"])
        model = build_model(build_model_config(resolve_config(ctx["data"], "-", "official", preset=scale.preset)))
        save_checkpoint(path, model.eval(), overwrite=True, note="gpu_check: seeded random weights")
    return path, f"random weights (seed {ctx['seed']}): no --checkpoint and no train step result"


def measure_training(train_ds, *, data: str, mode: str, batch_size: int, scale: Scale, device) -> dict:
    """Images/s of ``train_one_epoch`` (the official recipe's model, loss and augmentation)."""
    import torch

    from banet.losses import DeepSupervisionLoss
    from banet.model import build_model
    from banet.train import (AUGMENTATIONS, amp_dtype, build_model_config, build_optimizer, build_scheduler,
                             resolve_config, train_one_epoch)

    row = {"mode": mode, "batch_size": batch_size}
    if mode != "eager" and device.type != "cuda":
        return {**row, "skipped": "torch.compile and CUDA graphs are measured on CUDA only"}
    config = resolve_config(data, "-", "official", preset=scale.preset, size=scale.size, batch_size=batch_size)
    torch.manual_seed(0)
    model = build_model(build_model_config(config)).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, model.parameters())
    scheduler = build_scheduler(config, optimizer, total_steps=10**6)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    loss_fn = DeepSupervisionLoss(dice_weight=config.dice_weight)
    gen = torch.Generator().manual_seed(0)
    n = scale.throughput_warmup + scale.throughput_steps
    batches = [torch.randint(0, len(train_ds), (batch_size,), generator=gen) for _ in range(n)]
    kwargs = dict(augment=AUGMENTATIONS[config.augment], generator=gen, autocast=amp_dtype(config, device),
                  channels_last=channels_last)
    try:
        run = _compiled(model, mode)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        train_one_epoch(run, loss_fn, optimizer, scheduler, scaler, train_ds, batches[:scale.throughput_warmup],
                        device, **kwargs)
        _sync(device)
        warm = time.perf_counter() - started
        started = time.perf_counter()
        train_one_epoch(run, loss_fn, optimizer, scheduler, scaler, train_ds, batches[scale.throughput_warmup:],
                        device, **kwargs)
        _sync(device)
        timed = time.perf_counter() - started
    except Exception as err:  # noqa: BLE001 - one failing mode must not end the check
        log.warning("training %s at batch %d failed: %s", mode, batch_size, err)
        return {**row, "skipped": f"failed: {type(err).__name__}: {err}"}
    row.update(images_per_s=round(scale.throughput_steps * batch_size / timed, 1), timed_steps=scale.throughput_steps,
               timed_s=round(timed, 3), warmup_steps=scale.throughput_warmup, warmup_s=round(warm, 2),
               amp=str(kwargs["autocast"]), channels_last=channels_last)
    if device.type == "cuda":
        row["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    log.info("training %s batch %d: %.1f images/s (warmup %.1f s)", mode, batch_size, row["images_per_s"], warm)
    return row


def plan_epochs(throughput: list[dict], *, minutes: float, train_images: int, batch_size: int,
                recipe_epochs: int) -> tuple[int, str, str]:
    """(epochs, mode, reason): the recipe's epochs, or fewer when the measured speed says they
    would not fit ``minutes`` (10 % kept for validation, checkpoints and evaluation)."""
    rows = {r["mode"]: r for r in throughput if r.get("batch_size") == batch_size and "images_per_s" in r}
    mode = "compile" if "compile" in rows else "eager"
    if mode not in rows:
        return recipe_epochs, mode, f"no throughput row at batch {batch_size}: the recipe's {recipe_epochs} epochs"
    row = rows[mode]
    per_epoch = (train_images // batch_size) * batch_size / row["images_per_s"]
    budget = 0.9 * minutes * 60 - row["warmup_s"]
    fit = max(1, math.floor(budget / per_epoch))
    if fit >= recipe_epochs:
        return recipe_epochs, mode, f"{recipe_epochs} epochs fit: {per_epoch:.1f} s per epoch at {row['images_per_s']} images/s"
    return fit, mode, (f"cut from {recipe_epochs} to {fit} epochs: {per_epoch:.1f} s per epoch at "
                       f"{row['images_per_s']} images/s ({mode}), {minutes:g} minutes")


def run_training(*, data: str, work: Path, scale: Scale, device, epochs: int, mode: str, seed: int) -> dict:
    """``fit`` with the official recipe, then the test-split evaluation of its best checkpoint."""
    from banet.evaluate import evaluate
    from banet.train import fit, resolve_config

    config = resolve_config(data, str(work), "official", preset=scale.preset, size=scale.size, epochs=epochs,
                            max_steps=scale.max_steps, compile=mode != "eager", device=device.type,
                            workers=scale.workers, val_batch_size=32, seed=seed,
                            save_every=max(1, epochs // 5))
    started = time.perf_counter()
    result = fit(config, force=True)
    fit_s = time.perf_counter() - started
    history = result["history"]
    started = time.perf_counter()
    test = evaluate(result["best"], data, "test", device=device.type, batch_size=32)
    eval_s = time.perf_counter() - started
    ja = test["model"]["mean"]["JA"]
    return {
        "config": config.to_dict(), "mode": mode, "epochs": len(history), "steps": history[-1]["step"],
        "fit_seconds": round(fit_s, 1), "train_seconds": round(sum(r["train_seconds"] for r in history), 1),
        "eval_seconds": round(eval_s, 1),
        "median_train_images_per_s": round(sorted(r["train_images_per_s"] for r in history)[len(history) // 2], 1),
        "val_JA": [round(r["val"]["mean"]["JA"], 4) for r in history],
        "best_val_JA": round(max(r["val"]["mean"]["JA"] for r in history), 4),
        "test": {"images": test["model"]["images"], "mean": test["model"]["mean"],
                 "aggregate": test["model"]["aggregate"]},
        "test_JA": ja, "checkpoint": result["best"],
        "goal": {"test_JA_at_least": GOAL_JA, "minutes_at_most": GOAL_MINUTES,
                 "met": ja >= GOAL_JA and fit_s <= GOAL_MINUTES * 60},
    }


def run_bench_rows(*, data: str, checkpoint: str | Path, scale: Scale, device,
                   emit: Callable[[list[dict]], None] = lambda rows: None) -> list[dict]:
    """The bench's PyTorch rows (``torch_variants``) at ``scale.bench_batch_sizes``, reported per variant."""
    from banet.checkpoint import model_from_checkpoint
    from bench.backends import TorchBackend, torch_variants
    from bench.inputs import load_pool
    from bench.latency import measure_latency

    model, _ = model_from_checkpoint(checkpoint)
    pool = load_pool(data, split="test", limit=scale.pool_images, size=scale.size)
    rows: list[dict] = []
    for variant in torch_variants(device.type):
        backend = TorchBackend(model, variant)
        try:
            rows += [r.to_dict() for r in measure_latency(backend, pool, scale.bench_batch_sizes,
                                                          warmup=scale.bench_warmup, iters=scale.bench_iters)]
        finally:
            backend.close()
        emit(rows)
    return rows


# --- the steps: each runs in its own process (``step`` command), reports through ``emit`` ------------
Emit = Callable[[Any], None]


def step_environment(ctx: dict, scale: Scale, device, emit: Emit) -> dict:
    """Versions, the GPU, a checked FP16 matmul, ONNX Runtime's providers, what is importable."""
    import importlib.metadata
    import platform

    import torch

    facts: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(), "device": str(device), "cpu_threads": torch.get_num_threads(),
    }
    dists = importlib.metadata.packages_distributions()
    facts["modules"] = {}
    for name in OPTIONAL_MODULES:
        found = importlib.util.find_spec(name.split(".")[0]) is not None and importlib.util.find_spec(name) is not None
        versions = []
        for dist in dists.get(name.split(".")[0], []) if found else []:
            try:
                versions.append(f"{dist} {importlib.metadata.version(dist)}")
            except importlib.metadata.PackageNotFoundError:
                continue
        facts["modules"][name] = ", ".join(sorted(set(versions))) or ("installed" if found else None)
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        facts["onnxruntime_providers"] = onnxruntime.get_available_providers()
    emit(facts)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts["gpu"] = {"name": props.name, "compute_capability": f"{props.major}.{props.minor}",
                        "memory_gib": round(props.total_memory / 2**30, 1),
                        "multiprocessors": props.multi_processor_count,
                        "bf16": torch.cuda.is_bf16_supported(),
                        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    # an FP16 matmul on the device, checked against float64 on the CPU (the GPU computes, and right)
    n = 4096 if device.type == "cuda" else 256
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen) for _ in range(2))
    want = (a.double() @ b.double())
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    x, y = a.to(device, dtype), b.to(device, dtype)
    got = (x @ y).float().cpu().double()
    rel = float((got - want).norm() / want.norm())
    iters = 20 if device.type == "cuda" else 2
    _sync(device)
    started = time.perf_counter()
    for _ in range(iters):
        x @ y
    _sync(device)
    seconds = (time.perf_counter() - started) / iters
    facts["matmul"] = {"n": n, "dtype": str(x.dtype), "relative_error_vs_float64": round(rel, 6),
                       "tflops": round(2 * n**3 / seconds / 1e12, 2), "ok": rel < 1e-2}
    if not facts["matmul"]["ok"]:
        raise RuntimeError(f"the {x.dtype} matmul on {device} is off by {rel:.3g} (relative) from float64")
    return facts


def step_throughput(ctx: dict, scale: Scale, device, emit: Emit) -> list[dict]:
    from banet.data.dataset import load_split

    train_ds = load_split(ctx["data"], "train", scale.size, workers=scale.workers)
    if device.type == "cuda":  # the uint8 cache on the GPU, as banet.train.fit keeps it
        train_ds.images, train_ds.masks = train_ds.images.to(device), train_ds.masks.to(device)
    rows: list[dict] = []
    for mode in ctx["train_modes"]:  # eager rows first: a budget that runs out in a compile keeps them
        for batch_size in scale.train_batch_sizes:
            rows.append(measure_training(train_ds, data=ctx["data"], mode=mode, batch_size=batch_size,
                                         scale=scale, device=device))
            emit(rows)
    return rows


def step_train(ctx: dict, scale: Scale, device, emit: Emit) -> dict:
    from banet.data.pairs import find_pairs
    from banet.train import RECIPES

    recipe = RECIPES["official"]
    # the step's budget less startup, data decoding and the test evaluation
    minutes = ctx["train_minutes"] or 0.8 * ctx["budget_s"] / 60
    epochs, mode, plan = plan_epochs(ctx.get("throughput") or [], minutes=minutes,
                                     train_images=len(find_pairs(ctx["data"], "train")),
                                     batch_size=recipe["batch_size"], recipe_epochs=recipe["epochs"])
    if ctx["train_epochs"]:
        epochs, plan = ctx["train_epochs"], f"--train-epochs {ctx['train_epochs']}"
    if ctx["dry_run"]:
        epochs, plan = 1, f"dry run: 1 epoch, {scale.max_steps} steps"
    emit({"plan": plan})
    return {"plan": plan, **run_training(data=ctx["data"], work=_fresh(Path(ctx["work"]) / "train"), scale=scale,
                                         device=device, epochs=epochs, mode=mode, seed=ctx["seed"])}


def step_bench(ctx: dict, scale: Scale, device, emit: Emit) -> dict:
    checkpoint, source = _model_checkpoint(ctx, scale)
    result: dict[str, Any] = {"model": source, "rows": []}

    def partial(rows: list[dict]) -> None:
        result["rows"] = rows
        emit(result)

    run_bench_rows(data=ctx["data"], checkpoint=checkpoint, scale=scale, device=device, emit=partial)
    return result


def _export(ctx: dict, scale: Scale, checkpoint: Path, folder: str, **options) -> tuple[dict, Path]:
    from export.pipeline import ExportConfig, run_export

    manifest = run_export(ExportConfig(checkpoint=str(checkpoint), out=str(_fresh(Path(ctx["work"]) / folder)),
                                       image_size=scale.size, fp16=True, parity_data=f"{ctx['data']}:test",
                                       parity_count=scale.parity_images, **options))
    return manifest, Path(manifest["directory"])


def _gates(manifest: dict) -> list[dict]:
    keep = ("name", "precision", "io", "gate", "mean_agreement", "worst_agreement")
    return [{k: a.get(k, a.get("parity", {}).get(k)) for k in keep} for a in manifest["artifacts"]]


def step_parity(ctx: dict, scale: Scale, device, emit: Emit) -> dict:
    """FP32/FP16 ONNX through banet-export's gates, then the CUDA PyTorch paths and ONNX Runtime
    against FP32 PyTorch on the CPU, with the export's mask gates."""
    from banet.checkpoint import model_from_checkpoint
    from bench.backends import Backend, TorchBackend, TorchVariant, torch_variants
    from bench.backend_parity import score_backends
    from bench.suite import artifact_backends
    from export.parity import load_parity_set

    checkpoint, source = _model_checkpoint(ctx, scale)
    result: dict[str, Any] = {"model": source}
    manifest, folder = _export(ctx, scale, checkpoint, "export-onnx", engine=False)
    result["export_gates"] = _gates(manifest)
    emit(result)
    model, _ = model_from_checkpoint(checkpoint)
    reference = TorchBackend(model, TorchVariant("fp32", device="cpu"))
    backends: list[Backend] = [TorchBackend(model, v) for v in torch_variants(device.type) if v != reference.variant]
    backends += [b for b in artifact_backends(manifest, folder, device=device.type) if b.name.startswith("ort-")]
    data = load_parity_set(f"{ctx['data']}:test", count=scale.parity_images)
    result["reference"], result["images"], result["rows"] = reference.name, len(data.images), []

    def row(r: dict) -> None:
        result["rows"].append(r)
        emit(result)

    try:
        score_backends(backends, reference, data, image_size=scale.size, on_row=row)
    finally:
        for backend in [reference, *backends]:
            backend.close()
    return result


def _absent(backend: str, reason: str) -> dict:
    return {"backend": backend, "status": "absent", "reason": reason}


def step_tensorrt(ctx: dict, scale: Scale, device, emit: Emit) -> dict:
    """Data-center TensorRT engines and Torch-TensorRT where importable (latency and parity rows);
    ``absent`` with the reason otherwise."""
    from bench.backends import torch_tensorrt_backend

    rows: list[dict] = []
    result: dict[str, Any] = {"rows": rows}
    gpu = device.type == "cuda"
    have_trt = importlib.util.find_spec("tensorrt") is not None
    have_ttrt = importlib.util.find_spec("torch_tensorrt") is not None
    if not gpu:
        why = "dry run on the CPU" if ctx["dry_run"] else "no CUDA GPU"
        rows.append(_absent("tensorrt", f"{why} (tensorrt {'installed' if have_trt else 'not installed'})"))
        rows.append(_absent("torch_tensorrt", f"{why} (torch_tensorrt {'installed' if have_ttrt else 'not installed'})"))
    if gpu and not have_trt:
        rows.append(_absent("tensorrt", "the data-center tensorrt Python package is not installed"))
    if gpu and not have_ttrt:
        rows.append(_absent("torch_tensorrt", "the torch_tensorrt Python package is not installed"))
    if importlib.util.find_spec("tensorrt_rtx_bindings") is not None:
        rows.append(_absent("tensorrt_rtx", "TensorRT-RTX is installed: its engines are built on the CPU by the "
                                            "test suite; Triton's tensorrt_plan backend does not load them, so "
                                            "they are not measured here"))
    emit(result)
    if not gpu or not (have_trt or have_ttrt):
        return result
    from banet.checkpoint import model_from_checkpoint
    from bench.backends import TorchBackend, TorchVariant
    from bench.inputs import load_pool
    from bench.latency import measure_latency
    from bench.backend_parity import score_backends
    from bench.suite import artifact_backends
    from export.parity import load_parity_set

    checkpoint, result["model"] = _model_checkpoint(ctx, scale)
    model, _ = model_from_checkpoint(checkpoint)
    backends = []
    if have_trt:
        try:
            manifest, folder = _export(ctx, scale, checkpoint, "export-tensorrt", engine=True, trt_builder="tensorrt")
        except Exception as err:  # noqa: BLE001 - recorded; Torch-TensorRT is still measured
            log.exception("banet-export with TensorRT engines failed")
            rows.append({"backend": "tensorrt", "status": "failed", "reason": f"banet-export: {type(err).__name__}: {err}"})
        else:
            result["engines"] = [{k: e.get(k) for k in ("name", "status", "gate", "error") if k in e}
                                 for e in manifest.get("engines", [])]
            backends += [b for b in artifact_backends(manifest, folder, device="cuda") if b.name.startswith("tensorrt-")]
        emit(result)
    if have_ttrt:
        backends.append(torch_tensorrt_backend(model, "fp16", scale.size))
    pool = load_pool(ctx["data"], split="test", limit=scale.pool_images, size=scale.size)
    reference = TorchBackend(model, TorchVariant("fp32", device="cpu"))
    data = load_parity_set(f"{ctx['data']}:test", count=scale.parity_images)
    try:
        for backend in backends:
            latency = [r.to_dict() for r in measure_latency(backend, pool, scale.bench_batch_sizes,
                                                            warmup=scale.bench_warmup, iters=scale.bench_iters)]
            parity = score_backends([backend], reference, data, image_size=scale.size)
            rows.append({"backend": backend.name, "status": "measured", "latency": latency, "parity": parity[0]})
            emit(result)
    finally:
        for backend in [reference, *backends]:
            backend.close()
    return result


STEP_FUNCTIONS: dict[str, Callable[[dict, Scale, Any, Emit], Any]] = {
    "environment": step_environment, "throughput": step_throughput, "train": step_train, "bench": step_bench,
    "parity": step_parity, "tensorrt": step_tensorrt,
}


def run_step_here(name: str, context: Path, result_path: Path) -> int:
    """The ``step`` command: one step in this process; its result (partial while it runs) in ``result_path``."""
    from banet.atomic import write_text

    ctx = json.loads(context.read_text())
    scale = DRY_RUN if ctx["dry_run"] else FULL

    def emit(data: Any, status: str = "running", error: str | None = None) -> None:
        record = {"status": status, "data": data, **({"error": error} if error else {})}
        write_text(result_path, json.dumps(record, indent=2, default=str) + "\n")

    last: list[Any] = [None]

    def partial(data: Any) -> None:
        last[0] = data
        emit(data)

    try:
        data = STEP_FUNCTIONS[name](ctx, scale, _device(ctx["device"]), partial)
    except Exception as err:  # noqa: BLE001 - recorded by the parent; the next step runs
        log.exception("step %s failed", name)
        emit(last[0], "failed", f"{type(err).__name__}: {err}")
        return 1
    emit(data, "ok")
    return 0


# --- the parent: one process per step, a budget each ----------------------------------------------
def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_step(name: str, *, context: Path, result_path: Path, log_path: Path, budget_s: float) -> dict:
    """Run step ``name`` in a child process for at most ``budget_s`` seconds.

    Returns ``{"status": ok|failed|timeout, "seconds", "budget_s", "data", "error", "log_tail"}``;
    ``data`` is what the step returned, or what it had reported when it failed or was stopped.
    """
    result_path.unlink(missing_ok=True)
    root = str(Path(__file__).resolve().parents[1])  # this checkout's packages, wherever the cwd is
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "references.gpu_check", "step", name, "--context", str(context),
           "--result", str(result_path)]
    started = time.monotonic()
    with open(log_path, "w") as log_file:
        # a session of its own: on timeout the whole group goes (torch.compile's worker processes too)
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=budget_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
            timed_out = True
    seconds = round(time.monotonic() - started, 1)
    try:
        record = json.loads(result_path.read_text())
    except (OSError, json.JSONDecodeError):
        record = {}
    outcome = {"status": "ok" if rc == 0 and record.get("status") == "ok" and not timed_out else "failed",
               "seconds": seconds, "budget_s": budget_s, "data": record.get("data"), "log": str(log_path)}
    if timed_out:
        outcome["status"] = "timeout"
        outcome["error"] = f"stopped at its budget of {budget_s:g} s"
    elif outcome["status"] == "failed":
        outcome["error"] = record.get("error") or f"the step's process exited with code {rc}"
    if outcome["status"] != "ok":
        outcome["log_tail"] = _tail(log_path)
    log.info("step %s: %s in %.1f s (budget %g s)%s", name, outcome["status"], seconds, budget_s,
             f": {outcome['error']}" if "error" in outcome else "")
    return outcome


# --- results ---------------------------------------------------------------------------------------
def _latency_table(rows: list[dict]) -> list[str]:
    lines = ["| backend | batch | p50 ms | images/s | peak MiB | note |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        p50 = f"{r['p50_ms']:.2f}" if r.get("p50_ms") is not None else "-"
        ips = f"{r['throughput']:.1f}" if r.get("throughput") is not None else "-"
        mib = f"{r['peak_memory_mib']:.0f}" if r.get("peak_memory_mib") is not None else "-"
        lines.append(f"| {r['backend']} | {r['batch_size']} | {p50} | {ips} | {mib} | {r.get('skipped') or ''} |")
    return lines + [""]


def _parity_table(rows: list[dict]) -> list[str]:
    lines = ["| backend | gate | mean agreement | worst agreement | max abs logit diff | note |",
             "|---|---|---:|---:|---:|---|"]
    for r in rows:
        def num(key: str) -> str:
            return f"{r[key]:.4f}" if isinstance(r.get(key), (int, float)) else "-"

        gate = "-" if r.get("skipped") else ("pass" if r.get("passed") else "FAIL")
        lines.append(f"| {r['backend']} | {gate} | {num('mean_agreement')} | {num('worst_agreement')} | "
                     f"{num('max_abs_logit_diff')} | {r.get('skipped') or '; '.join(r.get('reasons') or [])} |")
    return lines + [""]


def markdown(result: dict) -> str:
    m = result["machine"]
    gpu = m.get("gpu") or f"none ({m.get('reason', 'no GPU')})"
    lines = [
        "# BA-Net GPU check: every CUDA path, a time budget per step",
        "",
        f"- command: `{result['command']}`",
        f"- date (UTC): {result['date']}; mode: "
        f"{'dry run (CPU rehearsal, not a measurement)' if result['dry_run'] else 'full'}",
        f"- machine: {m['cpu']}, {m['cores']} cores; GPU: {gpu}" + (f", driver {m['driver']}" if m.get("driver") else ""),
        "- libraries: " + ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v),
        f"- data: `{result['data']}`",
        "",
        "| step | status | seconds | budget s | error |", "|---|---|---:|---:|---|",
    ]
    for name, step in result["steps"].items():
        lines.append(f"| {name} | {step['status']} | {step.get('seconds', '-')} | {step.get('budget_s', '-'):g} | "
                     f"{step.get('error', '')} |")
    lines.append("")
    env = result.get("environment")
    if env:
        lines += ["## Environment", ""]
        lines += [f"- {k}: {v}" for k, v in env.items() if k not in ("modules",)]
        lines += ["- importable: " + ", ".join(f"{k} ({v})" if v else f"{k}: no" for k, v in env.get("modules", {}).items()),
                  ""]
    rows = result.get("throughput")
    if rows:
        lines += ["## Training throughput (official recipe's model, loss and augmentation)", "",
                  f"Goal: >= {GOAL_IMAGES_PER_S:,.0f} images/s on an H100/H200.", "",
                  "| mode | batch | images/s | warmup s | peak MiB | note |", "|---|---:|---:|---:|---:|---|"]
        for r in rows:
            lines.append(f"| {r['mode']} | {r['batch_size']} | {r.get('images_per_s', '-')} | {r.get('warmup_s', '-')} | "
                         f"{r.get('peak_memory_mib', '-')} | {r.get('skipped', '')} |")
        lines.append("")
    train = result.get("train")
    if train:
        lines += ["## Official recipe from scratch (the issue-21 run)", "", f"- plan: {train.get('plan')}"]
        if "test_JA" in train:
            met = "met" if train["goal"]["met"] else "NOT met"
            lines += [
                f"- {train['epochs']} epochs ({train['steps']} steps, {train['mode']}) in {train['fit_seconds']} s "
                f"(training steps {train['train_seconds']} s; median {train['median_train_images_per_s']} images/s)",
                f"- test split ({train['test']['images']} images, mean over images): JA {train['test_JA']:.4f}, "
                f"DI {train['test']['mean']['DI']:.4f}; best val JA {train['best_val_JA']:.4f}",
                f"- goal test JA >= {GOAL_JA} within {GOAL_MINUTES:g} minutes: **{met}**",
                f"- val JA per epoch: {', '.join(f'{v:.3f}' for v in train['val_JA'])}",
            ]
        lines.append("")
    bench = result.get("bench")
    if bench:
        lines += ["## PyTorch inference rows (bench.backends.torch_variants)", "", f"Model: {bench.get('model')}.", ""]
        lines += _latency_table(bench.get("rows") or [])
    parity = result.get("parity")
    if parity:
        lines += ["## Parity against FP32 PyTorch on the CPU (the export's mask gates)", "",
                  f"Model: {parity.get('model')}; {parity.get('images', '-')} test images.", ""]
        if parity.get("export_gates"):
            lines += ["banet-export gates: " + ", ".join(f"{g['name']} {g['gate']}" for g in parity["export_gates"]), ""]
        lines += _parity_table(parity.get("rows") or [])
    trt = result.get("tensorrt")
    if trt:
        lines += ["## TensorRT and Torch-TensorRT", ""]
        for r in trt.get("rows") or []:
            if r["status"] == "measured":
                lines += [f"### {r['backend']}", ""] + _latency_table(r["latency"]) + _parity_table([r["parity"]])
            else:
                lines.append(f"- {r['backend']}: {r['status']}: {r['reason']}")
        lines.append("")
    if result.get("errors"):
        lines += ["## Errors", ""] + [f"- {k}: {v}" for k, v in result["errors"].items()] + [""]
    return "\n".join(lines)


def _write(result: dict, files) -> None:
    """(Re)write the results through the one results writer, claimed at the start (bench.results.ResultFiles)."""
    files.write(result, markdown)


def _goals(result: dict) -> dict:
    rows = result.get("throughput") or []
    peak = max((r.get("images_per_s", 0) for r in rows), default=None)
    return {"training_images_per_s": {"goal": GOAL_IMAGES_PER_S, "best": peak,
                                      "met": peak is not None and peak >= GOAL_IMAGES_PER_S},
            "test_JA_within_10_minutes": (result.get("train") or {}).get("goal")}


def run(args: argparse.Namespace) -> int:
    from bench import options

    device = "cpu" if args.dry_run else args.device
    if not args.dry_run and _device(device).type != "cuda":
        print("gpu_check: no CUDA device here; --dry-run rehearses the check on the CPU", file=sys.stderr)
        return 2
    steps = [s for s in STEPS if s in args.steps]
    budgets = {s: (DRY_RUN_BUDGET_S if args.dry_run else BUDGET_S[s]) for s in steps}
    budgets.update({s: b for s, b in args.budget.items() if s in budgets})
    if args.dry_run and not args.name:
        args.tag = f"{args.tag}-dry-run"
    files = options.claim(args, prog=PROG, argv=args.argv)
    if files is None:
        return 2
    machine = files.machine
    logs = args.out / f"{files.stem}_logs"
    logs.mkdir(parents=True, exist_ok=True)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = str(Path(args.data).resolve())
    checkpoint = str(Path(args.checkpoint).resolve()) if args.checkpoint else None
    ctx = {"data": data, "work": str(work), "dry_run": args.dry_run, "device": device, "seed": args.seed,
           "train_modes": args.train_modes, "train_minutes": args.train_minutes, "train_epochs": args.train_epochs,
           "checkpoint": checkpoint, "checkpoint_source": f"--checkpoint {checkpoint}" if checkpoint else None,
           "throughput": None}
    result: dict = {"date": machine["date"],
                    "machine": machine, "dry_run": args.dry_run, "data": data,
                    "scale": asdict(DRY_RUN if args.dry_run else FULL), "device": device,
                    "budgets_s": budgets, "steps": {}, "errors": {}}
    _write(result, files)
    for name in steps:
        context = work / "context.json"
        context.write_text(json.dumps({**ctx, "budget_s": budgets[name]}, indent=2))
        outcome = run_step(name, context=context, result_path=work / f"step_{name}.json",
                           log_path=logs / f"{name}.log", budget_s=budgets[name])
        data_of_step = outcome.pop("data")
        result["steps"][name] = outcome
        if data_of_step is not None:
            result[name] = data_of_step
        if outcome["status"] != "ok":
            result["errors"][name] = outcome["error"]
        if name == "throughput" and data_of_step:
            ctx["throughput"] = data_of_step
        if name == "train" and outcome["status"] == "ok" and not checkpoint:
            ctx["checkpoint"] = data_of_step["checkpoint"]
            ctx["checkpoint_source"] = f"the train step's best checkpoint ({data_of_step['epochs']} epochs)"
        result["goals"] = _goals(result)
        _write(result, files)
    print("\n".join(str(p) for p in list(files.paths.values()) + [logs]))
    return 1 if result["errors"] else 0


def _budget(text: str) -> dict[str, float]:
    budgets = {}
    for part in filter(None, text.split(",")):
        name, _, seconds = part.partition("=")
        if name not in STEPS:
            raise argparse.ArgumentTypeError(f"unknown step {name!r} (steps: {', '.join(STEPS)})")
        try:
            budgets[name] = float(seconds)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--budget {part}: seconds must be a number") from None
        if budgets[name] <= 0:
            raise argparse.ArgumentTypeError(f"--budget {part}: seconds must be > 0")
    return budgets


def build_parser() -> argparse.ArgumentParser:
    from bench import options

    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare-data", help="write a resized copy of a dataset (shorter side --size)")
    prep.add_argument("--data", required=True, type=Path)
    prep.add_argument("--out", required=True, type=Path)
    prep.add_argument("--size", type=int, default=256)
    prep.add_argument("--quality", type=int, default=95)
    prep.add_argument("--force", action="store_true")
    r = sub.add_parser("run", help="run the check's steps and write the results file")
    options.add_data(r, split=None, required=True, help="dataset folder (the prepare-data copy)")
    options.add_output(r, name="optional", tag="gpu_check")  # the step logs go beside: OUT/<stem>_logs/
    r.add_argument("--work", type=Path, default=Path("/tmp/banet_gpu_check_run"),
                   help="scratch folder of the steps (train/, export-onnx/, export-tensorrt/ are replaced)")
    r.add_argument("--steps", type=lambda s: [x for x in s.split(",") if x], default=list(STEPS),
                   help=f"comma-separated subset of {','.join(STEPS)}")
    r.add_argument("--budget", type=_budget, default={},
                   help="seconds per step, e.g. train=570,bench=60 (default: "
                        + ", ".join(f"{k} {v:g}" for k, v in BUDGET_S.items()) + f"; dry run {DRY_RUN_BUDGET_S:g} each)")
    options.add_checkpoint(r, help="model of the bench, parity and tensorrt steps (default: the train step's "
                                   "best, else seeded random weights)")
    r.add_argument("--train-modes", type=lambda s: [x for x in s.split(",") if x], default=["eager", "compile"],
                   help=f"throughput modes, from {','.join(TRAIN_MODES)} (default eager,compile)")
    r.add_argument("--train-minutes", type=float, help="training time of the train step (default: 80 %% of its budget)")
    r.add_argument("--train-epochs", type=int, help="epochs of the train step (default: planned from the speed)")
    r.add_argument("--device", default="auto")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--dry-run", "--tiny", dest="dry_run", action="store_true",
                   help="the CPU rehearsal: tiny model, 64 px, a few steps, on the CPU, every step in its process")
    step = sub.add_parser("step", help=argparse.SUPPRESS)  # one step, in the process `run` starts for it
    step.add_argument("name", choices=STEPS)
    step.add_argument("--context", required=True, type=Path)
    step.add_argument("--result", required=True, type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "step":
        return run_step_here(args.name, args.context, args.result)
    if args.command == "prepare-data":
        try:
            info = prepare_data(args.data, args.out, size=args.size, quality=args.quality, force=args.force)
        except (FileExistsError, ValueError, OSError) as err:
            print(f"gpu_check: {err}", file=sys.stderr)
            return 2
        print(f"wrote {info['pairs']} pairs, {info['megabytes']} MB, to {info['out']}")
        return 0
    unknown = [s for s in args.steps if s not in STEPS] + [m for m in args.train_modes if m not in TRAIN_MODES]
    if unknown:
        print(f"gpu_check: unknown step or mode {unknown}", file=sys.stderr)
        return 2
    args.argv = argv
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
