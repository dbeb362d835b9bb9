"""``banet-compare``: train and evaluate several networks (and BA-Net's ablations) on one data set with
one recipe, export each, and write the paper's Table I beside size, speed and precision columns.

    banet-compare --data ../shared/data/kvasir-seg --out runs/compare_kvasir \\
        --arch fcn unet multiresunet attention_unet deeplabv3 cenet banet \\
        --ablation no_pee no_mtl no_ia no_cff baseline --preset tiny --size 128 --epochs 3

For every entry (an architecture, or BA-Net with one ablation), in one process and through the project's
own library functions:

1. :func:`banet.train.fit` (the same recipe, seed, size, epochs and split for all; ``OUT/<entry>/``);
2. :func:`banet.evaluate.evaluate` of ``best.pt`` on the test split: AC, DI, JA, SE, SP, mean over the
   test images at their original size (the paper's Table I columns);
3. :func:`banet.cli.info.model_size`: parameters and GFLOPs at the comparison size;
4. :func:`export.pipeline.run_export` with FP16 and INT8 (no TensorRT engines): the ONNX artifacts and
   their mask agreement with the FP32 PyTorch model on test images (:mod:`export.parity`).

Then one latency block for everything: ONNX Runtime FP32 / FP16 / INT8 of every entry, batch 1, real
test images, all timed calls interleaved (:func:`bench.latency.measure_interleaved`), repeated
``--latency-repeats`` times; each ratio (FP16 / FP32 and INT8 / FP32 time of one network, FP32 time of
one network / BA-Net's) is reported as the median and the range over those repeats.

Results (``--results``/``--name``: JSON, Markdown, one plot) carry the command line, the machine, the date
and the load average; :mod:`references.training.compare_tables` writes them. ``--reuse`` takes the finished entries
already in ``--out`` (same settings) instead of training them again.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import options
from bench.results import command_line

log = logging.getLogger(__name__)

ENTRY_FILE = "entry.json"
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Entry:
    """One row of the comparison: an architecture, with BA-Net's ablation (``full`` for the others), trained
    with ``seed`` (``None``: the settings' seed; another seed is a second run of the same row)."""

    arch: str
    ablation: str = "full"
    seed: int | None = None

    @property
    def row(self) -> str:
        """The table row this run belongs to (runs of several seeds share it)."""
        return self.arch if self.ablation == "full" else f"{self.arch}-{self.ablation}"

    @property
    def label(self) -> str:
        return self.row if self.seed is None else f"{self.row}-seed{self.seed}"


@dataclass(frozen=True)
class Settings:
    """The one recipe every entry is trained, evaluated and exported with."""

    data: str
    out: str
    recipe: str = "official"
    preset: str = "tiny"
    size: int = 128
    epochs: int = 3
    max_steps: int | None = None
    patience: int | None = None
    lr: float | None = None
    batch_size: int = 8
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    test_split: str = "test"
    calib_count: int = 64
    parity_count: int | None = 50
    latency_images: int = 16
    latency_rounds: int = 20
    latency_warmup: int = 3
    latency_repeats: int = 3
    threads: int | None = None

    def train_overrides(self) -> dict[str, Any]:
        return {"preset": self.preset, "size": self.size, "epochs": self.epochs, "max_steps": self.max_steps,
                "patience": self.patience, "lr": self.lr, "batch_size": self.batch_size, "seed": self.seed,
                "device": self.device, "workers": self.workers}


def entries_for(arches: list[str], ablations: list[str], *, extra_seeds: list[int] = (),
                seed_rows: list[str] = ()) -> list[Entry]:
    """The entries in order: every architecture (BA-Net's ``full``), then BA-Net's other ablations, then a run
    per ``extra_seeds`` seed of each row named in ``seed_rows`` (e.g. ``banet``, ``banet-baseline``)."""
    from banet.model import registry
    from banet.model.config import ABLATIONS

    for arch in arches:
        registry.architecture(arch)  # unknown names fail before any work
    unknown = [a for a in ablations if a not in ABLATIONS]
    if unknown:
        raise ValueError(f"unknown ablation(s) {unknown}; choose from {sorted(ABLATIONS)}")
    out = [Entry(a) for a in dict.fromkeys(arches)]
    out += [Entry("banet", a) for a in dict.fromkeys(ablations) if a != "full" or "banet" not in arches]
    if not out:
        raise ValueError("nothing to compare: give --arch and/or --ablation")
    rows = {e.row: e for e in out}
    unknown_rows = [r for r in seed_rows if r not in rows]
    if unknown_rows:
        raise ValueError(f"--seed-rows {unknown_rows} are not rows of this comparison ({sorted(rows)})")
    out += [Entry(rows[r].arch, rows[r].ablation, seed) for seed in dict.fromkeys(extra_seeds)
            for r in dict.fromkeys(seed_rows)]
    return out


# --- one entry: train, evaluate, size, export -----------------------------------------------------
def _bar_factory(**kw):
    from tqdm import tqdm

    return tqdm(leave=False, dynamic_ncols=True, **kw)


def _load_bar(total, desc):
    from tqdm import tqdm

    return tqdm(desc=desc, unit="img", leave=False)


def _entry_key(entry: Entry, settings: Settings) -> dict[str, Any]:
    """What must match for a finished entry in ``--out`` to be reused."""
    keep = ("data", "recipe", "preset", "size", "epochs", "max_steps", "patience", "lr", "batch_size", "seed",
            "test_split", "calib_count", "parity_count")
    key = {"arch": entry.arch, "ablation": entry.ablation, **{k: getattr(settings, k) for k in keep}}
    if entry.seed is not None:
        key["seed"] = entry.seed
    return key


def run_entry(entry: Entry, settings: Settings, *, reuse: bool = False, say=print) -> dict[str, Any]:
    """Train, evaluate, size and export one entry into ``OUT/<label>/``; returns its record.

    With ``reuse``: a finished entry (``entry.json`` of the same settings) is returned as it is, and a run
    that was killed before it finished continues from its ``run/last.pt`` (weights, optimizer, schedule, RNG,
    history, early-stopping state) instead of starting again."""
    from banet.checkpoint import load_checkpoint
    from banet.cli.info import model_size
    from banet.evaluate import evaluate, training_summary
    from banet.train import build_model_config, fit, resolve_config
    from export.pipeline import ExportConfig, run_export

    folder = Path(settings.out) / entry.label
    record_path = folder / ENTRY_FILE
    key = _entry_key(entry, settings)
    if reuse and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("key") == key:
            say(f"  reusing {record_path}")
            return record
        raise ValueError(f"{record_path} was made with other settings ({record.get('key')}); use another --out "
                         f"or --force to train again")
    overrides = settings.train_overrides()
    if entry.seed is not None:
        overrides["seed"] = entry.seed
    config = resolve_config(settings.data, str(folder / "run"), settings.recipe, arch=entry.arch,
                            ablation=entry.ablation, **overrides)
    model_config = build_model_config(config)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    last = folder / "run" / "last.pt"
    resume = last if reuse and last.is_file() else None
    if resume is not None:
        stored = load_checkpoint(resume).get("train_config") or {}
        if stored != config.to_dict():
            differ = sorted(k for k in set(stored) | set(config.to_dict()) if stored.get(k) != config.to_dict().get(k))
            raise ValueError(f"{resume} was trained with other settings ({', '.join(differ)}); use another --out "
                             "or --force to train again")
    say(f"  train {entry.label}: {config.arch} {settings.preset}, ablation {entry.ablation}, seed {config.seed}, "
        f"at most {settings.epochs} epochs" + (f", patience {settings.patience}" if settings.patience else "")
        + (f" (continuing from {resume})" if resume else ""))
    result = fit(config, resume=resume, force=resume is None, bar_factory=_bar_factory, load_progress=_load_bar)
    timings["train_s"] = time.perf_counter() - started
    best = Path(result["best"])

    started = time.perf_counter()
    say(f"  evaluate {entry.label} on {settings.test_split}")
    from tqdm import tqdm

    with tqdm(desc=f"eval {entry.label}", unit="img", leave=False) as bar:
        scores = evaluate(best, settings.data, settings.test_split, device="cpu", progress=bar.update)
    timings["eval_s"] = time.perf_counter() - started

    size = model_size(model_config, settings.size)

    started = time.perf_counter()
    say(f"  export {entry.label}: FP32, FP16, INT8 ONNX with their parity gates")
    manifest = run_export(ExportConfig(
        checkpoint=str(best), out=str(folder / "export"), version=1, fp16=True, int8=True,
        calib_data=f"{settings.data}:train", calib_count=settings.calib_count,
        parity_data=f"{settings.data}:{settings.test_split}", parity_count=settings.parity_count,
        threads=settings.threads, engine=False, force=True), show_progress=True)
    timings["export_s"] = time.perf_counter() - started
    export_dir = Path(manifest["directory"])
    from export.pipeline import runtime_artifact

    artifacts = {}
    for precision in PRECISIONS:
        # the artifact ONNX Runtime's CPU provider runs (INT8: model_int8_cpu.onnx, not the TensorRT graph), from
        # the one mapping bench.suite uses too; its gate and agreement are that artifact's, scored in this export
        item = runtime_artifact(manifest["artifacts"], precision, "onnxruntime-cpu")
        if item is not None:
            p = item.get("parity", {})
            artifacts[precision] = {
                "name": item["name"], "path": str(export_dir / item["path"]), "gate": item.get("gate"),
                "mean_agreement": p.get("mean_agreement"), "worst_agreement": p.get("worst_agreement"),
                "ja_change": (None if p.get("artifact_ja") is None or p.get("reference_ja") is None
                              else p["artifact_ja"] - p["reference_ja"]),
                "images": p.get("images")}
    # the whole run (last.pt): best.pt stops at the best epoch, so its epochs, time and curve would be cut there
    last_state = load_checkpoint(Path(result["last"]))
    training = training_summary(last_state)
    record = {
        "key": key, "label": entry.label, "row": entry.row, "seed": config.seed, "arch": entry.arch,
        "ablation": entry.ablation, "model_config": model_config.to_dict(),
        "metrics": scores["model"]["mean"], "metrics_aggregate": scores["model"]["aggregate"],
        "metrics_paper": scores["model_paper"]["mean"], "metrics_paper_aggregate": scores["model_paper"]["aggregate"],
        "paper_score_size": scores["paper_score_size"],
        "test_images": len(scores["per_image"]),
        "params": size["params"], "gflops": size["gflops"],
        "training": {"epochs": training["epoch"], "steps": training["step"],
                     "train_seconds": training["train_seconds"], "val_history": training["val_history"],
                     "best": str(best), "best_epoch": _best_epoch(training["val_history"]),
                     "stopped_early": bool(last_state.get("stopped_early")),
                     "precision": (training.get("train_config") or {}).get("amp")},
        "artifacts": artifacts, "timings": timings,
    }
    record_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = record_path.with_name(f".{ENTRY_FILE}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(record_path)
    return record


def tensorrt_int8(record: dict[str, Any]) -> dict[str, Any] | None:
    """The TensorRT INT8 graph of an entry's export (what TensorRT and ORT's CUDA provider would run: not timed
    here) with its gate, read from the export's manifest beside the entry's FP32 artifact; None without one."""
    from export.pipeline import MANIFEST, runtime_artifact

    fp32 = (record.get("artifacts") or {}).get("fp32")
    manifest = Path(fp32["path"]).parent / MANIFEST if fp32 and fp32.get("path") else None
    if manifest is None or not manifest.is_file():
        return None
    item = runtime_artifact(json.loads(manifest.read_text())["artifacts"], "int8", "tensorrt")
    if item is None:
        return None
    p = item.get("parity", {})
    return {"name": item["name"], "gate": item.get("gate"), "placement": item.get("placement"),
            "mean_agreement": p.get("mean_agreement"), "worst_agreement": p.get("worst_agreement"),
            "images": p.get("images")}


def _best_epoch(val_history: list[dict[str, Any]]) -> int | None:
    scored = [h for h in val_history if h.get("JA") is not None]
    return max(scored, key=lambda h: h["JA"])["epoch"] if scored else None


def write_progress(records: list[dict[str, Any]], out: str | Path) -> Path:
    """``OUT/progress.md``: the rows finished so far (both scorings, epochs, early stop), rewritten after every
    entry so that a long comparison shows its results as runs finish."""
    from banet.atomic import write_text
    from banet.metrics import METRIC_NAMES

    lines = ["# banet-compare: runs finished so far", "",
             "Test scores (mean over images, %) at the paper's 256x256 and at each image's original size.", "",
             "| run | " + " | ".join(f"{m} (256)" for m in METRIC_NAMES) + " | JA (orig.) | DI (orig.) | "
             "epochs (best) | stopped early | train min |",
             "|---|" + "---:|" * (len(METRIC_NAMES) + 5)]
    for r in records:
        paper, orig, t = r.get("metrics_paper") or {}, r["metrics"], r["training"]
        lines.append(f"| {r['label']} | " + " | ".join(f"{100 * paper[m]:.1f}" if m in paper else "-"
                                                       for m in METRIC_NAMES)
                     + f" | {100 * orig['JA']:.1f} | {100 * orig['DI']:.1f} | {t['epochs']} ({t.get('best_epoch')}) | "
                     f"{'yes' if t.get('stopped_early') else 'no'} | {t['train_seconds'] / 60:.1f} |")
    path = Path(out) / "progress.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


# --- the latency block: every artifact of every entry, interleaved --------------------------------
def measure_ratios(records: list[dict[str, Any]], settings: Settings, *, reference: str | None,
                   say=print) -> dict[str, Any]:
    """ONNX Runtime batch-1 latency of every entry's FP32/FP16/INT8 artifact, interleaved; ratios per repeat.

    Returns ``{"repeats": [{backend: p50_ms}], "ratios": {label: {"fp16_vs_fp32": {median, min, max}, ...}}}``.
    """
    from bench.backends import ort_backend
    from export.pipeline import ARTIFACT_BY_RUNTIME
    from bench.inputs import load_pool
    from bench.latency import measure_interleaved

    pool = load_pool(settings.data, split=settings.test_split, limit=settings.latency_images, size=settings.size)
    backends = []
    for record in records:
        for precision in PRECISIONS:
            art = record["artifacts"].get(precision)
            if art is None or art.get("name", ARTIFACT_BY_RUNTIME["onnxruntime-cpu"][precision]) != \
                    ARTIFACT_BY_RUNTIME["onnxruntime-cpu"][precision] or (precision == "int8" and "name" not in art):
                continue  # a record from before the one mapping (its INT8 was the TensorRT graph): not timed
            backend = ort_backend(art["path"], precision, threads=settings.threads)
            backend.name = f"{record['label']}/{precision}"
            backends.append(backend)
    repeats: list[dict[str, float]] = []
    skipped: dict[str, str] = {}
    for r in range(settings.latency_repeats):
        say(f"  latency block {r + 1}/{settings.latency_repeats}: {len(backends)} ONNX Runtime sessions, "
            f"{settings.latency_rounds} interleaved rounds at batch 1")
        rows = measure_interleaved(backends, pool, 1, warmup=settings.latency_warmup if r == 0 else 1,
                                   iters=settings.latency_rounds)
        repeats.append({row.backend: row.stats.p50_ms for row in rows if row.stats is not None})
        skipped.update({row.backend: row.skipped for row in rows if row.skipped})
    for backend in backends:
        backend.close()

    def spread(values: list[float]) -> dict[str, float] | None:
        if not values:
            return None
        return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values)),
                "n": len(values)}

    ratios: dict[str, Any] = {}
    for record in records:
        label = record["label"]
        row: dict[str, Any] = {"fp32_p50_ms": spread([rep[f"{label}/fp32"] for rep in repeats if f"{label}/fp32" in rep])}
        for precision in PRECISIONS[1:]:
            row[f"{precision}_vs_fp32"] = spread([rep[f"{label}/{precision}"] / rep[f"{label}/fp32"] for rep in repeats
                                                  if f"{label}/{precision}" in rep and f"{label}/fp32" in rep])
        if reference is not None:
            row["fp32_vs_reference"] = spread([rep[f"{label}/fp32"] / rep[f"{reference}/fp32"] for rep in repeats
                                               if f"{label}/fp32" in rep and f"{reference}/fp32" in rep])
        ratios[label] = row
    return {"batch_size": 1, "images": len(pool), "rounds": settings.latency_rounds,
            "warmup": settings.latency_warmup, "repeats": repeats, "ratios": ratios, "reference": reference,
            "skipped": skipped, "threads": settings.threads}


