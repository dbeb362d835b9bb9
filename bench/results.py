"""The one results writer of every measuring command, and banet-bench's Markdown and plots.

Every command (banet-bench, banet-compare, the ``references`` commands) writes through :class:`ResultFiles`:
a dated file name (``<kind>_<date>_<machine>_<tag>`` or a ``--name``), a refusal before any measuring if one of
its files exists (unless ``--force``), JSON + Markdown + plots, and a record of the command line, the machine
(CPU, cores, GPU, library versions, load average; :func:`banet.machine.machine_info`) and the date. Typed
results (dataclasses) are written through :func:`to_jsonable`, their one JSON encoding.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from banet.atomic import write_text

log = logging.getLogger(__name__)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
"""Where every command writes by default (``--out``); the README and docs cite files in it."""


def result_stem(machine: dict, tag: str = "bench", kind: str | None = None) -> str:
    """``2026-11-26T1830Z_intel-xeon-2c_bench`` (``kind_`` in front when given): date and machine in every name."""
    from banet.machine import machine_slug

    date = machine["date"][:16].replace(":", "").replace("+", "") + "Z"
    return "_".join(([kind] if kind else []) + [date, machine_slug(machine)] + ([tag] if tag else []))


def command_line(prog: str, argv: Sequence[str] | None) -> str:
    """The command as typed (``prog`` then ``argv``, else this process's arguments), shell-quoted."""
    return shlex.join([*prog.split(), *(sys.argv[1:] if argv is None else argv)])


def to_jsonable(value):
    """The one JSON encoding: dataclasses (their ``to_dict`` where they have one), numpy scalars and arrays, paths."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


class ResultFiles:
    """The files of one result: claimed (refused if present, unless ``force``) before measuring, written after.

    ``stem`` is a ``--name`` or :func:`result_stem`; ``plots`` the suffixes of the PNGs it may write
    (``STEM_<plot>.png``). :meth:`write` adds ``command`` and ``machine`` to the result when it lacks them.
    """

    def __init__(self, out_dir: str | Path, stem: str, *, force: bool = False, plots: Sequence[str] = (),
                 command: str | None = None, machine: dict | None = None):
        from banet.machine import machine_info

        self.out_dir, self.stem, self.force = Path(out_dir), stem, force
        self.command, self.machine = command, machine or machine_info()
        self.paths = {"json": self.out_dir / f"{stem}.json", "md": self.out_dir / f"{stem}.md",
                      **{name: self.out_dir / f"{stem}_{name}.png" for name in plots}}
        self._written: set[Path] = set()
        existing = [p for p in self.paths.values() if p.exists()]
        if existing and not force:
            raise FileExistsError(f"{existing[0]} exists; pass --force to replace it or choose another --out/--tag/--name")

    @classmethod
    def dated(cls, out_dir: str | Path, kind: str | None, tag: str | None, **kwargs) -> ResultFiles:
        """``<kind>_<date>_<machine>_<tag>`` named by this machine and the start time."""
        from banet.machine import machine_info

        machine = kwargs.pop("machine", None) or machine_info()
        return cls(out_dir, result_stem(machine, tag or "", kind), machine=machine, **kwargs)

    def write(self, result: dict, markdown: str | Callable[[dict], str],
              plots: Mapping[str, Callable[[Path], Path | None]] | None = None) -> dict[str, Path]:
        """Draw ``plots`` (each given its path, returning it or None), then write JSON and Markdown atomically."""
        if self.command is not None:
            result.setdefault("command", self.command)
        result.setdefault("machine", self.machine)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, draw in (plots or {}).items():
            if name not in self.paths:
                raise ValueError(f"plot {name!r} was not claimed (plots={list(self.paths)[2:]})")
            path = draw(self.paths[name])
            if path is not None:
                written[name] = path
        if written:
            result["plots"] = {k: str(v) for k, v in written.items()}
        # claimed at the start, checked again now: another run of the same name may have finished meanwhile
        taken = [p for p in (self.paths["json"], self.paths["md"]) if p.exists() and p not in self._written]
        if taken and not self.force:
            raise FileExistsError(f"{taken[0]} was written by another run since this one started; pass --force "
                                  "to replace it or choose another --out/--tag/--name")
        write_text(self.paths["json"], json.dumps(result, indent=2, default=to_jsonable) + "\n")
        write_text(self.paths["md"], markdown(result) if callable(markdown) else markdown)
        self._written.update((self.paths["json"], self.paths["md"]))  # a command may rewrite its own files
        log.info("wrote %s", ", ".join(str(p) for p in [self.paths["json"], self.paths["md"], *written.values()]))
        return {"json": self.paths["json"], "md": self.paths["md"], **written}


@dataclasses.dataclass
class BenchRun:
    """A banet-bench result read back through its types: what later tools (references.precision.spread) use
    instead of the Markdown or the display strings of its goals table."""

    path: Path
    command: str | None
    machine: dict
    reference: str
    model: dict
    image_size: int | None
    artifacts: str | None
    latency: list  # bench.latency.LatencyRow
    parity: list  # bench.backend_parity.ParityRow

    @classmethod
    def read(cls, path: str | Path) -> BenchRun:
        """Parse ``path`` (a banet-bench ``.json``); :class:`ValueError` naming the file if it is not one."""
        from bench.backend_parity import ParityRow
        from bench.latency import LatencyRow

        path = Path(path)
        result = json.loads(path.read_text())
        if not isinstance(result, dict) or "latency" not in result or "machine" not in result:
            raise ValueError(f"{path}: not a banet-bench result (no latency/machine)")
        try:
            latency = [LatencyRow.from_dict(r) for r in result["latency"]]
            parity = [ParityRow.from_dict(r) for r in result.get("parity") or []]
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None
        return cls(path=path, command=result.get("command"), machine=result["machine"],
                   reference=result.get("reference") or "torch-fp32@cpu", model=result.get("model") or {},
                   image_size=result.get("image_size"), artifacts=result.get("artifacts"),
                   latency=latency, parity=parity)

    def goals(self, *, trained: bool | None = None) -> list:
        """:func:`bench.goals.goals_of_run` recomputed from the typed rows. ``trained``: the model's record; a run
        that does not record it (files older than the field) counts as untrained, so its gates stay unscored
        unless the caller knows better: a goal never passes on a condition nobody recorded."""
        from bench.goals import goals_of_run

        trained = bool(self.model.get("trained", False)) if trained is None else trained
        return goals_of_run([r.to_dict() for r in self.latency], [r.to_dict() for r in self.parity],
                            reference=self.reference, trained=trained)


def header_lines(result: dict) -> list[str]:
    """The Markdown lines every result starts with: command, date, machine and its load average at the start."""
    m = result["machine"]
    load = m.get("load_average")
    return [f"- command: `{result.get('command', '-')}`",
            f"- date: {m.get('date', '-')}",
            f"- machine: {m.get('cpu')}, {m.get('cores')} cores; GPU: {m.get('gpu') or 'none'}"
            + (f"; load average {' / '.join(f'{x:.1f}' for x in load)} (1/5/15 min) at the start" if load else "")]


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "PASS" if value else "FAIL"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(result: dict) -> str:
    m = result["machine"]
    gpu = m.get("gpu") or f"none ({m.get('reason', 'no GPU')})"
    out = [
        f"# BA-Net bench: {result.get('title', 'latency, throughput and parity')}",
        "",
        f"- command: `{result['command']}`",
        f"- date: {m['date']}",
        f"- machine: {m['cpu']}, {m['cores']} cores (int8 ISA flags: {', '.join(m.get('cpu_flags') or []) or 'none found'}); GPU: {gpu}"
        + (f", driver {m['driver']}" if m.get("driver") else ""),
        f"- libraries: " + ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v),
        f"- environment: " + ", ".join(f"{k}={v}" for k, v in (m.get("env") or {}).items() if v) if m.get("env") else "- environment: -",
        f"- timing: {'backends interleaved call by call' if result.get('config', {}).get('interleave') else 'one block per backend'}"
        + (f", {result['config']['repeats']} repeats of the whole measurement (rows pool them; goals give the "
           "median ratio and its min-max over the repeats)" if result.get("config", {}).get("repeats", 1) > 1 else ""),
        f"- model: {result.get('model', {}).get('description', '-')}",
        f"- inputs: {result.get('inputs', '-')}",
        "",
        "CPU absolute times depend on the machine and its load; compare the ratios measured side by side in this run.",
        "",
    ]
    if result.get("goals"):
        out += ["## Goals", "", _table(
            ["goal", "target", "achieved", "met", "note"],
            [[g["goal"], g["target"], g["achieved"], g["met"], g.get("note", "")] for g in result["goals"]]), ""]
    lat = [r for r in result.get("latency", []) if not r.get("skipped")]
    if lat:
        out += ["## Latency (ms) and throughput", "", _table(
            ["backend", "batch", "p50", "p90", "p99", "mean", "img/s", "x vs torch-fp32", "peak MiB"],
            [[r["backend"], r["batch_size"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["mean_ms"],
              r["throughput"], r.get("speedup_vs_reference"), r["peak_memory_mib"]] for r in lat]), ""]
        kinds = sorted({r["memory_kind"] for r in lat if r.get("memory_kind")})
        counts = sorted({r["count"] for r in lat})
        calls = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        out += [f"Peak memory: {'; '.join(kinds)}. Warmup calls excluded; "
                f"{calls} timed calls per row.", ""]
    par = [r for r in result.get("parity", []) if not r.get("skipped")]
    if par:
        out += ["## Parity against FP32 PyTorch (mask Jaccard agreement)", "", _table(
            ["backend", "images", "mean agreement", "worst", "worst image", "JA", "ΔJA (pts)", "gate", "result"],
            [[r["backend"], r["images"], f"{r['mean_agreement']:.4f}", f"{r['worst_agreement']:.4f}",
              r["worst_image"], r.get("artifact_ja"), None if r.get("ja_loss") is None else -r["ja_loss"],
              f"{r['gate_precision']} (>= {r['gate']['min_agreement']}, worst >= "
              f"{r['gate'].get('min_worst_agreement', 0.0)}, loss <= {r['gate']['max_ja_loss']})",
              r["passed"]] for r in par]), ""]
    load = [r for r in result.get("load", []) if not r.get("skipped")]
    if load:
        out += ["## Triton under load (gRPC)", "", _table(
            ["tool", "concurrency", "img/s", "p50 ms", "p90 ms", "p99 ms", "requests"],
            [[r["tool"], r["concurrency"], r["throughput"], r["p50_ms"], r["p90_ms"], r["p99_ms"],
              r.get("count")] for r in load]), ""]
    skipped = [r for key in ("latency", "parity", "load") for r in result.get(key, []) if r.get("skipped")]
    if skipped:
        seen, rows = set(), []
        for r in skipped:
            key = (r.get("backend") or r.get("tool"), r["skipped"])
            if key not in seen:
                seen.add(key)
                rows.append([key[0], r["skipped"].replace("|", "/")])
        out += ["## Skipped or failed", "", _table(["backend", "reason"], rows), ""]
    if result.get("plots"):
        out += ["## Plots", ""] + [f"![{name}]({Path(p).name})" for name, p in result["plots"].items()] + [""]
    return "\n".join(out)


# --- plots ------------------------------------------------------------------------------------------
@contextmanager
def figure(path: Path, **subplots):
    """``(fig, axes)`` of ``plt.subplots(**subplots)`` on the Agg backend, laid out, saved to ``path`` and closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def plot_latency(rows: list[dict], path: Path) -> Path | None:
    rows = [r for r in rows if not r.get("skipped")]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["batch_size"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 0.45 * len(rows) + 2.5), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        sub = [r for r in rows if r["batch_size"] == size]
        y = np.arange(len(sub))
        ax.barh(y, [r["p50_ms"] for r in sub], color="tab:blue", label="p50")
        ax.scatter([r["p90_ms"] for r in sub], y, marker="|", s=200, color="tab:orange", label="p90", zorder=3)
        ax.scatter([r["p99_ms"] for r in sub], y, marker="|", s=200, color="tab:red", label="p99", zorder=3)
        ax.set_yticks(y, [r["backend"] for r in sub])
        ax.invert_yaxis()
        ax.set_xlim(left=0)  # bars from zero: their lengths compare as ratios
        ax.set_xlabel("latency per batch (ms)")
        ax.set_title(f"batch {size}")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_load(rows: list[dict], path: Path) -> Path | None:
    rows = [r for r in rows if not r.get("skipped")]
    if not rows:
        return None
    from matplotlib.ticker import NullFormatter

    with figure(path, ncols=2, figsize=(11, 4)) as (fig, (ax1, ax2)):
        for tool in sorted({r["tool"] for r in rows}):
            sub = sorted((r for r in rows if r["tool"] == tool), key=lambda r: r["concurrency"])
            c = [r["concurrency"] for r in sub]
            ax1.plot(c, [r["throughput"] for r in sub], marker="o", label=tool)
            ax2.plot(c, [r["p50_ms"] for r in sub], marker="o", label=f"{tool} p50")
            ax2.plot(c, [r["p99_ms"] for r in sub], marker="x", linestyle="--", label=f"{tool} p99")
        for ax, what, unit in ((ax1, "throughput", "images/s"), (ax2, "latency", "ms")):
            ax.set(xlabel="concurrency", ylabel=unit, title=f"Triton {what} vs concurrency", xscale="log",
                   xticks=[1, 2, 4, 8])
            ax.set_xticklabels(["1", "2", "4", "8"])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    return path


def plot_examples(examples: list[dict], path: Path) -> Path | None:
    """A strip per image: the image with its ground truth, then each backend's mask overlaid."""
    if not examples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from banet import processing

    labels = list(examples[0]["masks"])
    cols = 1 + len(labels)
    fig, axes = plt.subplots(len(examples), cols, figsize=(2.6 * cols, 2.4 * len(examples)), squeeze=False)
    for row, ex in zip(axes, examples):
        small = processing.resize_image(ex["image"], (192, int(192 * ex["image"].shape[1] / ex["image"].shape[0])))
        size = small.shape[:2]
        truth = None if ex.get("truth") is None else processing.resize_mask(ex["truth"], size)
        row[0].imshow(small if truth is None else processing.overlay(small, np.zeros(size, bool), truth))
        row[0].set_title(f"{ex['name'][:18]}\nground truth", fontsize=8)
        for ax, label in zip(row[1:], labels):
            mask = processing.resize_mask(ex["masks"][label] > 0, size)
            ax.imshow(processing.overlay(small, mask, truth))
            ax.set_title(label, fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


BENCH_PLOTS = ("latency", "load", "examples")


def planned_paths(out_dir: str | Path, stem: str, *, force: bool = False) -> dict[str, Path]:
    """The files a banet-bench result named ``stem`` will occupy; :class:`FileExistsError` if one exists (unless ``force``)."""
    return ResultFiles(out_dir, stem, force=force, plots=BENCH_PLOTS, machine={}).paths


def write_results(result: dict, out_dir: str | Path, *, stem: str | None = None, examples=None,
                  force: bool = False) -> dict[str, Path]:
    """banet-bench's ``STEM.json``, ``STEM.md`` and ``STEM_*.png`` in ``out_dir`` (through :class:`ResultFiles`)."""
    stem = stem or result_stem(result["machine"], result.get("tag", "bench"))
    files = ResultFiles(out_dir, stem, force=force, plots=BENCH_PLOTS, machine=result["machine"])
    return files.write(result, markdown, {
        "latency": lambda path: plot_latency(result.get("latency", []), path),
        "load": lambda path: plot_load(result.get("load", []), path),
        "examples": lambda path: plot_examples(examples or [], path)})


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.results --replot RESULT.json``: redraw the latency and load plots from a result."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--replot", type=Path, required=True, help="a banet-bench result JSON")
    args = parser.parse_args(argv)
    if not args.replot.is_file():
        parser.error(f"{args.replot}: file not found")
    result = json.loads(args.replot.read_text())
    stem = args.replot.with_suffix("")
    for kind, plot in (("latency", plot_latency), ("load", plot_load)):
        path = plot(result.get(kind, []), Path(f"{stem}_{kind}.png"))
        if path is not None:
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
