"""The spread of the bench's CPU ratios over several recorded ``banet-bench`` runs.

On shared CPUs one run's ratio is one draw: the same command gave ORT FP32 3.5x to 35x PyTorch on
the tiny model within an hour. This command reads banet-bench result files (their ``goals``, as
the bench computed them) and writes min / median / max of each ratio over the runs, with every
run's file, command, model and artifacts, so a figure can be quoted as a spread and traced:

    python -m references.precision.spread --name spread_tiny128 bench/results/2026-11-26T18*_tiny128*.json ...

Writes ``<results>/<name>.json`` and ``.md`` (refuses to replace them without ``--force``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

from bench.results import RESULTS_DIR

from banet.atomic import write_text

RATIOS = ("ORT FP32 vs PyTorch FP32 eager", "ORT INT8 vs ORT FP32")
"""Goal names (up to their first comma) in banet-bench results whose ``achieved`` is a ratio."""


def _ratio(text: str | None) -> float | None:
    if not text or not text.endswith("x"):
        return None
    try:
        return float(text[:-1])
    except ValueError:
        return None


def read_run(path: Path) -> dict:
    """One banet-bench result file -> its ratios and where its inputs came from."""
    result = json.loads(path.read_text())
    if "goals" not in result or "latency" not in result:
        raise ValueError(f"{path}: not a banet-bench result (no goals/latency)")
    achieved = {g["goal"].split(",")[0]: g.get("achieved") for g in result["goals"]}
    return {
        "file": str(path), "date": result["machine"].get("date"), "command": result.get("command"),
        "load_average": result["machine"].get("load_average"),
        "model": result.get("model", {}).get("description"), "image_size": result.get("image_size"),
        "artifacts": result.get("artifacts"),
        "ratios": {name: _ratio(achieved.get(name)) for name in RATIOS},
    }


def spread(runs: list[dict]) -> dict:
    """min / median / max of each ratio over the runs that measured it."""
    out = {}
    for name in RATIOS:
        values = [r["ratios"][name] for r in runs if r["ratios"][name] is not None]
        out[name] = ({"runs": len(values), "min": min(values), "median": statistics.median(values), "max": max(values)}
                     if values else {"runs": 0})
    return out


def markdown(report: dict) -> str:
    lines = [f"# Spread of the bench's CPU ratios: {report['name']}", "",
             f"- command: `{report['command']}`", f"- date (UTC): {report['date']}", "",
             "Each ratio is a p50 ratio at batch 1 as banet-bench computed it in one run (its `goals`); "
             "the spread is over the runs listed below.", "",
             "| ratio | runs | min | median | max |", "|---|---:|---:|---:|---:|"]
    for name, s in report["spread"].items():
        if s["runs"]:
            lines.append(f"| {name} | {s['runs']} | {s['min']:.2f}x | {s['median']:.2f}x | {s['max']:.2f}x |")
        else:
            lines.append(f"| {name} | 0 | - | - | - |")
    lines += ["", "| run | model | size | artifacts | " + " | ".join(RATIOS) + " |",
              "|---|---|---:|---|" + "---:|" * len(RATIOS)]
    for r in report["runs"]:
        ratios = " | ".join("-" if r["ratios"][n] is None else f"{r['ratios'][n]:.2f}x" for n in RATIOS)
        lines.append(f"| {Path(r['file']).name} | {r['model']} | {r['image_size']} | {r['artifacts']} | {ratios} |")
    if report.get("note"):
        lines += ["", report["note"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m references.precision.spread", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="banet-bench result JSON files")
    p.add_argument("--name", required=True, help="results file stem")
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    p.add_argument("--note", help="a line of context written into the Markdown")
    p.add_argument("--force", action="store_true", help="replace existing results files")
    args = p.parse_args(argv)
    targets = [args.results / f"{args.name}.json", args.results / f"{args.name}.md"]
    for path in targets:
        if path.exists() and not args.force:
            p.error(f"{path} exists; pass --force to replace it")
    try:
        runs = sorted((read_run(f) for f in args.files), key=lambda r: r["date"] or "")
    except (OSError, ValueError, KeyError) as err:
        p.error(str(err))
    from datetime import datetime, timezone

    report = {"name": args.name, "command": shlex.join(["python", "-m", "references.precision.spread", *(argv or sys.argv[1:])]),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "note": args.note,
              "spread": spread(runs), "runs": runs}
    args.results.mkdir(parents=True, exist_ok=True)
    write_text(targets[0], json.dumps(report, indent=2) + "\n")
    write_text(targets[1], markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
