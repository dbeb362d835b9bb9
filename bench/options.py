"""Shared command-line option groups of every measuring command (Polygraphy's ``tools/args/`` model).

Each ``add_*`` adds one group to an :class:`argparse.ArgumentParser` with the same flags, defaults and help
wherever it is used; :func:`result_files` turns the output group into the one results writer. A command
declares only the options that are its own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from banet.data import kvasir_split
from bench.results import RESULTS_DIR, ResultFiles


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
             help: str | None = None) -> None:
    """``--data``: a dataset folder or ``ROOT:SPLIT``; default the Kvasir-SEG ``split`` under the data root."""
    default = None if required or split is None else kvasir_split(split)
    p.add_argument("--data", default=default, required=required,
                   help=help or f"dataset folder or ROOT:SPLIT (default: Kvasir-SEG {split} under $BANET_DATA "
                                f"or ../shared/data)")


def add_checkpoint(p: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup, *, required: bool = False,
                   help: str = "trained checkpoint (banet-train, or banet-info --random-checkpoint)") -> None:
    p.add_argument("--checkpoint", type=Path, required=required, help=help)


def add_output(p: argparse.ArgumentParser, *, tag: str | None = None, name: bool = False,
               out_flag: str = "--out") -> None:
    """``--out`` (default bench/results), ``--force``, and ``--tag`` (a file-name suffix) or ``--name`` (the stem)."""
    p.add_argument(out_flag, type=Path, default=RESULTS_DIR, dest="out",
                   help="results folder (default: bench/results)")
    p.add_argument("--force", action="store_true", help="replace existing results files of the same name")
    if name:
        p.add_argument("--name", required=True, help="results file stem")
    else:
        p.add_argument("--tag", default=tag, help="file name suffix")


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


def add_backends(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backends", nargs="+", default=None, help="only backends whose name contains one of these")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: ORT's)")


def result_files(args: argparse.Namespace, *, kind: str | None, command: str, plots=(),
                 parser: argparse.ArgumentParser | None = None) -> ResultFiles:
    """The one results writer for ``args`` of :func:`add_output`: ``--name`` as the stem, else a dated
    ``<kind>_<date>_<machine>_<tag>``; an existing file is a parser error (before anything is measured)."""
    try:
        if getattr(args, "name", None):
            return ResultFiles(args.out, args.name, force=args.force, plots=plots, command=command)
        return ResultFiles.dated(args.out, kind, getattr(args, "tag", None), force=args.force, plots=plots,
                                 command=command)
    except FileExistsError as err:
        if parser is None:
            raise
        parser.error(str(err))
        raise  # unreachable: parser.error exits
