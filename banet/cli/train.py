"""``banet-train``: train BA-Net, or one of the networks it is compared with, on an images/ + masks/ folder.

Examples::

    banet-train --data ../shared/data/kvasir-seg --out runs/unet_tiny --arch unet --preset tiny --size 128
    banet-train --data ../shared/data/kvasir-seg --out runs/kvasir_r50 --preset resnet50
    banet-train --data ../shared/data/kvasir-seg --out runs/tiny --preset tiny --size 128 --epochs 15 --lr 1e-3
    banet-train --resume runs/tiny/last.pt --epochs 30          # continue (and extend) a run
    torchrun --nproc_per_node 4 -m banet.cli.train --data ... --out ...   # DistributedDataParallel
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from banet.train import AUGMENTATIONS, DEFAULT_RECIPE, RECIPES, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    from banet.model import ABLATIONS, ARCHITECTURES, BACKBONES, DEFAULT_ARCH

    p = argparse.ArgumentParser(prog="banet-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # Everything defaults to None: None means "the recipe's value" (or, with --resume, the run's).
    p.add_argument("--data", help="dataset folder: images/ + masks/, or the published layout of CVC-ColonDB, "
                                  "Shenzhen (CXR_png/ + masks/) or RIM-ONE (docs/training.md#data-sets)")
    p.add_argument("--out", help="run folder for checkpoints, config, history and plot")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help=f"named defaults (default {DEFAULT_RECIPE}: the authors' code, Adam + poly, ResNet-50, "
                        f"CE + Dice; paper: the paper's text, SGD + poly, ResNet-101; docs/training.md)")
    p.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint written by banet-train (last.pt)")
    p.add_argument("--force", action="store_true", help="replace the run already in --out")
    g = p.add_argument_group("data")
    g.add_argument("--split-file", help="CSV with a name column and a *split column (default: DATA/splits*.csv, "
                                        "else train_/val_/test_ file-name prefixes, else a seeded 80/10/10 split)")
    g.add_argument("--train-split")
    g.add_argument("--val-split")
    g.add_argument("--size", type=int, help="training resolution (default 256)")
    g.add_argument("--augment", choices=sorted(AUGMENTATIONS),
                   help="paper: flips, rotation +-10 deg, centred crop of 50-100%% of the side; official: the "
                        "authors' (zoom / crop p 0.25 each, rotation p 0.5); flips: flips only")
    g.add_argument("--workers", type=int, help="decode threads")
    g.add_argument("--skip-unpaired", action="store_true", default=None, help="leave out images without masks")
    g.add_argument("--skip-broken", action="store_true", default=None, help="leave out files that do not decode")
    g.add_argument("--experts", metavar="RULE",
                   help="several masks per image (RIM-ONE): majority (default), union, intersection, expN, avg")
    g = p.add_argument_group("model")
    g.add_argument("--arch", choices=list(ARCHITECTURES),
                   help=f"network (default {DEFAULT_ARCH}); docs/architecture.md describes each")
    presets = sorted({name for a in ARCHITECTURES.values() for name in a.presets})
    g.add_argument("--preset", choices=presets,
                   help="named configuration of --arch (every arch has tiny and paper; BA-Net also resnet50, small; "
                        "default: the recipe's for BA-Net, paper for the others)")
    g.add_argument("--backbone", choices=BACKBONES, help="ResNet of the networks that have one (banet, fcn, deeplabv3, cenet)")
    g.add_argument("--ablation", choices=sorted(ABLATIONS), help="BA-Net's ablations (Table IV)")
    g.add_argument("--imagenet-weights", metavar="FILE", help="torchvision ResNet state_dict for the encoder")
    g = p.add_argument_group("optimization")
    g.add_argument("--optimizer", choices=["adam", "sgd"])
    g.add_argument("--lr", type=float)
    g.add_argument("--momentum", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--schedule", choices=["constant", "poly"])
    g.add_argument("--poly-power", type=float)
    g.add_argument("--batch-size", type=int, help="global batch (split across torchrun processes)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--max-steps", type=int, help="stop after this many optimizer steps in all")
    g.add_argument("--patience", type=int, metavar="EPOCHS",
                   help="early stopping: end the run when val JA has not improved for this many epochs "
                        "(--epochs stays the cap and sets the poly schedule's length)")
    g.add_argument("--deep-supervision", type=float, metavar="LAMBDA", help="weight of each stage's loss (1)")
    g.add_argument("--dice-weight", type=float, help="weight of the Dice term on the main output (official 1, paper 0)")
    g.add_argument("--align-corners", action=argparse.BooleanOptionalAction, default=None,
                   help="corner convention of the model's bilinear resizes (official: on, paper: off)")
    g.add_argument("--no-sync-bn", dest="sync_bn", action="store_false", default=None,
                   help="keep per-process BatchNorm under DDP (default: SyncBatchNorm on CUDA)")
    g.add_argument("--seed", type=int)
    g = p.add_argument_group("speed")
    g.add_argument("--device", help="auto (default), cuda or cpu")
    g.add_argument("--amp", choices=["auto", "bf16", "fp16", "none"], help="autocast (auto: bf16 on CUDA)")
    g.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None)
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    g.add_argument("--val-batch-size", type=int)
    g.add_argument("--save-every", type=int, metavar="N",
                   help="write last.pt every N epochs and at the end (default 1; best.pt whenever val JA improves)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


OVERRIDES = ("split_file", "train_split", "val_split", "size", "augment", "workers", "skip_unpaired",
             "skip_broken", "experts", "arch", "preset", "backbone", "ablation", "imagenet_weights", "optimizer", "lr",
             "momentum",
             "weight_decay", "schedule", "poly_power", "batch_size", "epochs", "max_steps", "patience", "deep_supervision",
             "dice_weight", "align_corners", "sync_bn", "seed", "device", "amp", "channels_last", "compile",
             "val_batch_size", "save_every")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The resolved config: recipe defaults + flags, or (with --resume) the run's config + flags."""
    from banet.checkpoint import load_checkpoint
    from banet.train import TrainError, resolve_config

    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    if args.resume:
        stored = load_checkpoint(args.resume).get("train_config")
        if stored is None:
            raise TrainError(f"{args.resume} has no train config (not written by banet-train); cannot resume")
        values = {**stored, **overrides}
        if args.data:
            values["data"] = args.data
        values["out"] = args.out or str(Path(args.resume).parent)
        if args.recipe:
            values["recipe"] = args.recipe
        return TrainConfig.from_dict(values)
    if not args.data or not args.out:
        raise TrainError("--data and --out are required (unless --resume)")
    return resolve_config(args.data, args.out, args.recipe or DEFAULT_RECIPE, **overrides)


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from banet.data.pairs import DatasetError
    from banet.train import TrainError, build_model_config, fit

    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if (args.verbose or rank == 0) else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
        build_model_config(config)  # a preset, backbone or ablation the arch lacks fails now, before decoding data
        result = fit(config, resume=args.resume, force=args.force,
                     bar_factory=lambda **kw: tqdm(leave=False, dynamic_ncols=True, **kw),
                     load_progress=lambda total, desc: tqdm(desc=desc, unit="img", leave=False))
    except (TrainError, DatasetError, ValueError, FileExistsError, FileNotFoundError) as err:  # e.g. --imagenet-weights
        print(f"banet-train: error: {err}", file=sys.stderr)
        return 2
    if rank == 0 and result["history"]:
        last = result["history"][-1]
        best = max(result["history"], key=lambda r: r.get("val", {}).get("mean", {}).get("JA", -1))
        print(f"epochs {last['epoch']}, steps {last['step']}; best val JA {best['val']['mean']['JA']:.4f} "
              f"(epoch {best['epoch']}) -> {result['best']}; last -> {result['last']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