# --- the command --------------------------------------------------------------------------------------
def compare(settings: Settings, entries: list[Entry], *, reuse: bool = False, say=print) -> dict[str, Any]:
    """Run every entry, then the latency block; returns the result (what the results files hold)."""
    from banet.machine import machine_info

    machine_start = machine_info()
    started = time.perf_counter()
    records = []
    for i, entry in enumerate(entries, start=1):
        say(f"[{i}/{len(entries)}] {entry.label}")
        record = run_entry(entry, settings, reuse=reuse, say=say)
        record["tensorrt_int8"] = tensorrt_int8(record)  # also for entries reused from before this field
        records.append(record)
        write_progress(records, settings.out)
    labels = [r["label"] for r in records]
    reference = "banet" if "banet" in labels else None
    say(f"[latency] {len(records)} entries x {len(PRECISIONS)} precisions")
    latency = measure_ratios(records, settings, reference=reference, say=say)
    machine_end = machine_info()
    return {
        "kind": "banet-compare/1",
        "settings": settings.__dict__,
        "entries": records,
        "latency": latency,
        "machine": machine_start,
        "load_average_end": machine_end.get("load_average"),
        "date_end": machine_end.get("date"),
        "wall_seconds": time.perf_counter() - started,
    }


def build_parser() -> argparse.ArgumentParser:
    from banet.model import registry
    from banet.model.config import ABLATIONS
    from banet.train import RECIPES

    p = argparse.ArgumentParser(prog="banet-compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_data(p, split=None, required=True, help="data set folder (any layout banet-train reads)")
    p.add_argument("--out", required=True, help="folder for every entry's run, export and entry.json")
    p.add_argument("--arch", nargs="*", default=list(registry.ARCHITECTURES), choices=list(registry.ARCHITECTURES),
                   metavar="ARCH", help=f"architectures (default all: {' '.join(registry.ARCHITECTURES)})")
    p.add_argument("--ablation", nargs="*", default=[a for a in ABLATIONS if a != "full"], choices=list(ABLATIONS),
                   metavar="ABLATION", help="BA-Net ablations to add (default: every one but full; none: --ablation)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="official")
    p.add_argument("--preset", default="tiny", help="every architecture's preset (tiny: CPU scale; paper: published)")
    p.add_argument("--size", type=int, default=128, help="training and evaluation resolution")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-steps", type=int, help="stop every training run after this many steps (CI)")
    p.add_argument("--patience", type=int, metavar="EPOCHS",
                   help="early stopping: end a run when its val JA has not improved for this many epochs "
                        "(--epochs is then the cap)")
    p.add_argument("--lr", type=float, help="learning rate for every run (default: the recipe's)")
    p.add_argument("--extra-seeds", type=int, nargs="*", default=[], metavar="SEED",
                   help="train the rows named by --seed-rows again with each of these seeds (the seed spread)")
    p.add_argument("--seed-rows", nargs="*", default=[], metavar="ROW",
                   help="rows that get --extra-seeds runs, e.g. banet banet-baseline attention_unet")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="training device (evaluation and ONNX Runtime run on the CPU)")
    p.add_argument("--workers", type=int, default=2, help="decode threads")
    p.add_argument("--test-split", default="test")
    p.add_argument("--calib-count", type=int, default=64, help="INT8 calibration images from the train split")
    p.add_argument("--parity-count", type=int, default=50, help="test images for the FP16/INT8 mask agreement")
    p.add_argument("--latency-images", type=int, default=16)
    p.add_argument("--latency-rounds", type=int, default=20, help="interleaved timed rounds per repeat")
    p.add_argument("--latency-repeats", type=int, default=3, help="repeats of the latency block (the spread)")
    options.add_threads(p)
    options.add_output(p, name="optional", out_flag="--results", dest="results")  # --out: the runs' folder
    p.add_argument("--resume", "--reuse", dest="reuse", action="store_true",
                   help="take finished entries already in --out (same settings) and continue killed runs from "
                        "their last checkpoint")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from banet.checkpoint import CheckpointError
    from banet.data.pairs import DatasetError
    from banet.train import TrainError
    from references.training.compare_tables import PLOTS, write_results
    from export.pipeline import ExportError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    settings = Settings(
        data=args.data, out=args.out, recipe=args.recipe, preset=args.preset, size=args.size, epochs=args.epochs,
        max_steps=args.max_steps, patience=args.patience, lr=args.lr, batch_size=args.batch_size, seed=args.seed, device=args.device,
        workers=args.workers, test_split=args.test_split, calib_count=args.calib_count,
        parity_count=args.parity_count, latency_images=args.latency_images, latency_rounds=args.latency_rounds,
        latency_repeats=args.latency_repeats, threads=args.threads)
    args.tag = args.tag or f"{Path(args.data).resolve().name}_{args.preset}{args.size}"
    try:
        from export.precision import MIN_CALIBRATION_IMAGES

        if args.calib_count < MIN_CALIBRATION_IMAGES:  # refused now, not after the first training run
            raise ValueError(f"--calib-count {args.calib_count} is too small: INT8 calibration needs at least "
                             f"{MIN_CALIBRATION_IMAGES} images")
        for name in ("epochs", "batch_size", "size", "latency_images", "latency_rounds", "latency_repeats",
                     "parity_count"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        if args.patience is not None and args.patience < 1:
            raise ValueError(f"--patience must be >= 1, got {args.patience}")
        entries = entries_for(args.arch, args.ablation, extra_seeds=args.extra_seeds, seed_rows=args.seed_rows)
        # refused before hours of work, not after: compare_<date>_<machine>_<data>_<preset><size>, or --name
        files = options.result_files(args, kind="compare", plots=PLOTS, dest="results",
                                     command=command_line("banet-compare", argv))
        out = Path(args.out)
        finished = [e.label for e in entries if (out / e.label / ENTRY_FILE).exists()
                    or (out / e.label / "run" / "last.pt").exists()]
        if finished and not (args.reuse or args.force):
            raise FileExistsError(f"{out} already holds entries {finished}; pass --resume to take them (and "
                                  "continue unfinished runs) or --force to train them again")
        for label in (finished if args.force and not args.reuse else []):
            (out / label / ENTRY_FILE).unlink(missing_ok=True)
        result = compare(settings, entries, reuse=args.reuse)
        paths = write_results(result, files)
    except (CheckpointError, DatasetError, TrainError, ExportError, ValueError, FileExistsError) as err:
        print(f"banet-compare: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
