"""The prepared GPU check: the ``official`` recipe on Kvasir-SEG at 256 px, training speed, PyTorch rows.

NOT RUN ON A GPU YET: no GPU was lent to the issue that wrote it (issue 14). Its CPU mode
(``--tiny``) runs in ``tests/bench/test_gpu_check.py``; the CUDA paths (bf16 autocast,
channels_last, torch.compile, CUDA graphs, SyncBatchNorm is not involved: one GPU) are written to
be ready, not verified.

    # here: a 256 px copy of Kvasir-SEG (about 25 MB) in the git-ignored devdata/, to carry along
    python -m bench.gpu_check prepare-data --data ../shared/data/kvasir-seg --out devdata/kvasir-seg-256
    # on the GPU machine (carry devdata/kvasir-seg-256), all steps, results into $OUT:
    python -m bench.gpu_check run --data devdata/kvasir-seg-256 --out $OUT
    # the CPU mode (a tiny model, a few steps; what the test runs)
    python -m bench.gpu_check run --data DATA --out OUT --tiny

Steps (``--steps``, in this order):

- ``throughput``: training images/s of the official recipe's model and loss (ResNet-50, CE +
  Dice, deep supervision, the authors' augmentation on the GPU, bf16 autocast, channels_last):
  eager, ``torch.compile`` and ``torch.compile(mode="reduce-overhead")`` (CUDA graphs), at the
  recipe's batch 8 and at batch 64. Goal: >= 1,000 images/s on an H100/H200.
- ``train``: :func:`banet.train.fit` with the ``official`` recipe from scratch (no ImageNet
  weights), ``torch.compile`` when its row worked; the epoch count is the recipe's 150, cut when
  the measured speed says 150 would not fit ``--train-minutes``; then :func:`banet.evaluate.evaluate`
  on the test split. Goal: test JA >= 0.80 within 10 minutes.
- ``bench``: the bench's PyTorch rows (:func:`bench.backends.torch_variants`: FP32/FP16/BF16
  eager, channels_last, CUDA graph, torch.compile) at batch 1 and 32, on the trained model.

Writes ``OUT/<date>_<machine>_gpu_check.json`` and ``.md`` (command, machine and GPU, date, every
number), rewritten after each step, so a run stopped by a time limit keeps the steps it finished.
Refuses to replace them without ``--force``. The data copy is scored at its own (256 px short
side) resolution, not at the original images' sizes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("bench.gpu_check")

STEPS = ("throughput", "train", "bench")
TRAIN_MODES = ("eager", "compile", "cudagraphs")
GOAL_JA, GOAL_MINUTES, GOAL_IMAGES_PER_S = 0.80, 10.0, 1000.0


@dataclass(frozen=True)
class Scale:
    """How big each step is: the real check on a GPU, or the CPU mode."""

    preset: str
    size: int
    train_batch_sizes: tuple[int, ...]
    throughput_warmup: int
    throughput_steps: int
    bench_batch_sizes: tuple[int, ...]
    bench_warmup: int
    bench_iters: int
    pool_images: int
    workers: int
    max_steps: int | None


FULL = Scale(preset="resnet50", size=256, train_batch_sizes=(8, 64), throughput_warmup=15, throughput_steps=40,
             bench_batch_sizes=(1, 32), bench_warmup=10, bench_iters=50, pool_images=64, workers=8, max_steps=None)
TINY = Scale(preset="tiny", size=64, train_batch_sizes=(2,), throughput_warmup=1, throughput_steps=2,
             bench_batch_sizes=(1, 2), bench_warmup=1, bench_iters=2, pool_images=4, workers=1, max_steps=2)


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
        f"Derived from {src.resolve()} by `python -m bench.gpu_check prepare-data` (shorter side {size} px, "
        f"JPEG quality {quality}, masks nearest-resized PNG). Same terms as the source dataset.\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"out": str(out), "pairs": len(pairs), "megabytes": round(total / 2**20, 1)}


# --- steps -----------------------------------------------------------------------------------------
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


def run_bench_rows(*, data: str, checkpoint: str | None, scale: Scale, device) -> list[dict]:
    """The bench's PyTorch rows (``torch_variants``) at ``scale.bench_batch_sizes``."""
    from banet.checkpoint import model_from_checkpoint
    from banet.model import build_model
    from banet.train import build_model_config, resolve_config
    from bench.backends import TorchBackend, torch_variants
    from bench.inputs import load_pool
    from bench.latency import measure_latency

    if checkpoint and Path(checkpoint).is_file():
        model, _ = model_from_checkpoint(checkpoint)
    else:
        model = build_model(build_model_config(resolve_config(data, "-", "official", preset=scale.preset))).eval()
    pool = load_pool(data, split="test", limit=scale.pool_images, size=scale.size)
    rows = []
    for variant in torch_variants(device.type):
        backend = TorchBackend(model, variant)
        try:
            rows += [r.to_dict() for r in measure_latency(backend, pool, scale.bench_batch_sizes,
                                                          warmup=scale.bench_warmup, iters=scale.bench_iters)]
        finally:
            backend.close()
    return rows


