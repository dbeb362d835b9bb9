"""The paper's tables from ``banet-compare`` records: Table I (the networks) and Table IV (BA-Net's ablations),
each row the mean and range over its seeds, beside the paper's published numbers, with the question every
reader asks: is a row's difference from BA-Net larger than the spread between seeds?

A record is one training run (:func:`bench.compare.run_entry`); runs of the same ``row`` with other seeds are
that row's seeds. Scores are the paper's (mean over test images, scored at 256x256: ``metrics_paper``) and,
beside them, the same at each image's original size (``metrics``).

The seed spread of the comparison is the largest range (max - min) of test JA over the seeds of any row that
has more than one seed; a row's difference from BA-Net "exceeds the seed spread" when the difference of the
two means is larger than that spread. With one seed per row there is no spread, and the table says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from banet.metrics import METRIC_NAMES

REFERENCE_ROW = "banet"

NETWORK_ROWS = ("fcn", "unet", "multiresunet", "attention_unet", "deeplabv3", "cenet", "banet")
"""Table I's rows in the paper's order (BA-Net last)."""
ABLATION_ROWS = ("banet-baseline", "banet-no_pee", "banet-no_mtl", "banet-no_ia", "banet-no_cff", "banet")
"""Table IV's rows: the plain baseline, BA-Net without each part, the full BA-Net."""

PAPER_KVASIR: dict[str, dict[str, float]] = {
    "banet": {"DI": 0.911, "JA": 0.861},
}
"""The paper's Kvasir-SEG numbers (fractions) that this project has a source for: BA-Net's DI and JA
(../shared/data/README.md, from the paper's Table I). The other rows' published values are not transcribed
here; the table shows '-' for them rather than a number from memory."""


@dataclass(frozen=True)
class Spread:
    """Mean, min and max over the seeds of one row (one value: min = max = mean)."""

    mean: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "Spread":
        return cls(float(np.mean(values)), float(min(values)), float(max(values)), len(values))

    def text(self, scale: float = 100.0) -> str:
        if self.n == 1:
            return f"{scale * self.mean:.1f}"
        return f"{scale * self.mean:.1f} ({scale * self.min:.1f}-{scale * self.max:.1f})"


@dataclass(frozen=True)
class Row:
    """One table row: the seeds' records reduced to spreads per metric."""

    row: str
    arch: str
    ablation: str
    seeds: tuple[int, ...]
    paper: dict[str, Spread]
    """Scored at 256x256, as the paper's tables."""
    original: dict[str, Spread]
    """Scored at each test image's original size."""
    epochs: tuple[int, ...]
    stopped_early: tuple[bool, ...]
    ends: tuple[str, ...] = ()
    """How each seed's run ended (:func:`run_end`)."""


def run_end(record: dict[str, Any]) -> str:
    """``"46/38 patience"``: epochs run / best epoch, and why the run ended. ``"50/50 cap +0.4"``: it reached the
    epoch cap (where the recipes' poly schedule brings the learning rate to 0), and its best validation JA rose
    0.4 points in the last ``patience`` epochs: the size of the step it was still taking, for the reader to judge
    the plateau. ``"12/12 end"``: fewer epochs than the cap without an early stop (``--max-steps``)."""
    training = record["training"]
    hist = [h for h in training.get("val_history", []) if h.get("JA") is not None]
    best = max(hist, key=lambda h: h["JA"]) if hist else None
    text = f"{training['epochs']}/{best['epoch'] if best else '-'}"
    if training.get("stopped_early"):
        return f"{text} patience"
    key = record.get("key") or {}
    if key.get("epochs") is not None and training["epochs"] < key["epochs"]:
        return f"{text} end"  # neither patience nor the cap: a step limit (--max-steps) or a run cut short
    patience = key.get("patience") or 0
    before = [h["JA"] for h in hist if h["epoch"] <= training["epochs"] - patience]
    if best is None or not patience or not before:
        return f"{text} cap"
    return f"{text} cap {100 * (best['JA'] - max(before)):+.1f}"


