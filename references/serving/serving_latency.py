"""What the Triton path costs over in-process inference, and where the time goes.

Same ONNX model, same images, batch 1, measured side by side and interleaved (one in-process
run, then one Triton request, repeated) so that load from other jobs hits both alike:

- in-process, today's reference route: encoded bytes -> ``banet.processing`` decode/preprocess ->
  ONNX Runtime (float32 graph) -> postprocess/boundary/area (split into pre / network / post);
- in-process, the hot path (what the repository serves by default): ``network_image`` (reduced
  JPEG decode, uint8 resize) -> ONNX Runtime (the uint8-I/O serving graph) -> ``mask_from_probability``
  /boundary/area;
- Triton end to end: ``TritonSegmenter.predict`` over gRPC on loopback (encoded bytes in, mask out),
  and the per-model split from Triton's statistics extension (compute input+infer+output and
  queue time of banet_preprocess, banet_model, banet_postprocess).

    python -m references.serving.serving_latency --data ../shared/data --preset paper tiny --reps 5

Writes ``bench/results/serving_latency_<date>_<machine>[_<tag>].json`` and ``.md`` (bench.results.ResultFiles: refuses to overwrite unless --force).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
GOALS = {"server_overhead_max": 0.15, "tiny_server_overhead_max": 0.30, "pre_post_share_max": 0.10}
"""Triton over in-process: <= 15 % for the paper model, <= 30 % for the tiny one (whose ~17 ms network
cannot hide the Python-backend hops and copies; issue 12)."""


def pick_images(data_root: Path) -> dict[str, Path]:
    """The largest Kvasir-SEG frame (1920x1072) and an ISIC image (256x192)."""
    from PIL import Image

    kvasir = next((p for p in sorted((data_root / "kvasir-seg" / "images").glob("*.jpg"))
                   if Image.open(p).size == (1920, 1072)), None)
    isic = sorted((data_root / "isic2017" / "images").glob("test_*.jpg"))[:1]
    if kvasir is None:
        raise FileNotFoundError(f"no 1920x1072 Kvasir-SEG image under {data_root}")
    if not isic:
        raise FileNotFoundError(f"no ISIC-2017 test image (test_*.jpg) under {data_root / 'isic2017' / 'images'}")
    isic = isic[0]
    return {"kvasir_1920x1072": kvasir, "isic_256x192": isic}


def _model_stats(client) -> dict[str, dict[str, float]]:
    """Cumulative per-model counts and nanoseconds from Triton's statistics extension."""
    out = {}
    for model in client.get_inference_statistics(as_json=True)["model_stats"]:
        s = model.get("inference_stats", {})
        ns = lambda key: float(s.get(key, {}).get("ns", 0))  # noqa: E731
        out[model["name"]] = {
            "count": float(s.get("success", {}).get("count", 0)),
            "queue_ns": ns("queue"),
            "compute_ns": ns("compute_input") + ns("compute_infer") + ns("compute_output"),
            "success_ns": ns("success"),
        }
    return out


