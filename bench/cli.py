"""``banet-bench``: latency, throughput and mask parity of every backend, side by side.

    banet-bench --checkpoint runs/kvasir_tiny_128/best.pt --artifacts artifacts/ \\
        [--url 127.0.0.1:8001 | --serve REPO] [--batch-sizes 1,8,32] [--iters 20] \\
        [--data ../shared/data/kvasir-seg:test] [--out bench/results] [--interleave --repeats 3]

Writes ``OUT/<date>_<machine>_<tag>.{json,md}`` and ``_latency.png`` / ``_load.png`` /
``_examples.png``. Backends that cannot run here are listed as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from banet.spec import DEFAULT_HOST, GRPC_PORT, IMAGE_SIZE
from bench import options
from bench.options import positive_ints

log = logging.getLogger("bench")



@dataclass(frozen=True)
class BenchConfig:
    """Everything that decides what a bench run measures; written into the result JSON."""

    checkpoint: str | None
    preset: str | None
    artifacts: str | None
    url: str | None
    serve: str | None
    data: str
    batch_sizes: tuple[int, ...]
    iters: int
    warmup: int
    row_budget: float | None
    interleave: bool
    repeats: int
    pool_images: int
    parity_images: int
    concurrency: tuple[int, ...]
    load_seconds: float
    triton_precision: str
    device: str
    threads: int | None
    backends: tuple[str, ...] | None
    parity: bool
    perf_analyzer: bool
    image_size: int | None
    out: str
    tag: str
    force: bool
    arch: str = "banet"


def parse_args(argv: list[str] | None) -> BenchConfig:
    p = argparse.ArgumentParser(prog="banet-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    options.add_checkpoint(src, help="trained checkpoint (the FP32 PyTorch reference)")
    src.add_argument("--preset", help="random-weight model of a preset of --arch (e.g. resnet50, paper): speed ratios only")
    p.add_argument("--arch", default="banet", help="the network of --preset (default banet; banet.model.ARCHITECTURES; "
                                                   "a --checkpoint records its own)")
    p.add_argument("--artifacts", type=Path, help="banet-export folder (with manifest.json, or numbered versions)")
    tri = p.add_mutually_exclusive_group()
    tri.add_argument("--url", help=f"running Triton gRPC endpoint, e.g. {DEFAULT_HOST}:{GRPC_PORT}")
    tri.add_argument("--serve", type=Path, help="start Triton on this model repository for the run")
    options.add_data(p)
    p.add_argument("--batch-sizes", type=positive_ints, default=(1, 8, 32))
    p.add_argument("--iters", type=int, default=20, help="timed calls per backend and batch size")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    p.add_argument("--interleave", action="store_true",
                   help="interleave the backends call by call instead of one block per backend (spreads load "
                        "from elsewhere over all rows; but on the CPU the runtimes' spinning thread pools then "
                        "compete: set OMP_WAIT_POLICY=PASSIVE, see docs/bench.md)")
    options.add_repeats(p, help="run the whole latency measurement (every batch size) this many times, one after "
                                "the other; the rows pool all repeats' timed calls and the goals give the median ratio "
                                "and its min-max over the repeats (the spread of a ratio, not one pick)")
    p.add_argument("--row-budget", type=float, default=None, metavar="SECONDS",
                   help="cap on one backend x batch-size row: fewer timed calls (>= 3) on slow paths, "
                        "skipped with the reason when one call exceeds it (default: no cap)")
    p.add_argument("--pool-images", type=int, default=32, help="real images the timed batches are drawn from")
    p.add_argument("--parity-images", type=int, default=100, help="held-out images scored for parity")
    p.add_argument("--concurrency", type=positive_ints, default=(1, 2, 4, 8), help="Triton load sweep")
    p.add_argument("--load-seconds", type=float, default=8.0, help="seconds per concurrency level (each tool)")
    p.add_argument("--triton-precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="precision of the model Triton serves (picks the parity gate)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    options.add_backends(p)
    p.add_argument("--no-parity", action="store_true")
    p.add_argument("--no-perf-analyzer", action="store_true")
    p.add_argument("--image-size", type=int, default=None, help="default: the manifest's, else the checkpoint's, else 256")
    options.add_output(p, tag="bench")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    if a.iters < 1 or a.warmup < 0 or a.pool_images < 1 or a.parity_images < 1 or a.repeats < 1:
        p.error("--iters, --repeats, --pool-images and --parity-images must be >= 1 and --warmup >= 0")
    if a.checkpoint is not None and not a.checkpoint.is_file():
        p.error(f"--checkpoint {a.checkpoint}: file not found")
    if a.serve is not None and not a.serve.is_dir():
        p.error(f"--serve {a.serve}: model repository folder not found")
    if a.interleave and "torch" not in sys.modules:
        # interleaved runtimes share the cores: OpenMP workers that spin-wait after each parallel region
        # (libgomp's default) then steal time from the next backend's call. Must be set before torch loads.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    device = a.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return BenchConfig(
        checkpoint=str(a.checkpoint) if a.checkpoint else None, preset=a.preset,
        artifacts=str(a.artifacts) if a.artifacts else None, url=a.url, serve=str(a.serve) if a.serve else None,
        data=a.data, batch_sizes=a.batch_sizes, iters=a.iters, warmup=a.warmup, row_budget=a.row_budget, interleave=a.interleave, repeats=a.repeats, pool_images=a.pool_images,
        parity_images=a.parity_images, concurrency=a.concurrency,
        load_seconds=a.load_seconds, triton_precision=a.triton_precision, device=device, threads=a.threads,
        backends=tuple(a.backends) if a.backends else None, parity=not a.no_parity,
        perf_analyzer=not a.no_perf_analyzer, image_size=a.image_size, out=str(a.out), tag=a.tag, force=a.force,
        arch=a.arch)


def _load_model(cfg: BenchConfig):
    import torch

    from banet.checkpoint import file_sha256, model_from_checkpoint
    from banet.model import registry

    if cfg.checkpoint:
        model, payload = model_from_checkpoint(cfg.checkpoint)
        size = None
        for section in ("train_config", "config"):  # banet-train records the size as train_config["size"]
            found = payload.get(section) if isinstance(payload.get(section), dict) else {}
            if found.get("image_size") or found.get("size"):
                size = int(found.get("image_size") or found["size"])
        train = payload.get("train_config") if isinstance(payload.get("train_config"), dict) else {}
        made = (f", random weights (banet-info --random-checkpoint, seed {train.get('seed')})"
                if train.get("random_weights") else "")
        info = {"checkpoint": cfg.checkpoint, "sha256": file_sha256(cfg.checkpoint),
                "arch": payload["arch"], "model_config": payload["model_config"],
                "trained": not train.get("random_weights"),
                "description": f"{cfg.checkpoint} ({_model_label(payload['arch'], payload['model_config'])}{made})"}
        return model, size, info
    try:
        config = registry.preset(cfg.arch, cfg.preset)
    except ValueError as err:
        raise SystemExit(f"banet-bench: unknown --preset {cfg.preset!r} for --arch {cfg.arch}: {err}") from None
    torch.manual_seed(0)
    model = registry.build(cfg.arch, config).eval()
    return model, None, {"arch": cfg.arch, "preset": cfg.preset, "trained": False, "model_config": registry.config_to_dict(config),
                         "description": f"{cfg.arch} preset {cfg.preset!r}, random weights (speed ratios only)"}


def _model_label(arch: str, model_config: dict) -> str:
    """``banet resnet18``, ``unet``: the architecture and, where it has one, its ResNet backbone."""
    return " ".join([arch] + ([model_config["backbone"]] if model_config.get("backbone") else []))


def run(cfg: BenchConfig, command: str) -> dict[str, Path]:
    from tqdm.auto import tqdm

    from bench import goals, results as report, suite
    from bench.inputs import load_pool
    from bench.latency import measure_interleaved, measure_latency, merge_repeats
    from banet.machine import machine_info

    machine = machine_info()
    stem = report.result_stem(machine, cfg.tag)
    report.planned_paths(cfg.out, stem, force=cfg.force)  # refuse before minutes of measuring, not after
    model, ckpt_size, model_info = _load_model(cfg)
    manifest = folder = None
    if cfg.artifacts:
        manifest, folder = suite.load_manifest(cfg.artifacts)
        if cfg.checkpoint and manifest.get("checkpoint", {}).get("sha256") not in (None, model_info["sha256"]):
            log.warning("the artifacts in %s were exported from a different checkpoint than %s", folder, cfg.checkpoint)
            model_info["artifacts_checkpoint_mismatch"] = True
    size = cfg.image_size or (manifest or {}).get("image_size") or ckpt_size or IMAGE_SIZE
    reference, backends = suite.build_backends(model, manifest=manifest, folder=folder, device=cfg.device,
                                               image_size=size, threads=cfg.threads)
    triton = None
    server_ctx = None
    if cfg.url or cfg.serve:
        from bench import triton as triton_bench

        triton, server_ctx = triton_bench.triton_backend(url=cfg.url, repository=cfg.serve,
                                                         precision=cfg.triton_precision)
        backends.append(triton)
    else:
        from bench.backends import Unavailable

        backends.append(Unavailable("triton-grpc", "no --url or --serve given", "-", "cpu", True))
    backends = suite.select(backends, list(cfg.backends) if cfg.backends else None)
    if reference not in backends:
        backends.insert(0, reference)

    root, _, split = cfg.data.rpartition(":")
    if not root or split not in ("train", "val", "test"):
        root, split = cfg.data, None
    pool = load_pool(root, split=split, limit=cfg.pool_images, size=size)
    machine["env"] = {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    result = {"title": "latency, throughput and parity", "tag": cfg.tag, "command": command, "machine": machine,
              "config": asdict(cfg), "model": model_info, "image_size": size,
              "artifacts": None if folder is None else str(folder),
              "inputs": f"{len(pool)} real images of {cfg.data} resized to {size}x{size}; "
                        f"batches drawn at rotating offsets (fresh arrays per call)",
              "reference": reference.name, "latency": [], "parity": [], "load": []}
    try:
        if server_ctx is not None:
            server_ctx.__enter__()
        repeats = []
        order = {b.name: k for k, b in enumerate(backends)}
        for repeat in range(cfg.repeats):
            label = f" {repeat + 1}/{cfg.repeats}" if cfg.repeats > 1 else ""
            rows = []
            if cfg.interleave:
                for batch_size in tqdm(cfg.batch_sizes, desc=f"latency (interleaved){label}", unit="batch size"):
                    rows += measure_interleaved(backends, pool, batch_size, warmup=cfg.warmup, iters=cfg.iters,
                                                row_budget_s=cfg.row_budget)
            else:
                for backend in tqdm(backends, desc=f"latency{label}", unit="backend"):
                    rows += measure_latency(backend, pool, cfg.batch_sizes, warmup=cfg.warmup, iters=cfg.iters,
                                            row_budget_s=cfg.row_budget)
            rows.sort(key=lambda r: (order[r.backend], r.batch_size))
            repeats.append(rows)
        rows = merge_repeats(repeats) if cfg.repeats > 1 else repeats[0]
        result["latency"] = [r.to_dict() for r in rows]
        goals.add_speedups(result["latency"], reference.name)
        examples = []
        if cfg.parity:
            result["parity"], examples = _parity(cfg, reference, backends, size)
        if triton is not None:
            from bench import triton as triton_bench

            result["load"] = triton_bench.load_sweep(triton, pool, cfg.concurrency, perf_analyzer=cfg.perf_analyzer,
                                                     seconds=cfg.load_seconds)
    finally:
        for backend in backends:
            backend.close()
        if server_ctx is not None:
            server_ctx.__exit__(None, None, None)
    result["goals"] = goals.evaluate(result["latency"], result["parity"], reference=reference.name,
                                     trained=model_info["trained"])
    return report.write_results(result, cfg.out, stem=stem, examples=examples, force=cfg.force)


def _parity(cfg: BenchConfig, reference, backends, size: int):
    from tqdm.auto import tqdm

    from banet.inference import predict_masks
    from bench.backend_parity import as_runner, score_backends
    from export.parity import load_parity_set

    with tqdm(total=cfg.parity_images, desc="parity images", unit="img") as bar:
        data = load_parity_set(cfg.data, count=cfg.parity_images, progress=bar.update)
    others = [b for b in backends if b is not reference]
    with tqdm(total=len(others), desc="parity", unit="backend") as bar:
        rows = score_backends(others, reference, data, image_size=size, progress=bar.update)
    # a strip of examples: FP32 PyTorch vs the FP16 and INT8 ONNX artifacts, where they ran
    shown = [reference] + [b for b in backends if b.name in ("ort-fp16@cpu", "ort-int8@cpu", "ort-fp16@cuda",
                                                              "ort-int8@cuda") and b.available()[0]]
    # the worst image of each shown backend first (where they disagree), then the first images
    worst = [r["worst_image"] for r in rows if r["backend"] in {b.name for b in shown} and not r.get("skipped")]
    picks = list(dict.fromkeys([data.names.index(n) for n in worst] + list(range(len(data.images)))))[:4]
    examples = [{"name": data.names[i], "image": data.images[i],
                 "truth": None if data.truths is None else data.truths[i], "masks": {}} for i in picks]
    for backend in shown:
        masks = predict_masks(as_runner(backend, size), [data.images[i] for i in picks], size=size)
        for ex, mask in zip(examples, masks):
            ex["masks"][backend.name] = mask
    return rows, examples


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    command = shlex.join(["banet-bench", *(sys.argv[1:] if argv is None else argv)])
    try:
        paths = run(cfg, command)
    except FileExistsError as err:
        print(f"banet-bench: {err}", file=sys.stderr)
        return 2
    for kind, path in paths.items():
        print(f"{kind:9s} {path}")
    print(Path(paths["md"]).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
