"""Training: one frozen :class:`TrainConfig`, ``train_one_epoch`` / ``validate`` / ``fit``.

Recipes (:data:`RECIPES`) name a set of defaults; every field can be overridden.
- ``official`` (the default): the authors' published ``experiment/main.py``: Adam, lr 1e-4, poly
  decay (power 0.9) per iteration, 150 epochs, batch 8, ResNet-50, cross-entropy + Dice on the
  main output, SyncBatchNorm under DDP, ``align_corners=True``, their augmentation.
- ``paper``: the paper's text: SGD, momentum 0.9, lr 1e-4, poly decay (power 0.9) per iteration,
  200 epochs, batch 8, ResNet-101, BCE deep supervision, the paper's augmentation.
Both start from an ImageNet-pretrained encoder in their sources; without ``imagenet_weights`` the
run warns. docs/training.md lists every deviation and what is known about training from scratch.

A run lives in one folder: ``train_config.json``, ``last.pt`` (every ``save_every`` epochs and
at the end), ``best.pt`` (best validation JA), ``history.json`` and ``curves.png``. Checkpoints
carry the model config, the resolved train config, the metrics history, the epoch and step, and
the optimizer, scheduler, scaler and RNG states, so ``resume`` continues where ``last.pt`` left
off. A run never replaces
another run's files unless ``force``.

Multi-GPU: launch with ``torchrun --nproc_per_node N``; the environment variables torchrun sets
select DistributedDataParallel (NCCL on CUDA, gloo on the CPU). ``batch_size`` is the global
batch, split evenly across processes. Rank 0 validates and writes the files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from banet.atomic import write_text
from banet.data.augment import AUTHORS, PAPER, AugmentConfig, prepare_batch, random_affine
from banet.spec import IMAGE_SIZE

log = logging.getLogger(__name__)

RECIPES: dict[str, dict[str, Any]] = {
    "official": {"optimizer": "adam", "lr": 1e-4, "momentum": 0.9, "weight_decay": 0.0,
                 "schedule": "poly", "poly_power": 0.9, "batch_size": 8, "epochs": 150, "preset": "resnet50",
                 "dice_weight": 1.0, "sync_bn": True, "align_corners": True, "augment": "official"},
    "paper": {"optimizer": "sgd", "lr": 1e-4, "momentum": 0.9, "weight_decay": 0.0,
              "schedule": "poly", "poly_power": 0.9, "batch_size": 8, "epochs": 200, "preset": "paper",
              "dice_weight": 0.0, "sync_bn": True, "align_corners": False, "augment": "paper"},
}
"""Named defaults: ``official`` is the authors' code (experiment/main.py), ``paper`` the paper's
text. Where the two sources are silent the choice and its reason are in docs/training.md."""
DEFAULT_RECIPE = "official"
AUGMENTATIONS = {"paper": PAPER, "official": AUTHORS, "flips": AugmentConfig.flips_only(),
                 "none": AugmentConfig.none()}
RUN_FILES = ("train_config.json", "last.pt", "best.pt", "history.json", "curves.png")


class TrainError(RuntimeError):
    """A run cannot start (existing run folder, bad option, incompatible resume)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run used; written next to its checkpoints. The field defaults are the
    default recipe's (``official``; a test checks that they equal :data:`RECIPES` ``["official"]``)."""

    data: str
    out: str
    recipe: str = DEFAULT_RECIPE
    split_file: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    size: int = IMAGE_SIZE
    arch: str = "banet"
    preset: str = "resnet50"
    backbone: str | None = None
    ablation: str = "full"
    imagenet_weights: str | None = None
    optimizer: str = "adam"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "poly"
    poly_power: float = 0.9
    batch_size: int = 8
    epochs: int = 150
    max_steps: int | None = None
    patience: int | None = None
    deep_supervision: float = 1.0
    dice_weight: float = 1.0
    align_corners: bool = True
    sync_bn: bool = True
    augment: str = "official"
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    workers: int = 2
    val_batch_size: int = 16
    save_every: int = 1
    skip_unpaired: bool = False
    skip_broken: bool = False
    experts: str = "majority"

    def __post_init__(self) -> None:
        choices = {"recipe": RECIPES, "optimizer": ("adam", "sgd"), "schedule": ("constant", "poly"),
                   "augment": AUGMENTATIONS, "amp": ("auto", "bf16", "fp16", "none")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {sorted(allowed)}, got {getattr(self, name)!r}")
        for name in ("size", "batch_size", "epochs", "val_batch_size", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not (self.dice_weight >= 0 and math.isfinite(self.dice_weight)):
            raise ValueError(f"dice_weight must be >= 0, got {self.dice_weight}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 epoch, got {self.patience}")
        from banet.data.annotations import check_experts

        check_experts(self.experts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown train config keys: {sorted(unknown)}")
        return cls(**data)


def resolve_config(data: str, out: str, recipe: str = DEFAULT_RECIPE, **overrides: Any) -> TrainConfig:
    """The recipe's defaults, then every override that is not None. For an ``arch`` other than BA-Net
    the recipe's ``preset`` (a BA-Net backbone) gives way to that network's ``paper`` preset."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
    given = {k: v for k, v in overrides.items() if v is not None}
    values = {**RECIPES[recipe], **given}
    if values.get("arch", "banet") != "banet" and "preset" not in given:
        values["preset"] = "paper"  # a recipe's preset names a BA-Net; the other networks default to their paper's
    return TrainConfig(data=str(data), out=str(out), recipe=recipe, **values)


def build_model_config(config: TrainConfig):
    """The model config a train config asks for: ``arch``'s preset with the run's ``align_corners``,
    ``backbone`` (architectures with a ResNet encoder) and ``ablation`` (BA-Net's only)."""
    from banet.model import registry

    model_config = replace(registry.preset(config.arch, config.preset), align_corners=config.align_corners)
    if config.backbone is not None:
        if not registry.has_field(config.arch, "backbone"):
            raise ValueError(f"{config.arch} has no ResNet backbone to choose (backbone {config.backbone!r})")
        model_config = replace(model_config, backbone=config.backbone)
    if config.arch == "banet":
        return model_config.with_ablation(config.ablation)
    if config.ablation != "full":
        raise ValueError(f"ablation {config.ablation!r} is BA-Net's (Table IV); {config.arch} has none")
    return model_config


def split_output(out) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """A training-mode output as ``(logits, edge_logits, seg_logits)``: BA-Net's
    :class:`~banet.model.BANetOutput`, or a plain ``(B, 1, H, W)`` logits tensor (every other
    architecture: no side outputs, so only the loss's main terms apply)."""
    if isinstance(out, torch.Tensor):
        return out, [], []
    return out.logits, list(out.edge_logits), list(out.seg_logits)


# --- distributed ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> Dist:
    """Start the process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_kind == "cuda":
        torch.cuda.set_device(local_rank)  # before NCCL starts, so each process owns its GPU
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank)


def _barrier(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


# --- pieces --------------------------------------------------------------------------------------
def select_device(name: str, d: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("device cuda was asked for but torch sees no CUDA GPU")
        return torch.device("cuda", d.local_rank)
    return torch.device(name)


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA by default; none on the CPU unless asked for (``auto`` on the CPU is decided by
    :func:`probe_cpu_precision` in :func:`fit`, since bf16 is fast only on CPUs with AMX / AVX512-BF16)."""
    if config.amp == "none" or (config.amp == "auto" and device.type != "cuda"):
        return None
    if config.amp == "fp16":
        return torch.float16
    return torch.bfloat16


CPU_PROBE_CANDIDATES: dict[str, tuple[torch.dtype | None, bool]] = {
    "fp32": (None, False), "fp32_channels_last": (None, True), "bf16_channels_last": (torch.bfloat16, True)}
"""What the CPU probe times: ``name -> (autocast dtype, channels_last)``."""
CPU_PROBE_MARGIN = 1.10
"""A faster candidate replaces fp32 only when it is at least this much faster (a probe of a few steps is noisy)."""


def probe_cpu_precision(model: torch.nn.Module, loss_fn, batch: tuple[torch.Tensor, torch.Tensor], *,
                        steps: int = 3, candidates: dict[str, tuple[torch.dtype | None, bool]] | None = None,
                        clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Time forward + backward of ``model`` on one batch for each candidate; return the choice and the timings.

    ``batch``: ``(x (B, 3, S, S) float32, y (B, 1, S, S) float32)``. The model's weights are restored after
    the probe (gradients are zeroed; no optimizer step is taken), so training starts from the same state
    whatever the choice. Returns ``{"choice", "autocast", "channels_last", "seconds_per_step": {name: median}}``;
    fp32 is kept unless another candidate is at least :data:`CPU_PROBE_MARGIN` times faster.
    """
    candidates = candidates or CPU_PROBE_CANDIDATES
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}  # BatchNorm running stats move
    was_training = model.training
    model.train()
    x, y = batch
    timings: dict[str, float] = {}
    for name, (dtype, channels_last) in candidates.items():
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model.to(memory_format=fmt)
        xs = x.contiguous(memory_format=fmt)
        times = []
        for i in range(steps + 1):  # the first step warms up (allocations, oneDNN kernel choice)
            t0 = clock()
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                out = model(xs)
            loss, _ = loss_fn(*split_output(out), y)
            loss.backward()
            model.zero_grad(set_to_none=True)
            elapsed = clock() - t0
            if i:
                times.append(elapsed)
        timings[name] = float(np.median(times))
    model.load_state_dict(state)
    model.to(memory_format=torch.contiguous_format)
    model.train(was_training)
    fastest = min(timings, key=timings.__getitem__)
    choice = fastest if "fp32" not in timings or timings[fastest] * CPU_PROBE_MARGIN <= timings["fp32"] else "fp32"
    dtype, channels_last = candidates[choice]
    return {"choice": choice, "autocast": None if dtype is None else str(dtype).removeprefix("torch."),
            "channels_last": channels_last, "steps": steps, "batch": int(x.shape[0]),
            "seconds_per_step": timings}


def warn_if_unpretrained(config: TrainConfig, model_config) -> None:
    """Both recipes start from an ImageNet-pretrained encoder in their sources: say so when a
    run that could load one (width 64) starts from random initialization instead."""
    if config.imagenet_weights is not None or getattr(model_config, "width", None) != 64:
        return  # a pretrained start, a narrow encoder (no ImageNet weights exist), or no ResNet encoder
    source = "the paper" if config.recipe == "paper" else "the authors' code (pretrained=True)"
    log.warning("recipe %r without --imagenet-weights: %s starts from an ImageNet-pretrained encoder; this "
                "run starts from random initialization and need not reach the published scores%s "
                "(docs/training.md)", config.recipe, source,
                "; in the one recorded from-scratch run the paper's SGD recipe reached test JA 0.24"
                if config.recipe == "paper" else "")


def sync_batchnorm(model: torch.nn.Module, config: TrainConfig, device: torch.device,
                   d: Dist) -> tuple[torch.nn.Module, bool]:
    """BatchNorm -> SyncBatchNorm when ``config.sync_bn`` and DDP runs on CUDA (the authors' choice:
    with batch 8 over N GPUs each process alone would see 8 / N images per statistic). PyTorch's
    SyncBatchNorm runs on GPUs only; a CPU (gloo) run keeps per-process BatchNorm and says so."""
    if not config.sync_bn or d.world == 1:
        return model, False
    if device.type != "cuda":
        if d.main:
            log.info("sync_bn: SyncBatchNorm needs CUDA; this %s run keeps per-process BatchNorm", device.type)
        return model, False
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model), True


def build_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(config: TrainConfig, optimizer, total_steps: int):
    """Per-iteration schedule: ``lr * (1 - step / total) ** power`` (poly) or constant."""
    if config.schedule == "poly":
        power = config.poly_power
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: max(0.0, 1.0 - step / max(total_steps, 1)) ** power)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def batch_indices(n: int, batch_size: int, epoch: int, seed: int, d: Dist) -> list[torch.Tensor]:
    """This process's shuffled, full batches of one epoch (same permutation on every rank, each
    rank takes its own slice of every global batch; the last incomplete batch is dropped)."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=gen)
    per_rank = batch_size // d.world
    steps = n // batch_size
    return [order[s * batch_size + d.rank * per_rank: s * batch_size + (d.rank + 1) * per_rank]
            for s in range(steps)]


class NullBar:
    """Stands in for a tqdm bar when nobody watches (library use, ranks other than 0)."""

    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kwargs: Any) -> None: ...
    def close(self) -> None: ...


BarFactory = Callable[..., Any]


def train_one_epoch(model, loss_fn, optimizer, scheduler, scaler, dataset, batches, device, *,
                    augment: AugmentConfig, generator: torch.Generator, autocast: torch.dtype | None,
                    channels_last: bool, bar=None, max_steps: int | None = None, step: int = 0,
                    check_every: int | None = None) -> dict[str, float]:
    """One pass over ``batches`` (index tensors into ``dataset``); returns mean loss parts and steps.

    The loss is read back to the host (a device synchronisation) every ``check_every`` steps, to
    check that it is finite and update ``bar``: every step on the CPU, every 25 on a GPU, where a
    read-back per step would stall the launch queue.
    """
    model.train()
    bar = bar or NullBar()
    check_every = check_every or (1 if device.type == "cpu" else 25)
    totals: dict[str, torch.Tensor] = {}
    done = pending = 0
    aspect = getattr(dataset, "aspect", None)

    def check(parts: dict[str, torch.Tensor]) -> None:
        total = float(parts["total"])
        if not math.isfinite(total):
            raise TrainError(f"loss is {total} at step {step}; lower the learning rate")
        bar.update(pending)
        bar.set_postfix(loss=f"{total:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")

    if max_steps is not None:
        batches = batches[:max(max_steps - step, 0)]
    # The epoch's indices and affine maps go to the device in one copy each, drawn batch by batch
    # in order (the same random numbers as one draw per step): a host-to-device copy from pageable
    # memory inside the loop would wait for the GPU's queue at every step.
    augmenting = augment is not None and augment != AugmentConfig.none()
    thetas = [random_affine(len(idx), augment, generator=generator,
                            aspect=aspect[idx] if aspect is not None else None) for idx in batches] \
        if augmenting else []
    on_device = dataset.images.device
    all_idx = torch.cat(batches).to(on_device) if batches else torch.zeros(0, dtype=torch.long)
    all_theta = torch.cat(thetas).to(device) if thetas else None
    parts: dict[str, torch.Tensor] = {}
    offset = 0
    for idx in batches:
        rows = slice(offset, offset + len(idx))
        offset += len(idx)
        images, masks = dataset.images[all_idx[rows]], dataset.masks[all_idx[rows]]
        images = images.to(device, non_blocking=True)
        masks = masks.to(device, non_blocking=True)
        x, y = prepare_batch(images, masks, augment,
                             theta=all_theta[rows] if all_theta is not None else None)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            out = model(x)
        loss, parts = loss_fn(*split_output(out), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        done += 1
        pending += 1
        for k, v in parts.items():
            totals[k] = totals[k] + v if k in totals else v
        if pending >= check_every:
            check(parts)
            pending = 0
    if pending:
        check(parts)
    means = {k: float(v) / max(done, 1) for k, v in totals.items()}
    if any(not math.isfinite(v) for v in means.values()):  # a step between two checks
        raise TrainError(f"loss is not finite in the steps before step {step}; lower the learning rate")
    return {**means, "steps": done}


@torch.no_grad()
def validate(model, dataset, device, *, batch_size: int = 16, autocast: torch.dtype | None = None,
             channels_last: bool = False) -> dict[str, Any]:
    """Mean-over-images and aggregate AC/DI/JA/SE/SP at the training resolution (masks > 0.5)."""
    from banet.metrics import MetricAccumulator

    net = getattr(model, "module", model)
    was_training = net.training
    net.eval()
    acc = MetricAccumulator()
    for start in range(0, len(dataset), batch_size):
        images = dataset.images[start:start + batch_size].to(device)
        masks = dataset.masks[start:start + batch_size]
        x, _ = prepare_batch(images, masks, None)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            logits = net(x)
        pred = (logits.float() > 0).cpu().numpy()
        for p, m in zip(pred, masks.cpu().numpy()):
            acc.update(p[0], m[0])
    net.train(was_training)
    return acc.compute()


def epochs_without_improvement(history: list[dict[str, Any]]) -> int:
    """Epochs since the best validation JA of ``history`` (0 when the last epoch is the best)."""
    scores = [r["val"]["mean"]["JA"] for r in history if "val" in r]
    if not scores:
        return 0
    best = int(np.argmax(scores))  # the first epoch that reached the best score
    return len(scores) - 1 - best


def _check_run_folder(out: Path, *, resume: bool, force: bool) -> None:
    existing = [out / f for f in RUN_FILES if (out / f).exists()]
    if existing and not (resume or force):
        raise TrainError(f"{out} already holds a run ({', '.join(p.name for p in existing)}); choose a new "
                         f"--out, --resume it, or pass --force to replace it")


def _write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def fit(config: TrainConfig, *, resume: str | Path | None = None, force: bool = False,
        bar_factory: BarFactory | None = None,
        load_progress: Callable[[int, str], Any] | None = None) -> dict[str, Any]:
    """Train as ``config`` says; return ``{"best": path, "last": path, "history": [...]}`` (rank 0).

    ``bar_factory(total=..., desc=...)`` makes a progress bar per epoch (tqdm in the CLI).
    ``resume`` continues from a checkpoint written by this function (weights, optimizer,
    scheduler, scaler, RNG, epoch, history). Raises :class:`TrainError` for an existing run folder
    unless ``resume`` or ``force``.
    """
    from banet.checkpoint import load_checkpoint, save_checkpoint
    from banet.data.dataset import load_split
    from banet.losses import DeepSupervisionLoss
    from banet.model import build

    device = select_device(config.device, Dist(local_rank=int(os.environ.get("LOCAL_RANK", "0"))))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest convolutions
    d = init_distributed(device.type)
    out = Path(config.out)
    if d.main:
        # resuming may write into the checkpoint's own folder, never into another run's
        same_run = resume is not None and Path(resume).resolve().parent == out.resolve()
        _check_run_folder(out, resume=same_run, force=force)
    _barrier(d)
    if config.batch_size % d.world:
        raise TrainError(f"batch_size {config.batch_size} does not split evenly over {d.world} processes")
    torch.manual_seed(config.seed + d.rank)
    np.random.seed(config.seed + d.rank)

    def progress(name: str):
        return load_progress(0, name) if (load_progress and d.main) else None

    def decode(split: str):
        bar = progress(f"decode {split}")
        try:
            return load_split(config.data, split, config.size, split_file=config.split_file,
                              skip_unpaired=config.skip_unpaired, skip_broken=config.skip_broken,
                              workers=config.workers, experts=config.experts, progress=bar.update if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()

    train_ds, val_ds = decode(config.train_split), decode(config.val_split)
    if len(train_ds) < config.batch_size:
        raise TrainError(f"{len(train_ds)} training images is fewer than one batch of {config.batch_size}")
    if device.type == "cuda":  # uint8 cache on the GPU (800 images at 256 px: 160 MB): no host copies per step
        for ds in (train_ds, val_ds):
            ds.images, ds.masks = ds.images.to(device), ds.masks.to(device)
    log.info("train %d images, val %d images, %dx%d px, device %s, %d process(es)",
             len(train_ds), len(val_ds), config.size, config.size, device, d.world)

    model_config = build_model_config(config)
    model = build(config.arch, model_config, imagenet_weights=config.imagenet_weights).to(device)
    if d.main:
        warn_if_unpretrained(config, model_config)
    model, sync_bn_active = sync_batchnorm(model, config, device, d)
    loss_fn = DeepSupervisionLoss(stage_weights=(config.deep_supervision,) * 4, dice_weight=config.dice_weight)
    use_channels_last = config.channels_last and device.type == "cuda"
    autocast = amp_dtype(config, device)
    precision: dict[str, Any] | None = None
    resume_state = load_checkpoint(resume) if resume is not None else None  # read once: precision, then weights
    if device.type == "cpu" and config.amp == "auto":
        # bf16 autocast + channels_last is 1.7-2.6x faster than fp32 on a Xeon with AMX and slower on an
        # AVX2-only EPYC (docs/training.md): measure on this machine rather than guess. A resumed run keeps
        # the choice it started with, so one run never mixes precisions.
        stored = resume_state.get("precision") if resume_state is not None else None
        if stored is None and d.main:
            idx = torch.arange(min(config.batch_size, len(train_ds)))
            probe_batch = prepare_batch(train_ds.images[idx], train_ds.masks[idx], None)
            stored = probe_cpu_precision(model, loss_fn, probe_batch)
            log.info("CPU precision probe: %s (seconds per step %s)", stored["choice"],
                     {k: round(v, 4) for k, v in stored["seconds_per_step"].items()})
        precision = _from_rank0(stored, d)  # every DDP process trains in the precision rank 0 measured
        autocast = None if precision["autocast"] is None else getattr(torch, precision["autocast"])
        use_channels_last = bool(precision["channels_last"]) and config.channels_last
    if use_channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, model.parameters())
    steps_per_epoch = len(train_ds) // config.batch_size
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    scheduler = build_scheduler(config, optimizer, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast == torch.float16)
    generator = torch.Generator().manual_seed(config.seed * 7919 + d.rank)

    history: list[dict[str, Any]] = []
    start_epoch, step, best_ja = 0, 0, -1.0
    if resume is not None:
        state = resume_state
        if state["arch"] != config.arch or state.get("model_config") != model_config.to_dict():
            raise TrainError(f"{resume}: its model ({state['arch']}, {state.get('model_config')}) differs from "
                             f"this run's ({config.arch}, {model_config})")
        if "optimizer" not in state:
            raise TrainError(f"{resume} holds no optimizer state (not written by banet-train); cannot resume")
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if d.rank < len(state.get("generator_states", [])):
            generator.set_state(state["generator_states"][d.rank])
        history = list(state["history"])
        start_epoch, step, best_ja = int(state["epoch"]), int(state["step"]), float(state["best_ja"])
        log.info("resumed from %s at epoch %d (step %d)", resume, start_epoch, step)

    net = model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    run_model = torch.compile(model) if config.compile else model
    augment = AUGMENTATIONS[config.augment]

    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "train_config.json", {**config.to_dict(), "model_config": model_config.to_dict(),
                                                "world_size": d.world, "sync_bn_active": sync_bn_active,
                                                "precision": precision or {
                                                    "choice": "configured",
                                                    "autocast": None if autocast is None
                                                    else str(autocast).removeprefix("torch."),
                                                    "channels_last": use_channels_last}})
    paths = {"best": out / "best.pt", "last": out / "last.pt"}
    if d.main and resume is not None and not paths["best"].exists():
        # resumed into a new folder: the best so far is the source run's; without it, best.pt would
        # only appear once a new epoch beat the carried-over best_ja (maybe never)
        source_best = Path(resume).parent / "best.pt"
        if source_best.is_file():
            shutil.copyfile(source_best, paths["best"])
    stopped = _should_stop(history, config.patience, d)  # a resumed run that had already stopped early
    for epoch in range(start_epoch, config.epochs):
        if step >= total_steps or stopped:
            break
        batches = batch_indices(len(train_ds), config.batch_size, epoch, config.seed, d)
        bar = bar_factory(total=min(len(batches), total_steps - step), desc=f"epoch {epoch + 1}/{config.epochs}") \
            if (bar_factory and d.main) else NullBar()
        t0 = time.perf_counter()
        parts = train_one_epoch(run_model, loss_fn, optimizer, scheduler, scaler, train_ds, batches, device,
                                augment=augment, generator=generator, autocast=autocast,
                                channels_last=use_channels_last, bar=bar, max_steps=total_steps, step=step)
        train_s = time.perf_counter() - t0
        steps_done = parts.pop("steps")  # fewer than len(batches) when max_steps ends the epoch early
        step += steps_done
        bar.close()
        record: dict[str, Any] = {"epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
                                  "loss": parts, "train_seconds": train_s,
                                  "train_images_per_s": (steps_done * config.batch_size) / max(train_s, 1e-9)}
        if d.main:
            val = validate(net, val_ds, device, batch_size=config.val_batch_size, autocast=autocast,
                           channels_last=use_channels_last)
            record["val"] = val
            record["epoch_seconds"] = time.perf_counter() - t0  # training + validation
            ja = val["mean"]["JA"]
            history.append(record)
            log.info("epoch %d: loss %.4f val JA %.4f DI %.4f", epoch + 1, parts.get("total", float("nan")),
                     ja, val["mean"]["DI"])
            stopped = _should_stop(history, config.patience, d)
            if stopped:
                log.info("early stop after epoch %d: val JA has not improved for %d epochs", epoch + 1,
                         config.patience)
            extra = {"train_config": config.to_dict(), "history": history, "epoch": epoch + 1, "step": step,
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "scaler": scaler.state_dict(), "best_ja": max(best_ja, ja),
                     "generator_states": _gather_generator_states(generator, d),
                     "val_metrics": val, "precision": precision, "stopped_early": stopped}
            if ja > best_ja:
                best_ja = ja
                save_checkpoint(paths["best"], net, overwrite=True, **extra)
            final = epoch + 1 == config.epochs or step >= total_steps or stopped
            _write_json(out / "history.json", history)
            if final or (epoch + 1) % config.save_every == 0:
                save_checkpoint(paths["last"], net, overwrite=True, **extra)
                try:
                    from banet.plots import plot_history

                    plot_history(history, out / "curves.png")
                except ImportError as err:  # matplotlib is optional for the library
                    log.warning("no training-curve plot: %s", err)
        else:  # the same collectives in the same order as rank 0: the early-stop broadcast, then the RNG gather
            history.append(record)
            stopped = _should_stop(history, config.patience, d)
            _gather_generator_states(generator, d)
        _barrier(d)
    if d.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return {**{k: str(v) for k, v in paths.items()}, "history": history, "rank": d.rank}


def _from_rank0(value: Any, d: Dist) -> Any:
    """Rank 0's ``value`` on every rank (collective in DDP)."""
    if d.world == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _should_stop(history: list[dict[str, Any]], patience: int | None, d: Dist) -> bool:
    """Early stopping: rank 0 (the only one that validates) decides, every rank follows (collective in DDP)."""
    stop = patience is not None and d.main and epochs_without_improvement(history) >= patience
    if d.world == 1:
        return stop
    import torch.distributed as dist

    flag = [stop]
    dist.broadcast_object_list(flag, src=0)
    return bool(flag[0])


def _gather_generator_states(generator: torch.Generator, d: Dist) -> list[torch.Tensor]:
    """Every rank's augmentation RNG state (collective in DDP: all ranks must call it)."""
    state = generator.get_state()
    if d.world == 1:
        return [state]
    import torch.distributed as dist

    gathered: list[Any] = [None] * d.world
    dist.all_gather_object(gathered, state)
    return gathered
