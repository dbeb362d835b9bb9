"""``banet-eval``: score a checkpoint on a dataset split (AC, DI, JA, SE, SP) as a table and JSON.

Examples::

    banet-eval runs/kvasir_tiny_128/best.pt --data ../shared/data/kvasir-seg --split val --json val.json
    banet-eval CKPT --data DIR --split test --out-dir preds --save-masks --save-overlays
    banet-eval CKPT --data DIR --split val --baselines --report bench/results/train_cpu_2026-11-26
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="banet-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint written by banet-train (or any banet checkpoint)")
    p.add_argument("--data", required=True, help="dataset folder: images/ + masks/, or the published layout of "
                                                 "CVC-ColonDB, Shenzhen or RIM-ONE (docs/training.md#data-sets)")
    p.add_argument("--split", action="append",
                   help="split to score (repeatable; default val). 'all' scores every pair")
    p.add_argument("--split-file", help="CSV with name and *split columns (default: DATA/splits*.csv or prefixes)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threshold", type=float, default=None, help="probability threshold (default 0.5)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--baselines", action="store_true",
                   help="also score the trivial baselines: all-background and a fixed centred blob")
    p.add_argument("--out-dir", help="folder for --save-masks / --save-overlays (one subfolder per split)")
    p.add_argument("--save-masks", action="store_true", help="write predicted masks (PNG 0/255)")
    p.add_argument("--save-overlays", action="store_true", help="write overlays: prediction and GT contours")
    p.add_argument("--json", help="write the full result (incl. per-image JA/DI) to this JSON file")
    p.add_argument("--report", metavar="PREFIX",
                   help="write PREFIX.json + PREFIX.md with command, machine, date, training summary")
    p.add_argument("--skip-unpaired", action="store_true")
    p.add_argument("--skip-broken", action="store_true")
    p.add_argument("--experts", metavar="RULE", help="several masks per image (RIM-ONE): majority, union, "
                                                     "intersection, expN, avg (default: the checkpoint's training choice)")
    p.add_argument("--force", action="store_true", help="replace existing --json/--report/--out-dir files")
    return p


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from banet.checkpoint import CheckpointError, load_checkpoint
    from banet.data.pairs import DatasetError
    from banet.evaluate import BASELINES, evaluate, format_table, training_summary, write_report
    from banet.spec import MASK_THRESHOLD

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    splits = args.split or ["val"]
    if (args.save_masks or args.save_overlays) and not args.out_dir:
        print("banet-eval: error: --save-masks/--save-overlays need --out-dir", file=sys.stderr)
        return 2
    targets = [Path(args.json)] if args.json else []
    if args.out_dir:
        targets += [Path(args.out_dir) / s for s in splits]
    if args.report:  # checked here too, so a refusal comes before the evaluation and before --json is written
        targets += [Path(args.report + suffix) for suffix in (".json", ".md")]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not args.force:
        print(f"banet-eval: error: {', '.join(existing)} exist(s); pass --force to replace", file=sys.stderr)
        return 2
    results = []
    try:
        for split in splits:
            with tqdm(desc=f"eval {split}", unit="img", leave=False) as bar:
                result = evaluate(
                    args.checkpoint, args.data, None if split == "all" else split, split_file=args.split_file,
                    batch_size=args.batch_size,
                    threshold=MASK_THRESHOLD if args.threshold is None else args.threshold,
                    device=args.device, baselines=BASELINES if args.baselines else (),
                    out_dir=Path(args.out_dir) / split if args.out_dir else None,
                    save_masks=args.save_masks, save_overlays=args.save_overlays,
                    skip_unpaired=args.skip_unpaired, skip_broken=args.skip_broken, experts=args.experts,
                    progress=bar.update)
            results.append(result)
            print(format_table(result))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            payload = results[0] if len(results) == 1 else {"evaluations": results}
            Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
            print(f"wrote {args.json}")
        if args.report:
            training = training_summary(load_checkpoint(args.checkpoint))
            paths = write_report(results, args.report, command=["banet-eval", *(argv if argv is not None else sys.argv[1:])],
                                 training=training, force=args.force)
            print(f"wrote {paths[0]} and {paths[1]}")
    except (CheckpointError, DatasetError, ValueError, FileExistsError) as err:
        print(f"banet-eval: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
