"""Evaluation: checkpoint + dataset split -> AC, DI, JA, SE, SP, scored two ways.

Predictions go through the one serving path (:func:`banet.inference.predict_logits` with
:func:`banet.inference.torch_runner`): resize to the checkpoint's training size, normalize, run. Then
- ``model``: the probabilities resized back to each image's original size, thresholded, against the
  original mask (what a user of the served model gets);
- ``model_paper``: the probabilities resized to :data:`banet.metrics.PAPER_SCORE_SIZE` (256x256), against
  the mask resized to the same size (nearest neighbour): how the paper's tables are scored (the authors'
  ``batch_sores``). The two differ mostly on thin boundaries and small lesions.
Scores are the mean over images (the paper's convention) and the aggregate over all pixels
(:mod:`banet.metrics`).

Trivial baselines (:func:`baseline_mask`) put the numbers in context: an all-background mask and a
fixed centred elliptical blob.
"""

from __future__ import annotations

import json
import logging
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from banet import processing
from banet.data.annotations import DEFAULT_EXPERTS, read_pair
from banet.data.pairs import DatasetError, Pair, find_pairs
from banet.metrics import METRIC_NAMES, PAPER_SCORE_SIZE, MetricAccumulator
from banet.spec import IMAGE_SIZE, MASK_THRESHOLD

log = logging.getLogger(__name__)

BASELINES = ("all_background", "centred_blob")
BLOB_AREA = 0.25
"""Area of the centred-blob baseline as a fraction of the image (an ellipse with the image's aspect)."""


def baseline_mask(kind: str, shape: tuple[int, int], *, blob_area: float = BLOB_AREA) -> np.ndarray:
    """A prediction that ignores the image: ``(H, W)`` uint8 0/255.

    ``all_background``: nothing. ``centred_blob``: a centred ellipse with the image's aspect ratio
    covering ``blob_area`` of the image.
    """
    height, width = shape
    if kind == "all_background":
        return np.zeros(shape, dtype=np.uint8)
    if kind != "centred_blob":
        raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")
    # ellipse area = pi * a * b with a = r * W / 2, b = r * H / 2  ->  r^2 * pi / 4 = blob_area
    r = np.sqrt(4.0 * blob_area / np.pi)
    yy, xx = np.mgrid[0:height, 0:width]
    dy = (yy + 0.5 - height / 2) / (r * height / 2)
    dx = (xx + 0.5 - width / 2) / (r * width / 2)
    return np.where(dx * dx + dy * dy <= 1.0, 255, 0).astype(np.uint8)


def checkpoint_size(payload: dict[str, Any]) -> int:
    """The resolution a checkpoint was trained at (its train config's ``size``; else the spec's)."""
    return int((payload.get("train_config") or {}).get("size", IMAGE_SIZE))