# --- results ---------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    m = result["machine"]
    gpu = m.get("gpu") or f"none ({m.get('reason', 'no GPU')})"
    lines = [
        "# BA-Net GPU check: official recipe, training speed, PyTorch rows",
        "",
        f"- command: `{result['command']}`",
        f"- date (UTC): {result['date']}; mode: {'tiny (CPU smoke, not a measurement)' if result['tiny'] else 'full'}",
        f"- machine: {m['cpu']}, {m['cores']} cores; GPU: {gpu}" + (f", driver {m['driver']}" if m.get("driver") else ""),
        "- libraries: " + ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v),
        f"- data: `{result['data']}`",
        "",
    ]
    rows = result.get("throughput")
    if rows is not None:
        lines += ["## Training throughput (official recipe's model, loss and augmentation)", "",
                  f"Goal: >= {GOAL_IMAGES_PER_S:,.0f} images/s on an H100/H200.", "",
                  "| mode | batch | images/s | warmup s | peak MiB | note |", "|---|---:|---:|---:|---:|---|"]
        for r in rows:
            lines.append(f"| {r['mode']} | {r['batch_size']} | {r.get('images_per_s', '-')} | {r.get('warmup_s', '-')} | "
                         f"{r.get('peak_memory_mib', '-')} | {r.get('skipped', '')} |")
        lines.append("")
    train = result.get("train")
    if train is not None:
        lines += ["## Official recipe from scratch", ""]
        if "skipped" in train:
            lines += [f"Not run: {train['skipped']}", ""]
        else:
            met = "met" if train["goal"]["met"] else "NOT met"
            lines += [
                f"- plan: {train['plan']}",
                f"- {train['epochs']} epochs ({train['steps']} steps, {train['mode']}) in {train['fit_seconds']} s "
                f"(training steps {train['train_seconds']} s; median {train['median_train_images_per_s']} images/s)",
                f"- test split ({train['test']['images']} images, mean over images): JA {train['test_JA']:.4f}, "
                f"DI {train['test']['mean']['DI']:.4f}; best val JA {train['best_val_JA']:.4f}",
                f"- goal test JA >= {GOAL_JA} within {GOAL_MINUTES:g} minutes: **{met}**",
                f"- val JA per epoch: {', '.join(f'{v:.3f}' for v in train['val_JA'])}",
                "",
            ]
    bench = result.get("bench")
    if bench is not None:
        lines += ["## PyTorch inference rows (bench.backends.torch_variants)", "",
                  "| backend | batch | p50 ms | images/s | peak MiB | note |", "|---|---:|---:|---:|---:|---|"]
        for r in bench:
            p50 = f"{r['p50_ms']:.2f}" if r.get("p50_ms") is not None else "-"
            ips = f"{r['throughput']:.1f}" if r.get("throughput") is not None else "-"
            mib = f"{r['peak_memory_mib']:.0f}" if r.get("peak_memory_mib") is not None else "-"
            lines.append(f"| {r['backend']} | {r['batch_size']} | {p50} | {ips} | {mib} | {r.get('skipped') or ''} |")
        lines.append("")
    if result.get("errors"):
        lines += ["## Errors", ""] + [f"- {k}: {v}" for k, v in result["errors"].items()] + [""]
    return "\n".join(lines)


def _write(result: dict, paths: dict[str, Path]) -> None:
    from banet.atomic import write_text

    write_text(paths["json"], json.dumps(result, indent=2, default=str) + "\n")
    write_text(paths["md"], markdown(result))


