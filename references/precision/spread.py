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
import statistics
import sys
from pathlib import Path



RATIOS = ("ORT FP32 vs PyTorch FP32 eager", "ORT INT8 vs ORT FP32")
"""Goal names (up to their first comma) in banet-bench results whose ``achieved`` is a ratio."""


def read_run(path: Path) -> dict:
    """One banet-bench result file -> its ratios and where its inputs came from.

    The file is read through its types (:class:`bench.results.BenchRun`: latency and parity rows) and the
    ratios recomputed with :mod:`bench.goals` from the rows' numbers (``p50_ms``, per-repeat ``repeat_p50_ms``),
    never parsed back from the display strings ("3.49x") of the goals table.
    """
    from bench.results import BenchRun

    run = BenchRun.read(path)
    found = {g.goal.split(",")[0]: g.value for g in run.goals()}
    return {
        "file": str(path), "date": run.machine.get("date"), "command": run.command,
        "load_average": run.machine.get("load_average"), "model": run.model.get("description"),
        "image_size": run.image_size, "artifacts": run.artifacts,
        "ratios": {name: found.get(name) for name in RATIOS},
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
    from bench import options
    from bench.results import command_line

    p = argparse.ArgumentParser(prog="python -m references.precision.spread", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="banet-bench result JSON files")
    options.add_output(p, name=True, out_flag="--results")
    p.add_argument("--note", help="a line of context written into the Markdown")
    args = p.parse_args(argv)
    files = options.result_files(args, kind="spread", command=command_line("python -m references.precision.spread",
                                                                            argv), parser=p)
    try:
        runs = sorted((read_run(f) for f in args.files), key=lambda r: r["date"] or "")
    except (OSError, ValueError, KeyError) as err:
        p.error(str(err))
    report = {"name": args.name, "date": files.machine["date"], "note": args.note,
              "spread": spread(runs), "runs": runs}
    options.finish(files, report, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
