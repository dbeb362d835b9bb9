"""``banet-synth``: write a synthetic lesion dataset (images/ + masks/ + splits.csv).

Example::

    banet-synth demo_out/synth --count 60 --size 128
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from banet.data.synthetic import SynthConfig, write_dataset

    p = argparse.ArgumentParser(prog="banet-synth", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output folder (must be empty or absent, unless --force)")
    p.add_argument("--count", type=int, default=SynthConfig.count)
    p.add_argument("--size", type=int, default=SynthConfig.size, help="image side in pixels")
    p.add_argument("--val-fraction", type=float, default=SynthConfig.val_fraction)
    p.add_argument("--test-fraction", type=float, default=SynthConfig.test_fraction)
    p.add_argument("--seed", type=int, default=SynthConfig.seed)
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = SynthConfig(args.count, args.size, args.val_fraction, args.test_fraction, args.seed)
        out = write_dataset(args.out, config, force=args.force)
    except (ValueError, FileExistsError) as err:
        print(f"banet-synth: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.count} pairs to {out} (splits.csv: train/val/test)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