def rows_of(records: list[dict[str, Any]]) -> dict[str, Row]:
    """Group the records by row (several seeds of one row become one :class:`Row`)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        grouped.setdefault(r.get("row", r["label"]), []).append(r)
    out = {}
    for name, runs in grouped.items():
        def spread(key: str) -> dict[str, Spread]:
            return {m: Spread.of([float(r[key][m]) for r in runs]) for m in METRIC_NAMES
                    if all(r.get(key) and m in r[key] for r in runs)}

        out[name] = Row(row=name, arch=runs[0]["arch"], ablation=runs[0]["ablation"],
                        seeds=tuple(int(r.get("seed", 0)) for r in runs), paper=spread("metrics_paper"),
                        original=spread("metrics"), epochs=tuple(int(r["training"]["epochs"]) for r in runs),
                        stopped_early=tuple(bool(r["training"].get("stopped_early")) for r in runs),
                        ends=tuple(run_end(r) for r in runs))
    return out


def seed_spread(rows: dict[str, Row], metric: str = "JA") -> float | None:
    """The largest range over seeds of ``metric`` (paper scoring) among rows with more than one seed."""
    ranges = [r.paper[metric].max - r.paper[metric].min for r in rows.values()
              if metric in r.paper and r.paper[metric].n > 1]
    return max(ranges) if ranges else None


def versus_reference(row: Row, reference: Row | None, spread: float | None, metric: str = "JA") -> str:
    """How ``row`` compares with BA-Net on ``metric``: the difference in points and whether it exceeds the seed
    spread."""
    if reference is None or row.row == reference.row or metric not in row.paper or metric not in reference.paper:
        return "-"
    diff = row.paper[metric].mean - reference.paper[metric].mean
    text = f"{100 * diff:+.1f}"
    if spread is None:
        return f"{text} (no seed spread measured)"
    return f"{text} ({'exceeds' if abs(diff) > spread else 'within'} the seed spread {100 * spread:.1f})"


def table_markdown(records: list[dict[str, Any]], *, size: int, data_name: str) -> list[str]:
    """Markdown lines: Table I and Table IV of these records (rows that were not run are left out)."""
    rows = rows_of(records)
    reference = rows.get(REFERENCE_ROW)
    spread = seed_spread(rows)
    paper_numbers = PAPER_KVASIR if "kvasir" in data_name.lower() else {}
    head = ("| {what} | seeds | " + " | ".join(f"{m}" for m in METRIC_NAMES) + " | JA at original size | "
            "JA vs BA-Net (points) | epochs run/best, end | paper DI / JA |")
    rule = "|---|---:|" + "---:|" * len(METRIC_NAMES) + "---:|---|---|---|"
    lines: list[str] = []
    for title, order, what in (("Table I: the networks", NETWORK_ROWS, "network"),
                               ("Table IV: BA-Net's ablations", ABLATION_ROWS, "BA-Net variant")):
        present = [rows[name] for name in order if name in rows]
        if not present:
            continue
        lines += [f"### {title} ({data_name}, scored at 256x256 as the paper, mean over test images, %; "
                  f"trained at {size} px)", "", head.format(what=what), rule]
        for r in present:
            paper = paper_numbers.get(r.row, {})
            published = (f"{100 * paper['DI']:.1f} / {100 * paper['JA']:.1f}"
                         if {"DI", "JA"} <= set(paper) else "-")
            lines.append(
                f"| {r.row} | {len(r.seeds)} | " + " | ".join(r.paper[m].text() if m in r.paper else "-"
                                                            for m in METRIC_NAMES)
                + f" | {r.original['JA'].text() if 'JA' in r.original else '-'} | "
                f"{versus_reference(r, reference, spread)} | "
                + ", ".join(r.ends)
                + f" | {published} |")
        lines.append("")
    lines.append("Rows with several seeds show the mean and, in brackets, the range over the seeds. The seed spread is "
                 "the largest JA range over the seeds of any row" + (f": {100 * spread:.1f} points." if spread is not None
                                                                        else "; no row has more than one seed yet."))
    lines += ["", "Epochs run/best, end: the epochs a run trained and its best validation epoch (the checkpoint "
              "scored), then `patience` (validation JA had not improved for the patience: stopped early) or `cap` "
              "(it reached the epoch cap, where the poly schedule's learning rate is 0) with the points its best "
              "validation JA gained in the last patience-many epochs."]
    return lines


def plot_curves(records: list[dict[str, Any]], path: str | Path) -> Path:
    """Validation JA per epoch of every run: networks on the left, BA-Net's ablations on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first_seed = min(r.get("seed", 0) for r in records)  # solid line: the first seed; dotted: the others
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for ax, ablations in ((axes[0], False), (axes[1], True)):
        for r in records:
            is_ablation = r["arch"] == "banet" and (r["ablation"] != "full")
            if is_ablation != ablations and not (ablations and r.get("row", r["label"]) == REFERENCE_ROW):
                continue
            hist = [h for h in r["training"]["val_history"] if h.get("JA") is not None]
            style = "-" if r.get("seed", 0) == first_seed else ":"
            ax.plot([h["epoch"] for h in hist], [100 * h["JA"] for h in hist], style, label=r["label"],
                    linewidth=2.2 if r.get("row", r["label"]) == REFERENCE_ROW else 1.2)
        ax.set(xlabel="epoch", title="BA-Net's ablations" if ablations else "networks")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("validation JA (%), at the training size")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
