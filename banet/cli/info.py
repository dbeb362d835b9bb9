"""``banet-info``: parameter count and FLOPs of BA-Net and the networks it is compared with, as a table or JSON.

FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode` on one eval-mode forward pass
(batch 1) of a model built on PyTorch's ``meta`` device: shapes only, no weights allocated and no
arithmetic done, so even ResNet-101 at 512x512 is counted in a second. The counter sees
convolutions and matrix products only and counts one multiply-add as 2 FLOPs; BatchNorm, ReLU,
pooling, sigmoid gates (IA, CFF), additions and bilinear resizes are not counted.

Examples::

    banet-info                                   # the paper's ResNet-101 at 256x256
    banet-info --arch all --preset paper tiny    # every network at paper scale and tiny
    banet-info --preset paper resnet50 --ablation all
    banet-info --preset tiny --size 63 97 --json
    banet-info --preset paper resnet50 --markdown bench/results/model_size_2026-11-26.md
    banet-info --preset resnet50 --size 256 --random-checkpoint runs/random_r50_256.pt   # seeded

``--random-checkpoint PATH`` also writes a checkpoint of the (single) configuration with random
weights from ``--seed``: the same command always writes the same weights, so speed figures measured
on it (``banet-export`` then ``banet-bench``) can be recreated. Its ``train_config`` records the
size (the export's default input size), the seed and ``random_weights: true``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from banet.model import registry
from banet.model.config import ABLATIONS, BACKBONES
from banet.spec import IMAGE_SIZE

FLOP_CONVENTION = (
    "FLOPs from torch.utils.flop_counter.FlopCounterMode, eval mode, batch 1: convolutions and "
    "matrix products (transposed convolutions included) only, one multiply-add = 2 FLOPs "
    "(GMACs = GFLOPs / 2); BatchNorm, activations, pooling, the parameter-free IA/CFF gates and "
    "resizes are not counted."
)


def model_size(config: Any, height: int = IMAGE_SIZE, width: int | None = None) -> dict[str, Any]:
    """Parameters and FLOPs of ``config`` (any registered architecture's) for one ``(1, 3, height, width)`` image.

    Returns ``{"params", "flops", "gflops", "gmacs", "flops_by_component"}`` (FLOPs as defined in
    :data:`FLOP_CONVENTION`); the components are that architecture's groups of
    :data:`banet.model.registry.COMPONENT_GROUPS` (encoder, context: ASPP / DAC + RMP / gates / Res
    paths, stages: BA-Net's, decoder). Nothing is allocated: the model is built on the ``meta`` device.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    arch = registry.arch_of_config(config)
    width = height if width is None else width
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    with torch.device("meta"):
        model = registry.build(arch, config).eval()
        image = torch.zeros(1, 3, height, width)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(image)
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__
    by_component = {group: sum(_module_flops(per_module, f"{root}.{child}") for child in children)
                    for group, children in registry.architecture(arch).components.items()}
    flops = int(counter.get_total_flops())
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "flops": flops,
        "gflops": flops / 1e9,
        "gmacs": flops / 2e9,
        "flops_by_component": by_component,
    }


def _module_flops(per_module: dict[str, int], name: str) -> int:
    """FLOPs of submodule ``name``; a ModuleList is never called itself, so sum its items."""
    if name in per_module:
        return per_module[name]
    prefix = name + "."
    return sum(v for k, v in per_module.items() if k.startswith(prefix) and k[len(prefix):].isdigit())


def machine() -> dict[str, Any]:
    """CPU model, logical cores and platform of this machine (for results files)."""
    from banet.machine import cpu_cores, cpu_model

    return {"cpu": cpu_model(), "cores": cpu_cores(), "platform": platform.platform(),
            "python": platform.python_version()}


def _arches(args: argparse.Namespace) -> list[str]:
    return list(registry.ARCHITECTURES) if "all" in args.arch else list(dict.fromkeys(args.arch))


def _configs(args: argparse.Namespace) -> list[tuple[str, str, str, Any]]:
    """``(arch, preset, ablation, config)`` rows; ablations apply to BA-Net only (the others: "-")."""
    ablations = list(ABLATIONS) if "all" in args.ablation else args.ablation
    rows = []
    for arch in _arches(args):
        for preset in args.preset:
            base = registry.preset(arch, preset)
            if args.backbone and registry.has_field(arch, "backbone"):
                base = replace(base, backbone=args.backbone)
            if arch != "banet":
                rows.append((arch, preset, "-", base))
                continue
            for ablation in ablations:
                rows.append((arch, preset, ablation, base.with_ablation(ablation)))
    return rows


def _row(arch: str, preset: str, ablation: str, config: Any, height: int, width: int) -> dict[str, Any]:
    return {"arch": arch, "preset": preset, "backbone": getattr(config, "backbone", "-"), "ablation": ablation,
            "height": height, "width": width, **model_size(config, height, width),
            "config": registry.config_to_dict(config)}


_COLUMNS = ("arch", "preset", "backbone", "ablation", "input", "params (M)", "GFLOPs", "GMACs",
            "encoder", "context", "stages", "decoder")
_TEXT_COLUMNS = 5


def _cells(row: dict[str, Any]) -> list[str]:
    parts = row["flops_by_component"]
    share = [f"{100 * parts[k] / row['flops']:.1f}%" if row["flops"] and k in parts else "-"
             for k in registry.COMPONENT_GROUPS]
    return [row.get("arch", "banet"), row["preset"], row["backbone"], row["ablation"], f"{row['height']}x{row['width']}",
            f"{row['params'] / 1e6:.2f}", f"{row['gflops']:.2f}", f"{row['gmacs']:.2f}", *share]


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table for the terminal."""
    cells = [list(_COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.rjust(w) if i >= _TEXT_COLUMNS else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(report: dict[str, Any]) -> str:
    """The Markdown results file: what was run, where, when, and the table."""
    m = report["machine"]
    lines = [
        "# Model size",
        "",
        f"- command: `{report['command']}`",
        f"- date (UTC): {report['date']}",
        f"- machine: {m['cpu']}, {m['cores']} logical cores, {m['platform']}, Python {m['python']}, "
        f"torch {report['torch']}",
        f"- {report['flop_convention']}",
        "- encoder / context (ASPP; CE-Net's DAC + RMP; Attention U-Net's gates; MultiResUNet's Res paths) / "
        "stages (BA-Net's squeeze + PEE + mini-MTL) / decoder (+ head): share of the FLOPs (- where a network has no such part).",
        "",
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "|".join("---" if i < _TEXT_COLUMNS else "---:" for i in range(len(_COLUMNS))) + "|",
    ]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in report["rows"]]
    return "\n".join(lines) + "\n"


def build_report(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    import torch

    height, width = (args.size[0], args.size[-1])
    rows = [_row(arch, p, a, c, height, width) for arch, p, a, c in _configs(args)]
    return {
        "command": shlex.join(["banet-info", *argv]),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "torch": torch.__version__,
        "flop_convention": FLOP_CONVENTION,
        "rows": rows,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="banet-info", description="Parameter count and FLOPs of BA-Net and the networks it is compared with.",
        epilog=FLOP_CONVENTION)
    parser.add_argument("--arch", nargs="+", default=["banet"], choices=[*registry.ARCHITECTURES, "all"],
                        help="network(s), or 'all' (default: banet)")
    presets = sorted({name for a in registry.ARCHITECTURES.values() for name in a.presets})
    parser.add_argument("--preset", nargs="+", default=["paper"], choices=presets,
                        help="named configuration(s) (default: paper, the published scale; tiny for CPU tests)")
    parser.add_argument("--backbone", choices=BACKBONES,
                        help="replace the presets' backbone (networks with a ResNet encoder)")
    parser.add_argument("--ablation", nargs="+", default=["full"], choices=[*ABLATIONS, "all"],
                        help="BA-Net's ablation(s) of the paper's Table IV, or 'all' (default: full)")
    parser.add_argument("--size", nargs="+", type=int, default=[IMAGE_SIZE], metavar="PX",
                        help=f"input height [width] in pixels (default: {IMAGE_SIZE})")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--markdown", type=Path, metavar="PATH.md",
                        help="also write the report as Markdown to PATH.md and JSON to PATH.json")
    parser.add_argument("--random-checkpoint", type=Path, metavar="PATH.pt",
                        help="also write a checkpoint of the configuration with random weights (seeded; one "
                             "--preset, one square --size): speed measurements that a command can recreate")
    parser.add_argument("--seed", type=int, default=RANDOM_SEED, help="seed of --random-checkpoint's weights")
    parser.add_argument("--force", action="store_true", help="replace existing --markdown / --random-checkpoint files")
    args = parser.parse_args(argv)
    lacking = [f"{arch} (presets {', '.join(sorted(registry.architecture(arch).presets))})" for arch in _arches(args)
               if set(args.preset) - set(registry.architecture(arch).presets)]
    if lacking:
        parser.error(f"--preset {' '.join(args.preset)}: not every preset exists for {'; '.join(lacking)}")
    if len(args.size) > 2 or min(args.size) < 1:
        parser.error(f"--size takes one or two positive integers, got {args.size}")
    if args.markdown is not None:
        if args.markdown.suffix != ".md":
            parser.error(f"--markdown needs a .md path, got {args.markdown}")
        for path in (args.markdown, args.markdown.with_suffix(".json")):
            if path.exists() and not args.force:
                parser.error(f"{path} exists; pass --force to replace it")
    if args.random_checkpoint is not None:
        if len(args.preset) != 1 or len(args.ablation) != 1 or "all" in args.ablation or len(_arches(args)) != 1:
            parser.error("--random-checkpoint writes one configuration: give one --arch, one --preset and one --ablation")
        if len(args.size) != 1 and args.size[0] != args.size[-1]:
            parser.error(f"--random-checkpoint needs a square --size (the export's input side), got {args.size}")
        if args.random_checkpoint.exists() and not args.force:
            parser.error(f"{args.random_checkpoint} exists; pass --force to replace it")
    return args


RANDOM_SEED = 0
"""Default ``--seed`` of ``--random-checkpoint``."""


def write_random_checkpoint(path: Path, config: Any, *, size: int, seed: int = RANDOM_SEED,
                            overwrite: bool = False, arch: str = registry.DEFAULT_ARCH) -> Path:
    """A checkpoint of ``config`` with random weights from ``seed`` (the same seed, the same weights).

    ``train_config`` holds ``size`` (the input side the export and the bench default to), ``seed`` and
    ``random_weights: True``; no training happened. Refuses to replace ``path`` unless ``overwrite``.
    """
    import torch

    from banet.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    model = registry.build(arch, config).eval()
    return save_checkpoint(path, model, overwrite=overwrite,
                           train_config={"size": int(size), "seed": int(seed), "random_weights": True})


def _write(path: Path, text: str) -> None:
    from banet.atomic import write_text

    write_text(path, text)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    report = build_report(args, argv)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report["rows"]))
        print(f"\n{FLOP_CONVENTION}")
    if args.markdown is not None:
        _write(args.markdown, format_markdown(report))
        _write(args.markdown.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.markdown} and {args.markdown.with_suffix('.json')}", file=sys.stderr)
    if args.random_checkpoint is not None:
        (arch, _, _, config), = _configs(args)
        path = write_random_checkpoint(args.random_checkpoint, config, size=args.size[0], seed=args.seed,
                                       overwrite=args.force, arch=arch)
        print(f"wrote {path} (random weights, seed {args.seed}, {args.size[0]} px)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
