"""Retrain one configuration with an older commit's code and with this tree: val/test JA per epoch.

    python -m references.training.before_after --data ../shared/data/kvasir-seg --before 1b897c6 --epochs 5 \\
        --work runs/gate_fix --tag gate_fix_tiny128

Both runs use the same seed, data, split and flags (``TRAIN_FLAGS`` plus ``--epochs``): a
``tiny`` BA-Net at 128 px, Adam at a constant lr 1e-3 (a constant lr makes resuming epoch by
epoch equal to one uninterrupted run), batch 8, flips only, BCE deep supervision. ``--recipe
paper`` is named only because both versions accept it: every field it sets that differs between
the two versions is overridden. Both versions come from ``git archive COMMIT banet`` (``--after``
defaults to HEAD, so edits made while the runs go on cannot leak into them) and run from their
own folders; each version trains and evaluates with its own code.

After every epoch, ``banet-eval`` of that version scores ``last.pt`` on the val and test splits
at each image's original size; the training-resolution val JA of ``history.json`` is kept too.
Writes ``OUT/before_after_<date>_<machine>_<tag>.json`` (or ``--name``) and ``.md`` (command, machine, date,
commits, both curves) and a ``_curves.png`` through ``bench.results.ResultFiles``; refuses to replace them without
``--force``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from pathlib import Path

log = logging.getLogger("references.training.before_after")

REPO = Path(__file__).resolve().parents[2]
TRAIN_FLAGS = ("--recipe", "paper", "--preset", "tiny", "--size", "128", "--optimizer", "adam", "--lr", "1e-3",
               "--schedule", "constant", "--batch-size", "8", "--augment", "flips", "--deep-supervision", "1",
               "--seed", "0", "--workers", "2")


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout.strip()


def extract(commit: str, dest: Path) -> Path:
    """The ``banet`` package of ``commit`` unpacked under ``dest`` (a folder that can run ``-m banet...``)."""
    if (dest / "banet").is_dir():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "src.tar"
    with open(archive, "wb") as fh:
        subprocess.run(["git", "-C", str(REPO), "archive", commit, "banet"], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    return dest


def run_version(name: str, source: Path, data: str, work: Path, epochs: int, log_dir: Path) -> list[dict]:
    """Train ``epochs`` epochs (one ``banet-train`` call each, resuming) and evaluate after each."""
    run = work / name
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("OMP_NUM_THREADS", "1")
    curve = []
    with open(log_dir / f"{name}.log", "a") as logfile:
        def call(args: list[str]) -> None:
            logfile.write("$ " + shlex.join(args) + "\n")
            logfile.flush()
            subprocess.run(args, cwd=source, env=env, stdout=logfile, stderr=subprocess.STDOUT, check=True)

        for epoch in range(1, epochs + 1):
            eval_json = run / f"eval_epoch{epoch}.json"
            if not eval_json.is_file():  # a rerun continues where an interrupted one stopped
                last = run / "last.pt"
                done = json.loads((run / "history.json").read_text())[-1]["epoch"] if last.is_file() else 0
                if done < epoch:
                    first = [] if last.is_file() else ["--data", data, "--out", str(run), *TRAIN_FLAGS]
                    resume = ["--resume", str(last)] if last.is_file() else []
                    call([sys.executable, "-m", "banet.cli.train", *first, *resume, "--epochs", str(epoch)])
                call([sys.executable, "-m", "banet.cli.evaluate", str(last), "--data", data, "--split", "val",
                      "--split", "test", "--json", str(eval_json), "--force"])
            history = json.loads((run / "history.json").read_text())[epoch - 1]
            scores = json.loads(eval_json.read_text())
            curve.append({
                "epoch": epoch, "train_loss": history["loss"].get("total"),
                "val_JA_train_res": history["val"]["mean"]["JA"],
                **{f"{split}_{k}": _split(scores, split)["model"]["mean"][k] for split in ("val", "test")
                   for k in ("JA", "DI")},
                "train_seconds": history["train_seconds"],
            })
            log.info("%s epoch %d: val JA %.4f test JA %.4f", name, epoch, curve[-1]["val_JA"], curve[-1]["test_JA"])
    return curve


def _split(scores: dict, split: str) -> dict:
    """One split's result in a banet-eval JSON (``{"evaluations": [...]}`` for several splits)."""
    for block in scores.get("evaluations", [scores]):
        if block["split"] == split:
            return block
    raise KeyError(f"no split {split!r} in the evaluation JSON")


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"# {result['title']}",
        "",
        f"- command: `{result['command']}`",
        f"- date (UTC): {result['date']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, GPU: {m.get('gpu') or 'none'}; load average "
        f"{result['loadavg_start']} at start, {result['loadavg_end']} at the end (the cores are shared)",
        f"- data: `{result['data']}`, split file of the dataset (train / val / test)",
        f"- training flags (both runs): `{' '.join(result['train_flags'])}` and `--epochs N`, one epoch per call "
        "(`--resume`); OMP_NUM_THREADS=1",
        f"- before: commit `{result['versions']['before']['commit']}`; after: commit "
        f"`{result['versions']['after']['commit']}`",
        "- val/test JA and DI: `banet-eval` of `last.pt` after each epoch, mean over images, at each image's "
        "original size; val JA (train res): the training loop's validation at 128 px",
        "",
        "| epoch | before: loss | before: val JA | before: test JA | after: loss | after: val JA | after: test JA |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    before, after = result["versions"]["before"]["curve"], result["versions"]["after"]["curve"]
    for b, a in zip(before, after):
        lines.append(f"| {b['epoch']} | {b['train_loss']:.4f} | {b['val_JA']:.4f} | {b['test_JA']:.4f} | "
                     f"{a['train_loss']:.4f} | {a['val_JA']:.4f} | {a['test_JA']:.4f} |")
    lines += ["", "Per epoch also in the JSON: DI, the training-resolution val JA and the seconds in training steps.",
              "", result.get("note", ""), ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> Path:
    from bench.results import figure

    with figure(path, figsize=(6, 3.6)) as (fig, ax):
        for name, style in (("before", "--"), ("after", "-")):
            curve = result["versions"][name]["curve"]
            epochs = [r["epoch"] for r in curve]
            ax.plot(epochs, [r["val_JA"] for r in curve], style, marker="o", label=f"{name}: val JA")
            ax.plot(epochs, [r["test_JA"] for r in curve], style, marker="s", label=f"{name}: test JA")
        ax.set(xlabel="epoch", ylabel="JA (mean over images)")
        ax.set_title("\n".join(textwrap.wrap(result["title"], 70)), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return path


PROG = "python -m references.training.before_after"


def main(argv: list[str] | None = None) -> int:
    from bench import options

    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_data(p, split=None, required=True, help="dataset folder (images/, masks/, a split file)")
    p.add_argument("--before", required=True, help="commit whose banet/ is the 'before' code")
    p.add_argument("--after", default="HEAD", help="commit whose banet/ is the 'after' code (default HEAD)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--work", type=Path, required=True, help="folder for the old source and both run folders")
    options.add_output(p, name="optional")
    p.add_argument("--title", default="Retrained before and after")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    files = options.claim(args, prog=PROG, argv=argv, kind="before_after", plots=("curves",))
    if files is None:
        return 2
    if not Path(args.data).is_dir():
        print(f"before_after: {args.data}: not a folder", file=sys.stderr)
        return 2
    before, after = _git("rev-parse", args.before), _git("rev-parse", args.after)
    args.work.mkdir(parents=True, exist_ok=True)
    sources = {"before": extract(before, args.work / f"src_{before[:12]}"),
               "after": extract(after, args.work / f"src_{after[:12]}")}
    started = time.perf_counter()
    curves: dict[str, list] = {}
    errors: dict[str, BaseException] = {}

    def work(name):
        try:
            curves[name] = run_version(name, sources[name], str(Path(args.data).resolve()), args.work.resolve(),
                                       args.epochs, args.work)
        except BaseException as err:  # noqa: BLE001 - reported below, with the log file to read
            errors[name] = err

    threads = [threading.Thread(target=work, args=(n,)) for n in ("before", "after")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for name, err in errors.items():
            print(f"before_after: the {name} run failed ({err}); see {args.work / (name + '.log')}", file=sys.stderr)
        return 1
    result = {
        "title": args.title, "tag": args.tag, "date": files.machine["date"],
        "loadavg_start": files.machine["load_average"], "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "wall_seconds": round(time.perf_counter() - started, 1),
        "data": str(args.data), "train_flags": list(TRAIN_FLAGS), "epochs": args.epochs,
        "versions": {"before": {"commit": before, "curve": curves["before"]},
                     "after": {"commit": after, "curve": curves["after"]}},
        "note": args.note,
    }
    options.finish(files, result, markdown, {"curves": lambda path: plot(result, path)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
