"""Train/val/test splits: a CSV file, file-name prefixes, or a seeded random split.

How :func:`banet.data.pairs.find_pairs` chooses, in this order:

1. a CSV file (``split_file``, else the first ``ROOT/splits*.csv``) with a ``name`` column and a column
   whose name ends in ``split`` (Kvasir-SEG's ``splits_effisegnet.csv``);
2. file-name prefixes ``train_``, ``val_``, ``test_`` when any file carries one (ISIC-2017);
3. otherwise (CVC-ColonDB, SZ-CXR and RIM-ONE publish no split) :func:`seeded_split` of the paired
   names: :data:`SPLIT_FRACTIONS` of them, shuffled with ``random.Random(SPLIT_SEED)`` after sorting.
   The same files always give the same split; adding or removing a file reshuffles it, so pin a split
   with ``python -m banet.data.splits ROOT --out FILE`` and pass ``--split-file FILE``.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from banet.data.errors import DatasetError

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
SPLIT_SEED = 0


def split_csv(root: Path, split_file: str | Path | None) -> Path | None:
    """The split CSV that applies to ``root``: ``split_file`` (must exist) or ``ROOT/splits*.csv``."""
    if split_file is not None:
        if not Path(split_file).is_file():
            raise DatasetError(f"split file not found: {split_file}")
        return Path(split_file)
    candidates = sorted(root.glob("splits*.csv"))
    return candidates[0] if candidates else None


def names_in_split(csv_path: Path, split: str) -> list[str]:
    """The base names of ``split`` in a split CSV (``name`` values may carry an extension)."""
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        split_cols = [c for c in columns if c.lower().endswith("split")]
        if "name" not in columns or not split_cols:
            raise DatasetError(f"{csv_path}: needs a 'name' column and a '*split' column, has {columns}")
        rows = list(reader)
    names = [Path(r["name"]).stem for r in rows if r[split_cols[0]] == split]
    if not names:
        known = sorted({r[split_cols[0]] for r in rows})
        raise DatasetError(f"{csv_path}: no rows in split {split!r} (splits present: {known})")
    return names


def has_prefixes(names: Sequence[str]) -> bool:
    """True when any name starts with ``train_``, ``val_`` or ``test_`` (a prefix-split data set)."""
    return any(n.startswith(f"{s}_") for n in names for s in SPLITS)


def seeded_split(names: Sequence[str], *, seed: int = SPLIT_SEED,
                 fractions: Sequence[float] = SPLIT_FRACTIONS) -> dict[str, str]:
    """``name -> split`` for ``names``: sorted, shuffled by ``random.Random(seed)``, cut by ``fractions``.

    ``fractions`` (train, val, test) must be >= 0 and sum to 1; val and test get ``round(f * N)`` names
    each, train the rest, so 380 names at 0.8/0.1/0.1 give 304/38/38.
    """
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three numbers >= 0 summing to 1 (train, val, test), got {list(fractions)}")
    order = sorted(set(names))
    random.Random(seed).shuffle(order)
    n_val, n_test = (round(f * len(order)) for f in fractions[1:])
    cuts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return {name: split for split, chosen in cuts.items() for name in chosen}


def write_split_csv(names: Sequence[str], out: str | Path, *, seed: int = SPLIT_SEED,
                    fractions: Sequence[float] = SPLIT_FRACTIONS, force: bool = False) -> dict[str, int]:
    """Write :func:`seeded_split` of ``names`` as a ``name,split`` CSV; returns the count per split."""
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    assigned = seeded_split(names, seed=seed, fractions=fractions)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "split"])
        writer.writerows(sorted(assigned.items()))
    tmp.replace(out)
    return {s: sum(1 for v in assigned.values() if v == s) for s in SPLITS}


def main(argv: Sequence[str] | None = None) -> int:
    from banet.data.pairs import find_pairs

    p = argparse.ArgumentParser(prog="python -m banet.data.splits",
                                description="Write a seeded train/val/test split CSV of a data set's paired images.")
    p.add_argument("data", help="data set folder (any layout banet.data.layouts recognises)")
    p.add_argument("--out", required=True, help="CSV to write (pass it to banet-train/banet-eval as --split-file)")
    p.add_argument("--seed", type=int, default=SPLIT_SEED)
    p.add_argument("--fractions", type=float, nargs=3, default=SPLIT_FRACTIONS, metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--skip-unpaired", action="store_true", help="leave out images without masks (and masks without images)")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    args = p.parse_args(argv)
    try:
        pairs = find_pairs(args.data, skip_unpaired=args.skip_unpaired)
        counts = write_split_csv([pair.name for pair in pairs], args.out, seed=args.seed,
                                 fractions=args.fractions, force=args.force)
    except (DatasetError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" (seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
