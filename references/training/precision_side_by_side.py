"""The first epochs of an fp32 and a bf16 CPU training run side by side, against the seed-to-seed noise.

    python -m references.training.precision_side_by_side --data ../shared/data/kvasir-seg \\
        --work runs/precision_sbs --train-count 160 --epochs 4

Three runs of one configuration (``tiny`` BA-Net, 128 px, the ``official`` recipe at Adam lr 1e-3, batch 8)
on the first ``--train-count`` images of the Kvasir-SEG train split, validated on the whole val split:

- ``fp32`` (``--amp none``, seed 0),
- ``bf16`` (``--amp bf16``: bf16 autocast on the CPU, seed 0),
- ``fp32_seed1`` (``--amp none``, seed 1): the noise a change of seed alone makes.

bf16 gives "the same masks within noise" when its val JA per epoch stays within the fp32 seeds' difference
and the final models' masks agree with fp32's at least as well as the two fp32 seeds agree with each other
(mean Jaccard between the masks on the val split, every model run in fp32). The time per step of each run
is in the table: on an AVX2-only CPU bf16 is ~10x slower (the reason ``--amp auto`` probes first).

Each run is resumable (rerun the command: a finished run is read, a killed one continues from ``last.pt``).
Writes ``precision_side_by_side_<date>_<machine>_<tag>.json`` / ``.md`` / ``_curves.png`` (bench.results).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

import numpy as np

from bench import options
from bench.results import command_line

log = logging.getLogger("references.training.precision_side_by_side")

RUNS = {"fp32": ("none", 0), "bf16": ("bf16", 0), "fp32_seed1": ("none", 1)}
"""name -> (``--amp``, seed)."""
REFERENCE, NOISE = "fp32", "fp32_seed1"


def subset_split(data: Path, train_count: int, out: Path) -> Path:
    """A split CSV with the first ``train_count`` train names of ``data``'s split and all of its val names."""
    from banet.data.splits import names_in_split, split_csv

    source = split_csv(data, None)
    if source is None:
        raise SystemExit(f"{data}: no splits*.csv (this command uses the data set's published split)")
    train, val = names_in_split(source, "train"), names_in_split(source, "val")
    if train_count > len(train):
        raise SystemExit(f"--train-count {train_count} exceeds the {len(train)} train images of {source}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "split"])
        writer.writerows([[n, "train"] for n in train[:train_count]] + [[n, "val"] for n in val])
    return out


def train_run(name: str, args: argparse.Namespace, split_file: Path) -> dict:
    """Train (or finish, or read) one run; returns its history."""
    from tqdm import tqdm

    from banet.checkpoint import load_checkpoint
    from banet.train import fit, resolve_config

    amp, seed = RUNS[name]
    out = args.work / name
    config = resolve_config(str(args.data), str(out), "official", preset="tiny", size=args.size, lr=1e-3,
                            batch_size=8, epochs=args.epochs, amp=amp, seed=seed, split_file=str(split_file),
                            workers=2)
    last = out / "last.pt"
    if last.is_file():
        state = load_checkpoint(last)
        if state.get("epoch", 0) >= args.epochs:
            log.info("%s: finished earlier, read from %s", name, last)
            return {"history": state["history"], "last": str(last)}
    log.info("%s: --amp %s, seed %d, %d epochs", name, amp, seed, args.epochs)
    result = fit(config, resume=last if last.is_file() else None, force=not last.is_file(),
                 bar_factory=lambda **kw: tqdm(leave=False, **kw))
    return {"history": result["history"], "last": result["last"]}


def val_masks(checkpoint: str, data: Path, split_file: Path, size: int) -> np.ndarray:
    """The model's val masks in fp32 (N, H, W) bool."""
    import torch

    from banet.checkpoint import model_from_checkpoint
    from banet.data.dataset import load_split
    from banet.train import prepare_batch

    model, _ = model_from_checkpoint(checkpoint)
    model.eval()
    ds = load_split(data, "val", size, split_file=split_file)
    masks = []
    with torch.inference_mode():
        for start in range(0, len(ds), 16):
            x, _ = prepare_batch(ds.images[start:start + 16], ds.masks[start:start + 16], None)
            masks.append((model(x) > 0)[:, 0].numpy())
    return np.concatenate(masks)


def mean_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images of |a & b| / |a | b| (1 where both are empty)."""
    inter = (a & b).reshape(len(a), -1).sum(1)
    union = (a | b).reshape(len(a), -1).sum(1)
    return float(np.mean(np.where(union == 0, 1.0, inter / np.maximum(union, 1))))


def summarize(histories: dict[str, list[dict]], agreement: dict[str, float]) -> dict:
    curves = {name: [round(h["val"]["mean"]["JA"], 4) for h in hist] for name, hist in histories.items()}
    step_s = {name: float(np.median([h["train_seconds"] / max(h["step"] - (hist[i - 1]["step"] if i else 0), 1)
                                     for i, h in enumerate(hist)])) for name, hist in histories.items()}
    noise = [abs(a - b) for a, b in zip(curves[REFERENCE], curves[NOISE])]
    gap = [abs(a - b) for a, b in zip(curves[REFERENCE], curves["bf16"])]
    within = max(gap) <= max(noise) and agreement["fp32 vs bf16"] >= agreement["fp32 vs fp32_seed1"]
    return {"val_ja": curves, "seconds_per_step_median": step_s,
            "bf16_gap_per_epoch": gap, "seed_gap_per_epoch": noise, "mask_agreement": agreement,
            "bf16_within_noise": within}


def markdown(result: dict) -> str:
    s = result["summary"]
    epochs = len(s["val_ja"][REFERENCE])
    lines = ["# fp32 and bf16 CPU training side by side (issue 21)", "",
             f"Command: `{result['command']}`  ", f"Machine: {result['machine'].get('cpu')} "
             f"({result['machine'].get('cores')} cores), {result['machine'].get('date')}", "",
             f"tiny BA-Net, {result['size']} px, official recipe, Adam lr 1e-3, batch 8, "
             f"{result['train_count']} train images, the {result['val_count']} val images; val JA at the "
             "training resolution after each epoch:", "",
             "| run | " + " | ".join(f"epoch {e + 1}" for e in range(epochs)) + " | s/step (median) |",
             "|---|" + "---|" * (epochs + 1)]
    for name, curve in s["val_ja"].items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in curve)
                     + f" | {s['seconds_per_step_median'][name]:.3f} |")
    lines += ["", "Mask agreement of the final models on val (mean Jaccard, every model run in fp32):", ""]
    lines += [f"- {k}: {100 * v:.1f} %" for k, v in s["mask_agreement"].items()]
    verdict = "within" if s["bf16_within_noise"] else "NOT within"
    lines += ["", f"bf16 vs fp32 val JA gap per epoch (points): "
              f"{', '.join(f'{100 * g:.1f}' for g in s['bf16_gap_per_epoch'])}; fp32 seed 0 vs seed 1: "
              f"{', '.join(f'{100 * g:.1f}' for g in s['seed_gap_per_epoch'])}.", "",
              f"**bf16 is {verdict} the seed noise** (largest per-epoch gap <= the seeds' largest, and mask "
              "agreement with fp32 >= the two fp32 seeds' agreement).", ""]
    return "\n".join(lines)


def plot_curves(result: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in result["summary"]["val_ja"].items():
        ax.plot(range(1, len(curve) + 1), [100 * v for v in curve], marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val JA (%)")
    ax.set_title(f"fp32 vs bf16 on the CPU ({result['machine'].get('cpu')})", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m references.training.precision_side_by_side", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_data(p, split=None, required=True, help="Kvasir-SEG root (its splits*.csv is used)")
    p.add_argument("--work", type=Path, required=True, help="run folders (resumable)")
    p.add_argument("--train-count", type=int, default=160, help="train images (default 160: 20 steps an epoch)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--size", type=int, default=128)
    options.add_output(p)
    args = p.parse_args(argv)
    args.tag = args.tag or f"tiny{args.size}"
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.data = Path(args.data)
    files = options.result_files(args, kind="precision_side_by_side", plots=("curves",), parser=p,
                                 command=command_line("python -m references.training.precision_side_by_side", argv))
    split_file = subset_split(args.data, args.train_count, args.work / "split.csv")
    runs = {name: train_run(name, args, split_file) for name in RUNS}
    masks = {name: val_masks(r["last"], args.data, split_file, args.size) for name, r in runs.items()}
    agreement = {f"{REFERENCE} vs {other}": mean_jaccard(masks[REFERENCE], masks[other]) for other in ("bf16", NOISE)}
    result = {"size": args.size, "train_count": args.train_count, "val_count": int(len(masks[REFERENCE])),
              "epochs": args.epochs, "runs": {n: {"amp": a, "seed": s} for n, (a, s) in RUNS.items()},
              "histories": {n: r["history"] for n, r in runs.items()},
              "summary": summarize({n: r["history"] for n, r in runs.items()}, agreement)}
    files.write(result, markdown, plots={"curves": lambda path: plot_curves(result, path)})
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
