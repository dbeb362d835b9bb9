"""Bounded soak test of the ``banet`` ensemble on loopback: N concurrent clients for a fixed time.

Checks while it loads the server: every request gets exactly one response (client count ==
Triton's own success+failure count for the ensemble), every mask equals the single-request
mask of the same image, the p99 latency under load stays within :func:`latency_bound_ms` of the
single-request latency measured in the same run, server RSS at start and end; reports latency
percentiles and throughput.

    python -m references.serving.soak --onnx model.onnx --data ../shared/data --clients 4 --duration 45
    python -m references.serving.soak --preset tiny --data ../shared/data --clients 4 --duration 120  # random weights
    python -m references.serving.soak --repository model_repository --duration 600      # the long version

Writes ``bench/results/soak_<date>_<machine>[_<tag>].json`` and ``.md`` (bench.results.ResultFiles: refuses to overwrite unless ``--force``).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np


log = logging.getLogger(__name__)

QUEUE_FACTOR = 10.0
"""With ``C`` clients a request waits behind at most ``C - 1`` others, so its latency is about ``C`` single
requests; the bound allows ``QUEUE_FACTOR`` times that for the client threads and other jobs sharing
the cores (the single-request latency is measured under the same load, just before)."""
LATENCY_SLACK_MS = 500.0
"""Added to the bound: a scheduler hiccup of a loaded 2-core box, not a stalled request."""


def latency_bound_ms(single_ms: float, clients: int) -> float:
    """The p99 latency (ms) that ``clients`` concurrent clients may reach when one request alone takes ``single_ms``.

    Exceeding it means requests waited for something other than each other: a batcher holding them
    for its queue delay, a stalled backend stub, a client timeout and retry.
    """
    return clients * QUEUE_FACTOR * single_ms + LATENCY_SLACK_MS


def soak_images(data_root: Path | None, count: int = 8, seed: int = 0) -> list[tuple[str, bytes]]:
    """Real images (ISIC test + Kvasir-SEG, original sizes) when ``data_root`` has them, else synthetic PNGs."""
    from banet import processing

    images: list[tuple[str, bytes]] = []
    if data_root is not None and (data_root / "isic2017" / "images").is_dir():
        isic = sorted((data_root / "isic2017" / "images").glob("test_*.jpg"))[: count // 2]
        kvasir = sorted((data_root / "kvasir-seg" / "images").glob("*.jpg"))[: count - len(isic)]
        images = [(p.name, p.read_bytes()) for p in [*isic, *kvasir]]
    if not images:
        import io

        from PIL import Image

        rng = np.random.default_rng(seed)
        for index in range(count):
            h, w = (int(v) for v in rng.integers(64, 512, size=2))
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
            images.append((f"synthetic_{index}.png", buf.getvalue()))
    for name, data in images:
        processing.decode_image(data, name=name)  # refuse a bad input up front, not in the middle
    return images


def _digest(mask: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(mask).tobytes() + str(mask.shape).encode()).hexdigest()


def _ensemble_counts(segmenter) -> tuple[int, int]:
    from banet import spec

    stats = segmenter.client.get_inference_statistics(model_name=spec.ENSEMBLE_MODEL, as_json=True)
    model = stats["model_stats"][0]["inference_stats"]
    return int(model.get("success", {}).get("count", 0)), int(model.get("fail", {}).get("count", 0))


def run_soak(url: str, images: list[tuple[str, bytes]], *, clients: int = 4, duration_s: float = 30.0,
             rss=None, timeout_s: float = 120.0) -> dict:
    """Load ``url`` with ``clients`` threads for ``duration_s``; return the figures and the checks.

    ``rss``: optional callable returning the server's resident bytes (start/end are recorded).
    """
    from banet.client import InferenceError, TritonSegmenter

    seg = TritonSegmenter(url, timeout_s=timeout_s, retries=0)
    reference = {name: _digest(seg.predict(data).mask) for name, data in images}  # single requests, one at a time
    single_ms = [1000.0 * seg.predict(data).latency_s for _, data in images]  # again, warm, timed
    bound_ms = latency_bound_ms(float(np.median(single_ms)), clients)
    rss_start = rss() if rss else None
    success0, fail0 = _ensemble_counts(seg)
    stop_at = time.monotonic() + duration_s
    lock = threading.Lock()
    latencies: list[float] = []
    sent = mismatches = errors = 0
    error_messages: list[str] = []

    def client(index: int) -> None:
        nonlocal sent, mismatches, errors
        own = TritonSegmenter(url, timeout_s=timeout_s, retries=0)
        k = index
        while time.monotonic() < stop_at:
            name, data = images[k % len(images)]
            k += 1
            with lock:
                sent += 1
            try:
                pred = own.predict(data)
            except InferenceError as err:
                with lock:
                    errors += 1
                    if len(error_messages) < 10:
                        error_messages.append(str(err))
                continue
            with lock:
                latencies.append(pred.latency_s)
                if _digest(pred.mask) != reference[name]:
                    mismatches += 1
        own.close()

    rss_samples: list[tuple[float, float]] = []

    def sample_rss() -> None:
        # RSS over time tells a warm-up plateau (allocator arenas, batch shapes) from steady growth
        while rss and time.monotonic() < stop_at:
            value = rss()
            if value:
                rss_samples.append((round(time.monotonic() - started, 1), round(value / 2**20, 1)))
            time.sleep(max(duration_s / 20, 0.5))

    threads = [threading.Thread(target=client, args=(i,), name=f"soak-client-{i}") for i in range(clients)]
    sampler = threading.Thread(target=sample_rss, name="soak-rss", daemon=True)
    started = time.monotonic()
    for t in threads:
        t.start()
    sampler.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    # Triton counts a request in its statistics just after the response has gone out: a read right
    # after the last response can miss it on loaded cores, so wait (briefly) for the count to settle
    settle_by = time.monotonic() + 5.0
    while True:
        success1, fail1 = _ensemble_counts(seg)
        if (success1 - success0) + (fail1 - fail0) >= sent or time.monotonic() > settle_by:
            break
        time.sleep(0.1)
    rss_end = rss() if rss else None
    seg.close()
    server_responses = (success1 - success0) + (fail1 - fail0)
    lat_ms = np.asarray(latencies) * 1000.0
    pct = {f"p{q}": float(np.percentile(lat_ms, q)) for q in (50, 90, 99)} if len(lat_ms) else {}
    return {
        "clients": clients, "duration_s": round(elapsed, 2), "images": [name for name, _ in images],
        "requests_sent": sent, "responses_ok": len(latencies), "responses_error": errors,
        "server_responses": server_responses, "mask_mismatches": mismatches,
        "throughput_img_s": len(latencies) / elapsed if elapsed else 0.0,
        "latency_ms": {**pct, "mean": float(lat_ms.mean()) if len(lat_ms) else None,
                       "max": float(lat_ms.max()) if len(lat_ms) else None},
        "single_request_ms": {"median": float(np.median(single_ms)), "max": float(max(single_ms))},
        "latency_bound_ms": bound_ms,
        "rss_mb": {"start": None if rss_start is None else rss_start / 2**20,
                   "end": None if rss_end is None else rss_end / 2**20, "samples_s_mb": rss_samples},
        "errors_sample": error_messages,
        "checks": {
            "one_response_per_request": sent == len(latencies) + errors == server_responses,
            "masks_equal_single_request": mismatches == 0,
            "no_errors": errors == 0,
            "p99_within_bound": bool(pct) and pct["p99"] <= bound_ms,
        },
    }


def markdown(result: dict) -> str:
    r, m = result["soak"], result["machine"]
    lat = r["latency_ms"]
    rss = r["rss_mb"]
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    lines = [
        "# BA-Net serving soak test", "",
        f"- command: `{result['command']}`",
        f"- machine: {m['cpu']}, {m['cores']} cores; date {m['date']}",
        f"- model: {result['model']}", f"- server: {result['server']}", "",
        "| clients | duration s | requests | ok | errors | server responses | mask mismatches | img/s |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['clients']} | {r['duration_s']} | {r['requests_sent']} | {r['responses_ok']} | {r['responses_error']} | "
        f"{r['server_responses']} | {r['mask_mismatches']} | {r['throughput_img_s']:.2f} |", "",
        "| latency ms | p50 | p90 | p99 | mean | max |", "|---|---|---|---|---|---|",
        f"| end to end (encoded image in, mask out) | {fmt(lat.get('p50'))} | {fmt(lat.get('p90'))} | "
        f"{fmt(lat.get('p99'))} | {fmt(lat.get('mean'))} | {fmt(lat.get('max'))} |", "",
        f"Single requests, one at a time, before the load: median {fmt(r['single_request_ms']['median'])} ms; "
        f"p99 bound under load {fmt(r['latency_bound_ms'])} ms (clients x {QUEUE_FACTOR:g} x median + "
        f"{LATENCY_SLACK_MS:g} ms).", "",
        f"Server RSS (tritonserver + Python backend stubs): start {fmt(rss['start'])} MB, end {fmt(rss['end'])} MB; "
        "over time (s: MB): " + ", ".join(f"{t:.0f}: {mb:.0f}" for t, mb in rss.get("samples_s_mb", [])), "",
        "| check | result |", "|---|---|",
        *[f"| {k.replace('_', ' ')} | {'PASS' if v else 'FAIL'} |" for k, v in r["checks"].items()],
        "", "CPU absolute latencies depend on the other jobs sharing these cores; compare ratios within one run.",
    ]
    return "\n".join(lines) + "\n"


def _model(checkpoint: Path | None, preset: str | None, images: list[tuple[str, bytes]], size: int,
           arch: str = "banet"):
    """The checkpoint's model, or a random-weight ``preset`` (seed 0) with its head bias shifted so that
    about half the pixels of the soak images are foreground: empty masks would make the check that
    every mask equals its single-request mask trivially true."""
    import torch

    if checkpoint is not None:
        from banet.checkpoint import model_from_checkpoint

        return model_from_checkpoint(checkpoint)[0]
    from banet import processing
    from banet.model import registry

    try:
        config = registry.preset(arch, preset)
    except ValueError as err:
        raise SystemExit(f"python -m references.serving.soak: unknown --preset {preset!r} for --arch {arch}: {err}") from None
    torch.manual_seed(0)
    net = registry.build(arch, config).eval()
    batch = np.stack([processing.preprocess(processing.decode_image(data), size) for _, data in images])
    with torch.no_grad():
        registry.output_bias(net).sub_(net(torch.from_numpy(batch)).median())
    return net


def main(argv: list[str] | None = None) -> int:
    from bench import options
    from bench.results import command_line

    p = argparse.ArgumentParser(prog="python -m references.serving.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--repository", type=Path, help="model repository to serve")
    src.add_argument("--onnx", type=Path, help="ONNX model: served from a temporary python_onnxruntime repository")
    options.add_checkpoint(src, help="checkpoint: exported to ONNX, then as --onnx")
    src.add_argument("--preset", help="random-weight model of a preset (seed 0) whose head bias is centred on the "
                                      "soak images, so that its masks have real boundaries; exported as --onnx")
    p.add_argument("--arch", default="banet", help="the network of --preset (default banet; banet.model.ARCHITECTURES)")
    options.add_data(p, split=None, type=Path, help="datasets root (isic2017/, kvasir-seg/); default synthetic")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--duration", type=float, default=45.0, help="seconds of load")
    p.add_argument("--images", type=int, default=8, help="distinct images cycled through")
    options.add_output(p, tag=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("banet.server.tritonserver").setLevel(logging.WARNING)
    import tempfile

    from banet.server import TritonServer, free_port

    # the result files are named by the start time: refused here, before minutes of load
    files = options.result_files(args, kind="soak", command=command_line("python -m references.serving.soak", argv),
                                 parser=p)
    with tempfile.TemporaryDirectory(prefix="banet-soak-") as tmp:
        images = soak_images(args.data, args.images)
        repo = args.repository
        model = str(args.repository or args.onnx or args.checkpoint or f"preset {args.preset} (random weights, seed 0, "
                                                                        "head bias centred on the soak images)")
        if repo is None:
            from export.repository import write_repository

            onnx = args.onnx
            if args.checkpoint is not None or args.preset is not None:
                from banet.spec import IMAGE_SIZE
                from export.onnx import export_onnx

                net = _model(args.checkpoint, args.preset, images, IMAGE_SIZE, args.arch)
                onnx = export_onnx(net, Path(tmp) / "model.onnx", image_size=IMAGE_SIZE)
            repo = Path(tmp) / "model_repository"
            write_repository(repo, onnx_path=onnx)
        with TritonServer(repo, grpc_port=free_port(), http_port=free_port(), metrics_port=None) as server:
            soak = run_soak(server.grpc_url, images, clients=args.clients, duration_s=args.duration, rss=server.rss_bytes)
    result = {"title": "soak", "model": model, "server": "tritonserver (banet.server.TritonServer, loopback)",
              "soak": soak}
    options.finish(files, result, markdown)
    return 0 if all(soak["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