def _load(pair: Pair, skip_broken: bool) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        return read_pair(pair)
    except DatasetError as err:
        if skip_broken:
            log.warning("skipped: %s", err)
            return None
        raise DatasetError(f"{err}; pass --skip-broken to leave it out") from None


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    split: str | None,
    *,
    split_file: str | Path | None = None,
    batch_size: int = 8,
    threshold: float = MASK_THRESHOLD,
    device: str = "cpu",
    baselines: Sequence[str] = (),
    out_dir: str | Path | None = None,
    save_masks: bool = False,
    save_overlays: bool = False,
    skip_unpaired: bool = False,
    skip_broken: bool = False,
    experts: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Score a checkpoint (and optional baselines) on one split.

    Returns ``{"split", "images", "size", "model": {"mean", "aggregate", "images"}, "model_paper": {...},
    "paper_score_size", "baselines": {...}, "per_image": [{"name", "JA", "DI", "JA_paper"}...]}``
    (``model`` scored at each image's original size, ``model_paper`` at 256x256 as the paper scores). With ``out_dir``, writes ``masks/NAME.png`` (0/255)
    and/or ``overlays/NAME.png`` (prediction tinted + contour, ground-truth contour).
    ``experts``: how several masks of one image combine (:mod:`banet.data.annotations`); default: the
    checkpoint's training choice.
    """
    from banet.checkpoint import model_from_checkpoint
    from banet.inference import predict_logits, torch_runner

    processing.check_threshold(threshold)
    model, payload = model_from_checkpoint(checkpoint)
    size = checkpoint_size(payload)
    run = torch_runner(model, device)
    if experts is None:
        experts = (payload.get("train_config") or {}).get("experts", DEFAULT_EXPERTS)
    pairs = find_pairs(data, split, split_file=split_file, skip_unpaired=skip_unpaired, experts=experts)
    if any(p.mask is None for p in pairs):
        raise DatasetError(f"{data} has no masks/ folder: nothing to score against")
    model_acc = MetricAccumulator()
    paper_acc = MetricAccumulator()
    base_acc = {b: MetricAccumulator() for b in baselines}
    for b in baselines:
        baseline_mask(b, (2, 2))  # reject unknown names before any work
    per_image: list[dict[str, Any]] = []
    out = Path(out_dir) if out_dir else None
    for start in range(0, len(pairs), batch_size):
        chunk = [(p, _load(p, skip_broken)) for p in pairs[start:start + batch_size]]
        chunk = [(p, loaded) for p, loaded in chunk if loaded is not None]
        if not chunk:
            continue
        images = [loaded[0] for _, loaded in chunk]
        logits = predict_logits(run, images, batch_size=batch_size, size=size)
        for (pair, (image, gt)), lg in zip(chunk, logits):
            pred = processing.postprocess(lg, image.shape[:2], threshold)
            scores = model_acc.update(pred, gt)
            paper = paper_acc.update(processing.postprocess(lg, (PAPER_SCORE_SIZE, PAPER_SCORE_SIZE), threshold),
                                     processing.resize_mask(gt, PAPER_SCORE_SIZE))
            per_image.append({"name": pair.name, "height": image.shape[0], "width": image.shape[1],
                              "JA": scores["JA"], "DI": scores["DI"], "JA_paper": paper["JA"]})
            for b, acc in base_acc.items():
                acc.update(baseline_mask(b, gt.shape), gt)
            if out is not None and save_masks:
                processing.save_png(pred, out / "masks" / f"{pair.name}.png")
            if out is not None and save_overlays:
                processing.save_png(processing.overlay(image, pred, gt), out / "overlays" / f"{pair.name}.png")
        if progress is not None:
            progress(len(chunk))
    if not len(model_acc):
        raise DatasetError(f"no image of split {split!r} in {data} could be scored")
    return {
        "checkpoint": str(checkpoint),
        "arch": payload["arch"],
        "data": str(data),
        "split": split,
        "size": size,
        "threshold": threshold,
        "experts": experts,
        "model": model_acc.compute(),
        "model_paper": paper_acc.compute(),
        "paper_score_size": PAPER_SCORE_SIZE,
        "baselines": {b: acc.compute() for b, acc in base_acc.items()},
        "blob_area": BLOB_AREA if "centred_blob" in baselines else None,
        "per_image": per_image,
    }


def machine_info() -> dict[str, Any]:
    """CPU model, cores available to this process, Python and torch versions, UTC date."""
    import torch

    from banet.machine import cpu_cores, cpu_model

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cores": cpu_cores(), "gpu": gpu, "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def training_summary(payload: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint says about its training run (config, epochs, steps, wall time, history)."""
    history = payload.get("history") or []
    return {
        "train_config": payload.get("train_config"),
        "arch": payload.get("arch"),
        "model_config": payload.get("model_config"),
        "epoch": payload.get("epoch"),
        "step": payload.get("step"),
        "train_seconds": sum(float(r.get("train_seconds", 0.0)) for r in history),
        # training + validation time, when every epoch recorded it (runs from older code did not)
        "epoch_seconds": (sum(float(r["epoch_seconds"]) for r in history)
                          if history and all("epoch_seconds" in r for r in history) else None),
        "val_history": [{"epoch": r["epoch"], "loss": r["loss"].get("total"),
                         "JA": r["val"]["mean"]["JA"], "DI": r["val"]["mean"]["DI"]}
                        for r in history if "val" in r],
    }


def write_report(results: Sequence[dict[str, Any]], prefix: str | Path, *, command: Sequence[str] | None = None,
                 training: dict[str, Any] | None = None, force: bool = False) -> tuple[Path, Path]:
    """Write ``PREFIX.json`` and ``PREFIX.md``: the evaluations, the command line, the machine, the date.

    Refuses to replace existing files unless ``force``.
    """
    prefix = Path(prefix)
    json_path, md_path = prefix.with_name(prefix.name + ".json"), prefix.with_name(prefix.name + ".md")
    for path in (json_path, md_path):
        if path.exists() and not force:
            raise FileExistsError(f"{path} exists; pass --force to replace it")
    command_line = shlex.join(command if command is not None else sys.argv)
    machine = machine_info()
    doc = {"command": command_line, "machine": machine, "training": training,
           "evaluations": [{k: v for k, v in r.items() if k != "per_image"} for r in results]}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    md_path.write_text(format_markdown(doc))
    return json_path, md_path


def score_rows(result: dict[str, Any]) -> list[tuple[str, dict[str, float], dict[str, float]]]:
    """``(name, mean scores, aggregate scores)`` for the model and each baseline of one evaluation."""
    rows = [("model", result["model"]["mean"], result["model"]["aggregate"])]
    if result.get("model_paper"):
        size = result.get("paper_score_size", PAPER_SCORE_SIZE)
        rows.append((f"model, scored at {size}x{size} (paper)", result["model_paper"]["mean"],
                     result["model_paper"]["aggregate"]))
    rows += [(f"baseline: {b}", r["mean"], r["aggregate"]) for b, r in result["baselines"].items()]
    return rows


def format_table(result: dict[str, Any]) -> str:
    """Plain-text table of one evaluation (for the terminal)."""
    head = f"{'':38s}" + "".join(f"{m:>8s}" for m in METRIC_NAMES)
    lines = [f"split {result['split']}: {result['model']['images']} images, predicted at "
             f"{result['size']}x{result['size']}, scored at original size (and at the paper's "
             f"{result.get('paper_score_size', PAPER_SCORE_SIZE)}x{result.get('paper_score_size', PAPER_SCORE_SIZE)})", head]
    for name, mean, agg in score_rows(result):
        lines.append(f"{name + ' (mean)':38s}" + "".join(f"{mean[m]:8.4f}" for m in METRIC_NAMES))
        lines.append(f"{name + ' (aggregate)':38s}" + "".join(f"{agg[m]:8.4f}" for m in METRIC_NAMES))
    return "\n".join(lines)


def format_markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    out = ["# BA-Net evaluation", "",
           f"- command: `{doc['command']}`",
           f"- machine: {m['cpu']}, {m['cores']} cores, GPU {m['gpu'] or 'none'}; torch {m['torch']}",
           f"- date (UTC): {m['date']}", ""]
    t = doc.get("training")
    if t and t.get("train_config"):
        c = t["train_config"]
        out += ["## Training run", "",
                f"- arch `{t.get('arch') or 'banet'}`, preset `{c['preset']}`, {c['size']}x{c['size']} px, recipe `{c['recipe']}` "
                f"({c['optimizer']}, lr {c['lr']}, schedule {c['schedule']}), batch {c['batch_size']}, "
                f"augment `{c['augment']}`, seed {c['seed']}",
                f"- {t['epoch']} epochs, {t['step']} steps, {t['train_seconds']:.0f} s in training steps"
                + (f", {t['epoch_seconds']:.0f} s with validation" if t.get("epoch_seconds") is not None else "")
                + " (wall clock on a shared CPU; decoding and checkpoint writes not included)", "",
                "| epoch | train loss | val JA | val DI |", "|---:|---:|---:|---:|"]
        out += [f"| {r['epoch']} | {r['loss']:.4f} | {r['JA']:.4f} | {r['DI']:.4f} |" for r in t["val_history"]]
        out.append("")
    for r in doc["evaluations"]:
        out += [f"## Split `{r['split']}` ({r['model']['images']} images)", "",
                f"Checkpoint `{r['checkpoint']}`; predicted at {r['size']}x{r['size']}, resized back and "
                f"scored at each image's original size (rows `model`), and scored at "
                f"{r.get('paper_score_size', PAPER_SCORE_SIZE)}x{r.get('paper_score_size', PAPER_SCORE_SIZE)} "
                "with the mask resized to that size as the paper's tables are (rows `(paper)`); "
                f"threshold {r['threshold']}."
                + (f" Centred blob covers {r['blob_area']:.0%} of the image." if r.get("blob_area") else ""), "",
                "| prediction | averaging | " + " | ".join(METRIC_NAMES) + " |",
                "|---|---|" + "---:|" * len(METRIC_NAMES)]
        for name, mean, agg in score_rows(r):
            out.append(f"| {name} | mean over images | " + " | ".join(f"{mean[k]:.4f}" for k in METRIC_NAMES) + " |")
            out.append(f"| {name} | aggregate pixels | " + " | ".join(f"{agg[k]:.4f}" for k in METRIC_NAMES) + " |")
        out.append("")
    return "\n".join(out)
