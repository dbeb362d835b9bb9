"""``banet-release``: a trained checkpoint made fit to ship, with its model card.

Example::

    banet-release runs/compare/banet/run/best.pt --data ../shared/data/kvasir-seg --out models \\
        --name banet_tiny128_kvasir

writes ``models/NAME.pt`` (weights, model and train config, history; no optimizer state), ``models/NAME.md``
(the model card: data, split, recipe, test scores at 256x256 as the paper and at the original size, the data's
license) and ``models/NAME.json`` (the scores, command, machine). Refuses to replace them without ``--force``.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="banet-release", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint written by banet-train (best.pt)")
    p.add_argument("--data", required=True, help="the data set it was trained on (its test split is scored)")
    p.add_argument("--split", action="append", help="split(s) to score for the card (default: test)")
    p.add_argument("--out", required=True, help="folder for NAME.pt, NAME.md, NAME.json")
    p.add_argument("--name", help="file stem (default: the checkpoint's run folder name)")
    p.add_argument("--chosen", metavar="TEXT",
                   help="why this run is the one released, for the card (e.g. 'the best of seeds 0-2 by validation "
                        "JA: 70.6 vs 70.3, 69.7')")
    p.add_argument("--force", action="store_true", help="replace existing files")
    return p


def main(argv: list[str] | None = None) -> int:
    from banet.checkpoint import CheckpointError
    from banet.data.pairs import DatasetError
    from banet.release import write_release

    args = build_parser().parse_args(argv)
    command = shlex.join(["banet-release", *(argv if argv is not None else sys.argv[1:])])
    try:
        paths = write_release(args.checkpoint, args.out, data=args.data, splits=tuple(args.split or ["test"]),
                              name=args.name, command=command, force=args.force, chosen=args.chosen)
    except (CheckpointError, DatasetError, FileExistsError, ValueError) as err:
        print(f"banet-release: error: {err}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