def _settled_stats(client, sent: int, models, timeout_s: float = 5.0) -> dict[str, dict[str, float]]:
    """``_model_stats`` once each of ``models`` has counted ``sent`` requests (or after ``timeout_s``).

    Triton counts a request in a model's statistics just after that model's response has gone out:
    read right after the client got its answer, the last request can be missing and is then
    counted in the next window instead (seen: 3 postprocess requests in a window of 2)."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = _model_stats(client)
        if all(stats.get(m, {}).get("count", 0) >= sent for m in models) or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def _diff(after: dict, before: dict) -> dict:
    return {m: {k: after[m][k] - before.get(m, {}).get(k, 0.0) for k in after[m]} for m in after}


def measure(onnx_path: Path, images: dict[str, Path], *, reps: int, warmup: int, spinning: bool = False) -> dict:
    from banet import processing, spec
    from banet.client import TritonSegmenter
    from banet.server import TritonServer, free_port
    from export.onnxruntime import ort_session
    from export.repository import onnx_image_size, write_repository
    from export.serving_graph import add_uint8_io

    # the settings of triton_repo/banet_model (CPU provider, default threads, spinning as given),
    # so the two paths run the same network the same way
    session = ort_session(onnx_path, spinning=spinning)
    size = onnx_image_size(onnx_path) or spec.IMAGE_SIZE
    results = {}
    with tempfile.TemporaryDirectory(prefix="banet-latency-") as tmp:
        served = ort_session(add_uint8_io(onnx_path, Path(tmp) / "served.onnx"), spinning=spinning)
        repo = Path(tmp) / "model_repository"
        write_repository(repo, onnx_path=onnx_path)  # the default: the hot path
        env = {"BANET_ORT_SPINNING": "1" if spinning else "0"}
        with TritonServer(repo, grpc_port=free_port(), http_port=free_port(), metrics_port=None, env=env) as server:
            seg = TritonSegmenter(server.grpc_url, timeout_s=600, retries=0)
            steps = (spec.PREPROCESS_MODEL, spec.NETWORK_MODEL, spec.POSTPROCESS_MODEL, spec.ENSEMBLE_MODEL)
            sent = 0
            for label, path in images.items():
                data = path.read_bytes()
                rows = {"inproc_total": [], "inproc_pre": [], "inproc_net": [], "inproc_post": [],
                        "hot_total": [], "hot_pre": [], "hot_net": [], "hot_post": [], "triton_e2e": []}
                for _ in range(warmup):
                    seg.predict(data)
                sent += warmup
                before = _settled_stats(seg.client, sent, steps)
                for _ in range(reps):
                    t0 = time.perf_counter()
                    image = processing.decode_image(data)
                    batch = processing.preprocess(image, size)[None]
                    t1 = time.perf_counter()
                    (logits,) = session.run([spec.NETWORK_OUTPUT.name], {spec.NETWORK_INPUT.name: batch})
                    t2 = time.perf_counter()
                    mask = processing.postprocess(logits[0], image.shape[:2])
                    processing.boundary(mask), processing.mask_area(mask)
                    t3 = time.perf_counter()
                    h0 = time.perf_counter()
                    pixels, original = processing.network_image(data, size)
                    h1 = time.perf_counter()
                    (probability,) = served.run([spec.SERVING_OUTPUT.name], {spec.SERVING_INPUT.name: pixels[None]})
                    h2 = time.perf_counter()
                    hot_mask = processing.mask_from_probability(probability[0], original)
                    processing.boundary(hot_mask), processing.mask_area(hot_mask)
                    h3 = time.perf_counter()
                    for key, value in (("inproc_total", t3 - t0), ("inproc_pre", t1 - t0), ("inproc_net", t2 - t1),
                                       ("inproc_post", t3 - t2), ("hot_total", h3 - h0), ("hot_pre", h1 - h0),
                                       ("hot_net", h2 - h1), ("hot_post", h3 - h2)):
                        rows[key].append(value * 1000.0)
                    pred = seg.predict(data)
                    if not np.array_equal(pred.mask, hot_mask):
                        raise RuntimeError(f"{label}: Triton mask differs from the in-process hot-path mask")
                    rows["triton_e2e"].append(pred.latency_s * 1000.0)
                sent += reps
                stats = _diff(_settled_stats(seg.client, sent, steps), before)
                per_model = {}
                for model in steps:
                    s = stats.get(model, {"count": 0})
                    n = max(s["count"], 1.0)
                    per_model[model] = {"count": int(s["count"]), "compute_ms": s.get("compute_ns", 0) / n / 1e6,
                                        "queue_ms": s.get("queue_ns", 0) / n / 1e6, "request_ms": s.get("success_ns", 0) / n / 1e6}
                med = {k: float(np.median(v)) for k, v in rows.items()}
                pre_post = per_model[spec.PREPROCESS_MODEL]["compute_ms"] + per_model[spec.POSTPROCESS_MODEL]["compute_ms"]
                results[label] = {
                    "image": str(path), "size_hw": list(processing.decode_image(data).shape[:2]), "reps": reps,
                    "median_ms": med, "samples_ms": rows, "triton_models": per_model,
                    "server_overhead": med["triton_e2e"] / med["hot_total"] - 1.0,
                    "server_overhead_vs_today": med["triton_e2e"] / med["inproc_total"] - 1.0,
                    "triton_pre_post_share": pre_post / med["triton_e2e"],
                    "inproc_pre_post_share": (med["inproc_pre"] + med["inproc_post"]) / med["inproc_total"],
                }
            seg.close()
    return results


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# BA-Net serving latency: in-process ONNX Runtime vs Triton end to end", "",
             f"- command: `{result['command']}`", f"- machine: {m['cpu']}, {m['cores']} cores; date {m['date']}",
             "- batch 1, encoded image in, mask out; medians over the reps, in-process and Triton interleaved",
             "- Triton serves the default repository (the hot path); server overhead = Triton e2e over the in-process "
             "hot path (the same work); 'vs today' = over the in-process reference route of before",
             f"- ONNX Runtime idle-thread spinning: {'on' if result.get('ort_spinning') else 'off'} in both paths",
             f"- goals: Triton adds <= {GOALS['server_overhead_max']:.0%} over in-process "
             f"(tiny model: <= {GOALS['tiny_server_overhead_max']:.0%}); "
             f"pre+post < {GOALS['pre_post_share_max']:.0%} of end to end", "",
             "| model | image | in-process today ms (pre / net / post) | in-process hot path ms (pre / net / post) | "
             "Triton e2e ms | server overhead | vs today | Triton pre / net / post compute ms | pre+post share (Triton) | "
             "pre+post share (in-process today) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model, per_image in result["models"].items():
        for label, r in per_image.items():
            md, tm = r["median_ms"], r["triton_models"]
            limit = GOALS["tiny_server_overhead_max"] if model.startswith("tiny") else GOALS["server_overhead_max"]
            ok1 = "PASS" if r["server_overhead"] <= limit else "FAIL"
            ok2 = "PASS" if r["triton_pre_post_share"] < GOALS["pre_post_share_max"] else "FAIL"
            lines.append(
                f"| {model} | {label} | {md['inproc_total']:.1f} ({md['inproc_pre']:.1f} / {md['inproc_net']:.1f} / "
                f"{md['inproc_post']:.1f}) | {md['hot_total']:.1f} ({md['hot_pre']:.1f} / {md['hot_net']:.1f} / "
                f"{md['hot_post']:.1f}) | {md['triton_e2e']:.1f} | {r['server_overhead']:+.1%} {ok1} | "
                f"{r['server_overhead_vs_today']:+.1%} | "
                f"{tm['banet_preprocess']['compute_ms']:.1f} / {tm['banet_model']['compute_ms']:.1f} / "
                f"{tm['banet_postprocess']['compute_ms']:.1f} | {r['triton_pre_post_share']:.1%} {ok2} | "
                f"{r['inproc_pre_post_share']:.1%} |")
    lines += ["", "Triton per-model times are means from the statistics extension over the same requests. "
              "CPU absolute times depend on other jobs sharing these 2 cores; read the ratios."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench import options
    from bench.results import command_line

    p = argparse.ArgumentParser(prog="python -m references.serving.serving_latency", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_data(p, split=None, required=True, type=Path, help="datasets root holding kvasir-seg/ and isic2017/")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--onnx", type=Path, help="ONNX model to measure")
    src.add_argument("--preset", nargs="+", default=["tiny"], help="random-weight presets of --arch to export and measure")
    p.add_argument("--arch", default="banet", help="the network of --preset (default banet; banet.model.ARCHITECTURES)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--spinning", action="store_true",
                   help="let ONNX Runtime's idle threads spin (its default) in both paths; off by default, as in the server")
    p.add_argument("--warmup", type=int, default=2)
    options.add_output(p, tag=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("banet.server.tritonserver").setLevel(logging.WARNING)
    files = options.result_files(args, kind="serving_latency", parser=p,
                                 command=command_line("python -m references.serving.serving_latency", argv))
    images = pick_images(args.data)
    models = {}
    with tempfile.TemporaryDirectory(prefix="banet-onnx-") as tmp:
        if args.onnx:
            targets = {str(args.onnx): args.onnx}
        else:
            import torch

            from banet.model import registry
            from banet.spec import IMAGE_SIZE
            from export.onnx import export_onnx

            targets = {}
            for name in args.preset:
                torch.manual_seed(0)
                label = name if args.arch == "banet" else f"{args.arch} {name}"
                targets[f"{label} (random weights)"] = export_onnx(registry.build(args.arch, name).eval(),
                                                                  Path(tmp) / f"{name}.onnx", image_size=IMAGE_SIZE)
        for label, onnx_path in targets.items():
            log.info("measuring %s", label)
            models[label] = measure(onnx_path, images, reps=args.reps, warmup=args.warmup, spinning=args.spinning)
    result = {"title": "serving latency", "goals": GOALS, "ort_spinning": args.spinning, "models": models}
    options.finish(files, result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