def run(args: argparse.Namespace) -> int:
    from banet.data.dataset import load_split
    from bench.machine import machine_info
    from bench.report import result_stem

    device = _device(args.device)
    if device.type != "cuda" and not args.tiny:
        print("gpu_check: no CUDA device here; --tiny runs the CPU mode", file=sys.stderr)
        return 2
    scale = TINY if args.tiny else FULL
    steps = [s for s in STEPS if s in args.steps]
    machine = machine_info()
    stem = args.tag or result_stem(machine, "gpu_check" + ("-tiny" if args.tiny else ""))
    paths = {"json": args.out / f"{stem}.json", "md": args.out / f"{stem}.md"}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not args.force:
        print(f"gpu_check: {existing[0]} exists; pass --force to replace it", file=sys.stderr)
        return 2
    data = str(Path(args.data).resolve())
    result: dict = {"command": "python -m bench.gpu_check " + shlex.join(args.argv), "date": machine["date"],
                    "machine": machine, "tiny": args.tiny, "data": data, "scale": asdict(scale),
                    "device": str(device), "errors": {}}
    _write(result, paths)
    if "throughput" in steps:
        train_ds = load_split(data, "train", scale.size, workers=scale.workers)
        if device.type == "cuda":
            train_ds.images, train_ds.masks = train_ds.images.to(device), train_ds.masks.to(device)
        result["throughput"] = []
        for batch_size in scale.train_batch_sizes:
            for mode in args.train_modes:
                result["throughput"].append(measure_training(train_ds, data=data, mode=mode, batch_size=batch_size,
                                                             scale=scale, device=device))
                _write(result, paths)
        del train_ds
    if "train" in steps:
        from banet.data.pairs import find_pairs
        from banet.train import RECIPES

        recipe = RECIPES["official"]
        epochs, mode, plan = plan_epochs(result.get("throughput", []), minutes=args.train_minutes,
                                         train_images=len(find_pairs(data, "train")),
                                         batch_size=recipe["batch_size"], recipe_epochs=recipe["epochs"])
        if args.train_epochs:
            epochs, plan = args.train_epochs, f"--train-epochs {args.train_epochs}"
        if args.tiny:
            epochs, plan = 1, f"tiny: 1 epoch, {scale.max_steps} steps"
        try:
            result["train"] = {"plan": plan, **run_training(data=data, work=args.work, scale=scale, device=device,
                                                            epochs=epochs, mode=mode, seed=args.seed)}
        except Exception as err:  # noqa: BLE001 - keep the other steps' results
            log.exception("training failed")
            result["train"] = {"plan": plan, "skipped": f"failed: {type(err).__name__}: {err}"}
            result["errors"]["train"] = result["train"]["skipped"]
        _write(result, paths)
    if "bench" in steps:
        checkpoint = (result.get("train") or {}).get("checkpoint")
        try:
            result["bench"] = run_bench_rows(data=data, checkpoint=checkpoint, scale=scale, device=device)
        except Exception as err:  # noqa: BLE001
            log.exception("bench rows failed")
            result["errors"]["bench"] = f"{type(err).__name__}: {err}"
        _write(result, paths)
    peak = max((r.get("images_per_s", 0) for r in result.get("throughput", [])), default=None)
    result["goals"] = {
        "training_images_per_s": {"goal": GOAL_IMAGES_PER_S, "best": peak,
                                  "met": peak is not None and peak >= GOAL_IMAGES_PER_S},
        "test_JA_within_10_minutes": (result.get("train") or {}).get("goal"),
    }
    _write(result, paths)
    print("\n".join(str(p) for p in paths.values()))
    return 1 if result["errors"] else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare-data", help="write a resized copy of a dataset (shorter side --size)")
    prep.add_argument("--data", required=True, type=Path)
    prep.add_argument("--out", required=True, type=Path)
    prep.add_argument("--size", type=int, default=256)
    prep.add_argument("--quality", type=int, default=95)
    prep.add_argument("--force", action="store_true")
    r = sub.add_parser("run", help="run the check's steps and write the results file")
    r.add_argument("--data", required=True, help="dataset folder (the prepare-data copy)")
    r.add_argument("--out", required=True, type=Path, help="folder for the results JSON and Markdown")
    r.add_argument("--work", type=Path, default=Path("/tmp/banet_gpu_check_run"),
                   help="run folder of the training step (checkpoints; replaced)")
    r.add_argument("--steps", type=lambda s: [x for x in s.split(",") if x], default=list(STEPS),
                   help=f"comma-separated subset of {','.join(STEPS)}")
    r.add_argument("--train-modes", type=lambda s: [x for x in s.split(",") if x], default=["eager", "compile"],
                   help=f"throughput modes, from {','.join(TRAIN_MODES)} (default eager,compile)")
    r.add_argument("--train-minutes", type=float, default=GOAL_MINUTES)
    r.add_argument("--train-epochs", type=int, help="epochs of the train step (default: planned from the speed)")
    r.add_argument("--device", default="auto")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--tiny", action="store_true", help="CPU mode: tiny model, 64 px, a few steps")
    r.add_argument("--tag", help="file stem of the results (default <date>_<machine>_gpu_check)")
    r.add_argument("--force", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
