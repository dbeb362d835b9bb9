"""Shared command-line option groups of every measuring command (Polygraphy's ``tools/args/`` model).

Each ``add_*`` adds one group to an :class:`argparse.ArgumentParser` with the same flags, defaults and help
wherever it is used; :func:`result_files` turns the output group into the one results writer. A command
declares only the options that are its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from banet.data import kvasir_split
from bench.results import RESULTS_DIR, ResultFiles, command_line


def positive_ints(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``; an argparse type."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_data(p: argparse.ArgumentParser, *, split: str | None = "test", required: bool = False,
             help: str | None = None, type: Callable[[str], object] = str) -> None:
    """``--data``: a dataset folder or ``ROOT:SPLIT``; default the Kvasir-SEG ``split`` under the data root
    (none with ``split=None``: a datasets root or a folder the command requires or defaults itself)."""
    default = None if required or split is None else kvasir_split(split)
    p.add_argument("--data", default=default, required=required, type=type,
                   help=help or f"dataset folder or ROOT:SPLIT (default: Kvasir-SEG {split} under $BANET_DATA "
                                f"or ../shared/data)")


def add_checkpoint(p: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup, *, required: bool = False,
                   help: str = "trained checkpoint (banet-train, or banet-info --random-checkpoint)") -> None:
    p.add_argument("--checkpoint", type=Path, required=required, help=help)


def add_output(p: argparse.ArgumentParser, *, tag: str | None = None, name: bool | str = False,
               out_flag: str = "--out", dest: str = "out") -> None:
    """``--out`` (default bench/results), ``--force``, and ``--tag`` (a file-name suffix of the dated name) or
    ``--name`` (the stem; ``name=True``: required, ``name="optional"``: ``--name`` or else ``--tag``).
    ``dest``: the attribute of the folder (another than ``out`` where a command's ``--out`` is something else)."""
    p.add_argument(out_flag, type=Path, default=RESULTS_DIR, dest=dest,
                   help="results folder (default: bench/results)")
    p.add_argument("--force", action="store_true", help="replace existing results files of the same name")
    if name:
        p.add_argument("--name", required=name is True,
                       help="results file stem" + ("" if name is True else " (default: the dated name with --tag)"))
    if name is not True:
        p.add_argument("--tag", default=tag, help=f"file name suffix (default: {tag or 'none'})")


def add_export(p: argparse.ArgumentParser, *, calib_method: bool = True) -> None:
    """What a measuring command that exports a checkpoint itself takes: the checkpoint, INT8 calibration
    (``--calib-data``, ``--calib-count``, ``--calib-method``), the parity images and the image size."""
    from export.precision import DEFAULT_CALIBRATION_METHOD

    p.add_argument("--checkpoint", required=True, help="trained checkpoint to export")
    p.add_argument("--calib-data", required=True, help="INT8 calibration images: a folder or ROOT:SPLIT")
    p.add_argument("--calib-count", type=int, default=256, help="calibration images (default 256)")
    if calib_method:
        p.add_argument("--calib-method", default=DEFAULT_CALIBRATION_METHOD, help="percentile or minmax")
    p.add_argument("--parity-data", help="images of the accuracy gates: a folder or ROOT:SPLIT")
    p.add_argument("--parity-count", type=int, help="how many of them (default: all)")
    p.add_argument("--image-size", type=int, help="export size (default: the checkpoint's training size)")


def add_repeats(p: argparse.ArgumentParser, *, flag: str = "--repeats", default: int = 1,
                help: str = "repeat the whole measurement this many times (spread over repeats)") -> None:
    p.add_argument(flag, type=int, default=default, help=help)


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: ORT's)")


def add_backends(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backends", nargs="+", default=None, help="only backends whose name contains one of these")
    add_threads(p)


def add_note(p: argparse.ArgumentParser) -> None:
    p.add_argument("--note", help="a line of context written into the Markdown (e.g. 'random weights')")


def export_report_parser(prog: str, doc: str, *, calib_method: bool = True) -> argparse.ArgumentParser:
    """The parser of a command that exports a checkpoint itself and reports on it (precision_parity,
    tensorrt_builds): :func:`add_export`, ``--results``/``--name``/``--force``, ``--threads``, ``--note``."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    add_export(p, calib_method=calib_method)
    add_output(p, name=True, out_flag="--results")
    add_threads(p)
    add_note(p)
    return p


def result_files(args: argparse.Namespace, *, kind: str | None, command: str, plots=(),
                 parser: argparse.ArgumentParser | None = None, dest: str = "out") -> ResultFiles:
    """The one results writer for ``args`` of :func:`add_output`: ``--name`` as the stem, else a dated
    ``<kind>_<date>_<machine>_<tag>``; an existing file is a parser error (before anything is measured)."""
    try:
        if getattr(args, "name", None):
            return ResultFiles(getattr(args, dest), args.name, force=args.force, plots=plots, command=command)
        return ResultFiles.dated(getattr(args, dest), kind, getattr(args, "tag", None), force=args.force, plots=plots,
                                 command=command)
    except FileExistsError as err:
        if parser is None:
            raise
        parser.error(str(err))
        raise  # unreachable: parser.error exits


def claim(args: argparse.Namespace, *, prog: str, argv: Sequence[str] | None, kind: str | None = None,
          plots=()) -> ResultFiles | None:
    """:func:`result_files` for a command that returns its exit status: None (after saying why on stderr)
    when a results file exists without ``--force``; the caller returns 2 before measuring anything."""
    try:
        return result_files(args, kind=kind, command=command_line(prog, argv), plots=plots)
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return None


def finish(files: ResultFiles, result: dict, markdown: Callable[[dict], str],
           plots: Mapping[str, Callable[[Path], Path | None]] | None = None) -> dict[str, Path]:
    """Write the result, then show its Markdown and the files written (the command owns the terminal)."""
    paths = files.write(result, markdown, plots)
    print(markdown(result))
    print(f"wrote {', '.join(map(str, paths.values()))}")
    return paths
