"""The serving hot path's ceiling: pre/post-processing images per second per core, network replaced.

Two parts, each side by side in one run (candidates interleaved, every round repeated, spread reported):

1. In process, one thread (``torch``/BLAS threads 1), per step: decode, preprocess (resize [+ normalize]),
   postprocess (probability -> mask at the original size), boundary + area. The network is replaced
   by a constant: one fixed polyp-like probability map (a soft disc) for every image, so that the mask
   has a real contour. Candidates: ``today`` (the reference route of before: full decode, float32
   normalize, float32 logits -> sigmoid -> float resize), and the hot path (reduced JPEG decode,
   uint8 resize, float16 probability -> small-map mask) with libjpeg-turbo (simplejpeg) or Pillow's
   draft decoder, at the default decode oversample and at 1x (the fastest). Image sets: the
   Kvasir-SEG test split at its own sizes, and its 1920x1072 frames (the ~1920x1080 case).
2. Through the real Triton server with perf_analyzer: two servers run at once, one with today's
   repository (``network_io=float32``), one with the hot path (the default), each with a pass-through
   network (an ONNX graph that returns the same constant map), fed the Kvasir-SEG test split's JPEGs;
   their throughput is measured in alternation, so server-side queueing, the Python-backend hops and
   the tensor copies count.

With ``--checkpoint`` (a trained BA-Net), mask parity of each candidate against today's route is
scored on the Kvasir-SEG test split (mean / worst Jaccard), and uint8 vs float16 probabilities are
compared (the reason the serving graph returns float16).

    python -m references.serving.hotpath --data ../shared/data --checkpoint runs/kvasir_tiny_128/best.pt --reps 5

Writes ``bench/results/hotpath_<date>_<machine>.json``, ``.md`` and ``_throughput.png`` (bench.results; refuses to overwrite
unless --force).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
GOALS = {"speedup_test_split": 4.0, "speedup_1920": 3.0, "parity_mean": 0.999, "parity_worst": 0.99}
STEPS = ("decode", "preprocess", "postprocess", "boundary_area")


# --- the constant network output ---------------------------------------------------------------------
def constant_logits(size: int) -> np.ndarray:
    """``(1, S, S)`` float32 logits of a soft disc (a polyp-like blob): +-8 inside/outside, a smooth edge."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = np.hypot(yy - 0.45 * size, xx - 0.55 * size)
    return ((0.3 * size - radius) * (32.0 / size)).clip(-8, 8)[None].astype(np.float32)


# --- candidates: one function per step -------------------------------------------------------------------
def _today(size: int, logits: np.ndarray):
    from banet import processing

    def decode(data):
        return processing.decode_image(data)

    def pre(image):
        return processing.preprocess(image, size), image.shape[:2]

    def post(state):
        return processing.postprocess(logits, state[1])

    return decode, pre, post


def _hotpath(size: int, probability: np.ndarray, decoder: str, oversample: float):
    from banet import processing

    def decode(data):
        return processing.decode_reduced(data, size, decoder=decoder, oversample=oversample)

    def pre(state):
        image, original = state
        return processing.resize_image(image, size), original

    def post(state):
        return processing.mask_from_probability(probability, state[1])

    return decode, pre, post


def candidates(size: int) -> dict:
    from banet import processing

    logits = constant_logits(size)
    probability = processing.sigmoid(logits).astype(np.float16)  # what the serving graph returns
    default = processing.REDUCED_DECODE_OVERSAMPLE
    out = {"today": _today(size, logits),
           f"hotpath simplejpeg {default:g}x": _hotpath(size, probability, "simplejpeg", default),
           f"hotpath pillow {default:g}x": _hotpath(size, probability, "pillow", default),
           "hotpath simplejpeg 1x": _hotpath(size, probability, "simplejpeg", 1.0)}
    if not processing.simplejpeg_available():
        out = {k: v for k, v in out.items() if "simplejpeg" not in k}
    return out


def time_candidate(funcs, encoded: list[bytes]) -> dict[str, float]:
    """Seconds per image of each step over ``encoded`` (one pass)."""
    from banet import processing

    decode, pre, post = funcs
    totals = dict.fromkeys(STEPS, 0.0)
    for data in encoded:
        t0 = time.perf_counter()
        state = decode(data)
        t1 = time.perf_counter()
        state = pre(state)
        t2 = time.perf_counter()
        mask = post(state)
        t3 = time.perf_counter()
        processing.boundary(mask), processing.mask_area(mask)
        t4 = time.perf_counter()
        for step, dt in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            totals[step] += dt
    return {step: value / len(encoded) for step, value in totals.items()}


def measure_steps(sets: dict[str, list[bytes]], size: int, reps: int) -> dict:
    """Per image set and candidate: ms per step per round, interleaved (the order rotates each round)."""
    cands = candidates(size)
    names = list(cands)
    rounds: dict = {label: {name: [] for name in names} for label in sets}
    load = []
    for rep in range(reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for label, encoded in sets.items():
            for name in order:
                rounds[label][name].append(time_candidate(cands[name], encoded))
        load.append(os.getloadavg())
        log.info("round %d/%d done (load %.1f)", rep + 1, reps, load[-1][0])
    out = {}
    for label, per in rounds.items():
        today_total = [sum(r.values()) for r in per["today"]]
        out[label] = {}
        for name, runs in per.items():
            totals = [sum(r.values()) for r in runs]
            speedups = [t / c for t, c in zip(today_total, totals)]  # same round: load hits both alike
            out[label][name] = {
                "ms_median": {s: 1000 * float(np.median([r[s] for r in runs])) for s in STEPS},
                "total_ms": [1000 * t for t in totals],
                "images_per_s_per_core": {"min": 1 / max(totals), "median": 1 / float(np.median(totals)),
                                          "max": 1 / min(totals)},
                "speedup_vs_today": {"min": min(speedups), "median": float(np.median(speedups)),
                                     "max": max(speedups)},
            }
    return {"sets": out, "loadavg": load, "images": {k: len(v) for k, v in sets.items()}}


# --- parity (a real model) ---------------------------------------------------------------------------
def measure_parity(checkpoint: Path, encoded: list[bytes], size: int) -> dict:
    """Masks of each route against today's route with the same network (PyTorch, FP32)."""
    import torch

    from banet import processing
    from banet.checkpoint import model_from_checkpoint
    from banet.inference import predict_masks, predict_served_masks, torch_runner
    from banet.metrics import jaccard

    model, _ = model_from_checkpoint(checkpoint)
    run = torch_runner(model)
    images = [processing.decode_image(d) for d in encoded]
    reference = predict_masks(run, images, size=size)

    def served(output_dtype: str):
        def run_u8(batch: np.ndarray) -> np.ndarray:  # what the serving graph computes, in numpy + torch
            chw = np.stack([processing.normalize(img) for img in batch])
            prob = processing.sigmoid(run(chw))
            return processing.probability_to_uint8(prob) if output_dtype == "uint8" else prob.astype(output_dtype)
        return run_u8

    routes = {f"hotpath simplejpeg {o:g}x ({dt})": (o, dt) for o in (1.0, 2.0, processing.REDUCED_DECODE_OVERSAMPLE)
              for dt in ("float16",)}
    routes[f"hotpath simplejpeg {processing.REDUCED_DECODE_OVERSAMPLE:g}x (uint8)"] = (processing.REDUCED_DECODE_OVERSAMPLE, "uint8")
    routes["full decode, uint8 resize (float16)"] = (1e6, "float16")
    routes["full decode, uint8 resize (uint8)"] = (1e6, "uint8")
    out = {}
    with torch.inference_mode():
        for label, (oversample, dtype) in routes.items():
            masks = predict_served_masks(served(dtype), encoded, size=size, oversample=oversample)
            scores = [jaccard(a, b) for a, b in zip(masks, reference)]
            out[label] = {"mean": float(np.mean(scores)), "worst": float(np.min(scores)),
                          "below_0.99": int(sum(s < 0.99 for s in scores)), "oversample": oversample,
                          "probability_dtype": dtype}
            log.info("parity %s: mean %.5f worst %.5f", label, out[label]["mean"], out[label]["worst"])
    foreground = float(np.mean([np.count_nonzero(m) / m.size for m in reference]))
    return {"checkpoint": str(checkpoint), "images": len(encoded), "reference_foreground": foreground, "routes": out}


# --- through Triton ----------------------------------------------------------------------------------
def constant_onnx(path: Path, size: int) -> Path:
    """A pass-through network: ``image`` (B, 3, S, S) -> the constant logits (B, 1, S, S) (ReduceMean x 0 + map)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from banet import spec

    image = helper.make_tensor_value_info(spec.NETWORK_INPUT.name, TensorProto.FLOAT, [spec.BATCH_AXIS_NAME, 3, size, size])
    logits = helper.make_tensor_value_info(spec.NETWORK_OUTPUT.name, TensorProto.FLOAT, [spec.BATCH_AXIS_NAME, 1, size, size])
    consts = [numpy_helper.from_array(constant_logits(size)[None], "map"), numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    nodes = [helper.make_node("ReduceMean", [image.name], ["mean"], axes=[1], keepdims=1),
             helper.make_node("Mul", ["mean", "zero"], ["zeros"]),
             helper.make_node("Add", ["zeros", "map"], [logits.name])]
    graph = helper.make_graph(nodes, "constant_network", [image], [logits], consts)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", spec.ONNX_OPSET)]), str(path))
    return path


SERVED = {
    "today": ({"network_io": "float32"}, ("MASK", "BOUNDARY", "AREA")),
    "hotpath full": ({}, ("MASK", "BOUNDARY", "AREA")),
    "compact": ({}, None),
    "compact, 2 pre instances": ({"preprocess_instances": 2}, None),
}
"""The repositories served side by side: (``write_repository`` arguments, outputs named in the request parameter;
None = none sent, the default compact outputs). ``today`` is the reference route with the uncompressed tensors
(what every response carried before the compact outputs), ``hotpath full`` the uint8 hot path with them,
``compact`` the default repository and request, and the same with two ``banet_preprocess`` instances (the step
that the per-hop statistics show busiest)."""
STAT_PARTS = ("queue", "compute_input", "compute_infer", "compute_output")


def model_statistics(url: str) -> dict[str, dict]:
    """Triton's statistics extension, per model: cumulative ns and counts of each part of a request
    (``inference_stats``) and the busy time of its executions (``batch_stats``: one compute per batch)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics(as_json=True)
    finally:
        client.close()
    out = {}
    for model in stats.get("model_stats", []):
        inference = model.get("inference_stats", {})
        row = {"inferences": int(model.get("inference_count", 0)), "executions": int(model.get("execution_count", 0)),
               "requests": int(inference.get("success", {}).get("count", 0)),
               "success_ns": int(inference.get("success", {}).get("ns", 0)),
               **{f"{part}_ns": int(inference.get(part, {}).get("ns", 0)) for part in STAT_PARTS},
               "busy_ns": sum(int(b.get(part, {}).get("ns", 0)) for b in model.get("batch_stats", [])
                              for part in STAT_PARTS[1:])}
        out[model["name"]] = row
    return out


def hop_costs(before: dict, after: dict, client_ms: float) -> dict:
    """Per request, in ms, between two :func:`model_statistics` readings: each step's queue and compute parts
    (Triton's per-request times) and its busy time per image (executions' compute / images), the ensemble's own
    overhead (its success time minus its steps'), and the gRPC + client hop (the client's mean latency minus the
    ensemble's success time)."""
    from banet import spec

    steps, ensemble = {}, None
    for name, row in after.items():
        base = before.get(name, {})
        delta = {k: row[k] - base.get(k, 0) for k in row}
        if delta["requests"] <= 0:
            continue
        per = {k.removesuffix("_ns") + "_ms": delta[k] / delta["requests"] / 1e6 for k in delta if k.endswith("_ns")}
        per["busy_per_image_ms"] = delta["busy_ns"] / max(delta["inferences"], 1) / 1e6
        per["mean_batch"] = delta["inferences"] / max(delta["executions"], 1)
        per["requests"] = delta["requests"]
        if name in (spec.ENSEMBLE_MODEL, spec.RAW_ENSEMBLE_MODEL):
            ensemble = per
        else:
            steps[name] = per
    if ensemble is None:
        return {"steps": steps}
    inside = sum(p["success_ms"] for p in steps.values())
    return {"steps": steps, "ensemble_ms": ensemble["success_ms"],
            "ensemble_overhead_ms": max(ensemble["success_ms"] - inside, 0.0) if steps else 0.0,
            "grpc_client_ms": max(client_ms - ensemble["success_ms"], 0.0), "client_ms": client_ms}


def measure_triton(encoded: list[bytes], size: int, reps: int, concurrency: int, seconds: float,
                   served: dict | None = None, env: dict | None = None, frames: list[np.ndarray] | None = None) -> dict:
    """perf_analyzer on each of ``served`` (side by side, alternated per round) with per-hop statistics; with
    ``frames``, on the compact server also the raw-pixel vs PNG route (:func:`measure_client`) and the response
    bytes of a frame (:func:`measure_response_bytes`)."""
    from banet import spec
    from banet.server import TritonServer, free_port
    from bench import perf_analyzer as pa
    from export.repository import write_repository

    try:
        tool = pa.setup(download=False)
    except pa.PerfAnalyzerUnavailable as err:
        return {"skipped": str(err)}
    served = served or SERVED
    rows: dict[str, list] = {name: [] for name in served}
    with tempfile.TemporaryDirectory(prefix="banet-hotpath-") as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        network = constant_onnx(tmp / "constant.onnx", size)
        data = pa.write_input_data(encoded, tmp / "input.json", spec.ENCODED_IMAGE.name)
        logging.getLogger("banet.server.tritonserver").setLevel(logging.WARNING)
        servers = {}
        for index, (name, (kwargs, _)) in enumerate(served.items()):
            repo = write_repository(tmp / f"repo{index}", onnx_path=network, **kwargs).parents[1]
            servers[name] = stack.enter_context(TritonServer(
                repo, grpc_port=free_port(), http_port=free_port(), metrics_port=None,
                env={"BANET_ORT_THREADS": "1", **(env or {})}))
        names = list(served)
        for rep in range(reps):
            for name in (names if rep % 2 == 0 else names[::-1]):
                outputs = served[name][1]
                before = model_statistics(servers[name].grpc_url)
                row = pa.sweep(tool, url=servers[name].grpc_url, model=spec.ENSEMBLE_MODEL, input_data=data,
                               concurrencies=(concurrency,), measurement_ms=int(seconds * 1000), work_dir=tmp,
                               request_parameters=None if outputs is None else {spec.OUTPUTS_PARAMETER: ",".join(outputs)})[0]
                row["loadavg"] = os.getloadavg()[0]
                if not row.get("skipped"):
                    row["hops"] = hop_costs(before, model_statistics(servers[name].grpc_url), row["mean_ms"])
                rows[name].append(row)
                log.info("triton %s round %d: %s", name, rep + 1, row.get("throughput", row.get("skipped")))
        extra = {}
        if frames:
            url = servers["compact"].grpc_url
            extra = {"client": measure_client(url, frames, reps, concurrency),
                     "response": measure_response_bytes(url, frames[0])}
    ok = {k: [r["throughput"] for r in v if not r.get("skipped")] for k, v in rows.items()}
    ratios = {name: paired_ratios(rows[name], rows["today"]) for name in served if name != "today"}
    return {"concurrency": concurrency, "rows": rows, **extra,
            "throughput": {k: {"min": min(v), "median": float(np.median(v)), "max": max(v)} if v else None
                           for k, v in ok.items()},
            "speedup": {k: {"min": min(r), "median": float(np.median(r)), "max": max(r)} if r else None
                        for k, r in ratios.items()}}


def measure_client(server_url: str, frames: list[np.ndarray], reps: int, concurrency: int) -> dict:
    """Decoded frames through ``TritonSegmenter``: as pixels to ``banet_raw`` vs encoded as PNG by the client
    and decoded by ``banet``. Images/s with ``concurrency`` threads, routes alternated per round; masks compared."""
    from concurrent.futures import ThreadPoolExecutor

    from banet.client import TritonSegmenter

    routes = {"raw pixels (banet_raw)": TritonSegmenter(server_url, timeout_s=120),
              "PNG encode + server decode (banet)": TritonSegmenter(server_url, raw_model=None, timeout_s=120)}
    rows = {name: [] for name in routes}
    try:
        assert routes["raw pixels (banet_raw)"].raw_available(), "the server has no banet_raw"
        first = {name: [seg.predict(f).mask for f in frames[:2]] for name, seg in routes.items()}
        equal = all(np.array_equal(a, b) for a, b in zip(*first.values()))
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for rep in range(reps):
                for name in (list(routes) if rep % 2 == 0 else list(routes)[::-1]):
                    started = time.perf_counter()
                    list(pool.map(routes[name].predict, frames))
                    rows[name].append(len(frames) / (time.perf_counter() - started))
    finally:
        for seg in routes.values():
            seg.close()
    return {"concurrency": concurrency, "frames": len(frames), "shape": list(frames[0].shape), "masks_equal": equal,
            "images_per_s": {k: {"min": min(v), "median": float(np.median(v)), "max": max(v)} for k, v in rows.items()}}


def measure_response_bytes(server_url: str, frame: np.ndarray) -> dict:
    """Wire bytes (the gRPC ``ModelInferResponse`` message) of one 1920x1080 frame: today's outputs (MASK,
    BOUNDARY, AREA) vs the compact default (MASK_ENCODED, AREA), with the masks checked equal."""
    from banet import mask_codec, spec
    from banet.client import TritonSegmenter

    seg = TritonSegmenter(server_url, timeout_s=120)
    try:
        result, _ = seg.infer([processing_png(frame)], name="frame")
        compact = result.get_response().ByteSize()
        mask = mask_codec.decode_mask(result.as_numpy(spec.MASK_ENCODED.name).reshape(-1)[0])
        seg.outputs = "full"
        result, _ = seg.infer([processing_png(frame)], name="frame")
        full = result.get_response().ByteSize()
        equal = bool(np.array_equal(mask, result.as_numpy(spec.MASK.name)[0]))
    finally:
        seg.close()
    return {"shape": list(frame.shape[:2]), "compact_bytes": compact, "today_bytes": full, "share": compact / full,
            "masks_equal": equal, "foreground": float(np.count_nonzero(mask) / mask.size)}


def processing_png(array: np.ndarray) -> bytes:
    from banet import processing

    return processing.encode_png(array)


def video_frames(data_root: Path, count: int = 8) -> list[np.ndarray]:
    """Decoded 1920x1080 RGB frames: Kvasir-SEG test images upscaled (bilinear), as a video source hands them over."""
    from banet import processing
    from banet.data.pairs import find_pairs

    pairs = find_pairs(data_root / "kvasir-seg", "test")[:count]
    return [processing.resize_image(processing.load_image(p.image), (1080, 1920)) for p in pairs]


def paired_ratios(numerator: list[dict], denominator: list[dict], key: str = "throughput") -> list[float]:
    """``numerator[i][key] / denominator[i][key]`` for each round ``i`` in which both rows were measured.

    The rows are lists in round order (one row per round and candidate); a round in which either side was
    skipped gives no ratio, so a ratio never pairs one round's row with another round's (load differs).
    """
    if len(numerator) != len(denominator):
        raise ValueError(f"{len(numerator)} vs {len(denominator)} rounds: rows must be one per round")
    return [n[key] / d[key] for n, d in zip(numerator, denominator)
            if not n.get("skipped") and not d.get("skipped") and d.get(key)]


# --- report ------------------------------------------------------------------------------------------
def _spread(d: dict, fmt: str = ".1f") -> str:
    return f"{d['median']:{fmt}} ({d['min']:{fmt}}-{d['max']:{fmt}})"


def markdown(result: dict) -> str:
    m = result["machine"]
    steps = result["steps"]
    lines = ["# Serving hot path: pre/post-processing ceiling (network replaced by a constant)", "",
             f"- command: `{result['command']}`", f"- machine: {m['cpu']}, {m['cores']} cores; date {m['date']}",
             f"- network input {result['size']} px; one thread; {result['reps']} rounds, candidates interleaved "
             f"(order rotated per round); load average during the rounds: "
             f"{min(x[0] for x in steps['loadavg']):.1f}-{max(x[0] for x in steps['loadavg']):.1f} "
             "(shared cores: read the ratios, measured in the same round)",
             f"- goals: hot path >= {GOALS['speedup_test_split']:g}x today's images/s per core on the Kvasir-SEG "
             f"test split, >= {GOALS['speedup_1920']:g}x on 1920x1072; served masks vs today mean Jaccard >= "
             f"{GOALS['parity_mean']}, worst >= {GOALS['parity_worst']}", "",
             "## In process, per step (median ms per image; images/s per core and speedup: median (min-max) over rounds)", "",
             "| images | candidate | decode | preprocess | postprocess | boundary+area | total | images/s/core | speedup vs today |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, per in steps["sets"].items():
        for name, r in per.items():
            ms = r["ms_median"]
            lines.append(f"| {label} ({steps['images'][label]}) | {name} | " + " | ".join(f"{ms[s]:.2f}" for s in STEPS)
                         + f" | {sum(ms.values()):.2f} | {_spread(r['images_per_s_per_core'])} | "
                         f"{_spread(r['speedup_vs_today'], '.2f')} |")
    lines += ["", "## Goals", ""]
    for line in result["verdicts"]:
        lines.append(f"- {line}")
    tri = result.get("triton")
    lines += ["", "## Through Triton (perf_analyzer, pass-through network, Kvasir-SEG test split JPEGs)", ""]
    if not tri or tri.get("skipped"):
        lines.append(f"Not run: {tri.get('skipped') if tri else 'disabled (--no-triton)'}")
    else:
        lines += [f"Concurrency {tri['concurrency']}, all servers running, measured in alternation (order reversed "
                  "every other round).", "",
                  "| repository | images/s: median (min-max) | x today (same round) | mean ms | p50 ms (last round) |",
                  "|---|---|---|---|---|"]
        for name, t in tri["throughput"].items():
            last = [r for r in tri["rows"][name] if not r.get("skipped")]
            last = last[-1] if last else {}
            ratio = tri["speedup"].get(name)
            lines.append(f"| {name} | {_spread(t) if t else '-'} | {_spread(ratio, '.2f') if ratio else '1'} | "
                         f"{last.get('mean_ms', float('nan')):.1f} | {last.get('p50_ms', float('nan')):.1f} |")
        lines += ["", "### Per hop (Triton's statistics extension, per request, last round, ms)", "",
                  "Per step: queue, compute input (the stub's shared-memory copy in), compute infer (`execute`), compute "
                  "output (copy out), busy time per image (execution compute / images) and mean batch; `gRPC + client` "
                  "is the client's mean latency minus the ensemble's time in the server.", "",
                  "| repository | hop | queue | compute input | compute infer | compute output | busy / image | mean batch |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, rows in tri["rows"].items():
            last = [r for r in rows if not r.get("skipped") and r.get("hops")]
            if not last:
                continue
            hops = last[-1]["hops"]
            lines.append(f"| {name} | gRPC + client | | | {hops.get('grpc_client_ms', float('nan')):.2f} | | | |")
            for step, p in hops["steps"].items():
                lines.append(f"| {name} | {step} | {p['queue_ms']:.2f} | {p['compute_input_ms']:.2f} | "
                             f"{p['compute_infer_ms']:.2f} | {p['compute_output_ms']:.2f} | {p['busy_per_image_ms']:.2f} | "
                             f"{p['mean_batch']:.2f} |")
        cli = tri.get("client")
        if cli:
            lines += ["", f"### Decoded frames from a client ({cli['frames']} frames {cli['shape'][1]}x{cli['shape'][0]}, "
                          f"TritonSegmenter, {cli['concurrency']} threads, compact server)", "",
                      "| route | images/s: median (min-max) |", "|---|---|"]
            for route, t in cli["images_per_s"].items():
                lines.append(f"| {route} | {_spread(t)} |")
            lines.append(f"\nMasks of the two routes equal: {cli['masks_equal']}.")
        resp = tri.get("response")
        if resp:
            lines += ["", f"### Response bytes of one {resp['shape'][1]}x{resp['shape'][0]} frame (gRPC message)", "",
                      f"today (MASK + BOUNDARY + AREA): {resp['today_bytes']:,} B; compact (MASK_ENCODED + AREA): "
                      f"{resp['compact_bytes']:,} B = {100 * resp['share']:.3f} %; masks equal: {resp['masks_equal']} "
                      f"(foreground {resp['foreground']:.1%})."]
    par = result.get("parity")
    lines += ["", "## Mask parity against today's route (Kvasir-SEG test split, the same network)", ""]
    if not par:
        lines.append("Not run: no --checkpoint given.")
    else:
        lines += [f"Checkpoint `{par['checkpoint']}` at its {par['size']} px; {par['images']} images; reference foreground "
                  f"{par['reference_foreground']:.1%}.", "", "| route | mean Jaccard | worst | images < 0.99 |", "|---|---|---|---|"]
        for label, r in par["routes"].items():
            lines.append(f"| {label} | {r['mean']:.5f} | {r['worst']:.5f} | {r['below_0.99']} |")
    return "\n".join(lines) + "\n"


SERVING_GOALS = {"share_of_ceiling": 0.60, "response_share": 0.05}
"""Issue 23: through Triton (pass-through network, Kvasir-SEG test split) >= 60 % of the in-process pre+post
ceiling x the cores used; a 1920x1080 frame's response <= 5 % of today's MASK + BOUNDARY at equal masks."""


def serving_verdicts(result: dict) -> list[str]:
    """Issue 23's goals, met or missed by how much, from one run's Triton part and in-process ceiling."""
    from banet import processing

    tri, out = result.get("triton"), []
    if not tri or tri.get("skipped"):
        return ["serving goals: not measured (" + (tri.get("skipped") if tri else "--no-triton") + ")"]
    default = f"hotpath simplejpeg {processing.REDUCED_DECODE_OVERSAMPLE:g}x"
    per = result["steps"]["sets"].get("kvasir test split", {})
    ceiling_per_core = (per.get(default) or per.get(f"hotpath pillow {processing.REDUCED_DECODE_OVERSAMPLE:g}x"))
    cores = result["machine"]["cores"]
    if ceiling_per_core:
        ceiling = ceiling_per_core["images_per_s_per_core"]["median"] * cores
        goal = SERVING_GOALS["share_of_ceiling"] * ceiling
        best = max((k for k, v in tri["throughput"].items() if v and k != "today"),
                   key=lambda k: tri["throughput"][k]["median"], default=None)
        if best:
            got = tri["throughput"][best]["median"]
            state = "MET" if got >= goal else f"MISSED by {goal / got:.2f}x ({got / ceiling:.0%} of the ceiling)"
            out.append(f"through Triton, best repository '{best}': {got:.1f} images/s vs 60 % of the in-process ceiling "
                       f"{ceiling_per_core['images_per_s_per_core']['median']:.1f} images/s/core x {cores} cores = "
                       f"{goal:.1f}: {state}")
    resp = tri.get("response")
    if resp:
        ok = resp["share"] <= SERVING_GOALS["response_share"] and resp["masks_equal"]
        out.append(f"response bytes of a {resp['shape'][1]}x{resp['shape'][0]} frame: {resp['compact_bytes']:,} B = "
                   f"{100 * resp['share']:.3f} % of today's {resp['today_bytes']:,} B (goal <= 5 %), masks equal "
                   f"{resp['masks_equal']}: " + ("MET" if ok else "MISSED"))
    return out


def verdicts(result: dict) -> list[str]:
    from banet import processing

    out = []
    default = f"hotpath simplejpeg {processing.REDUCED_DECODE_OVERSAMPLE:g}x"
    for label, goal in (("kvasir test split", GOALS["speedup_test_split"]), ("1920x1072", GOALS["speedup_1920"])):
        per = result["steps"]["sets"].get(label, {})
        for name in (default, "hotpath simplejpeg 1x"):
            if name in per:
                got = per[name]["speedup_vs_today"]["median"]
                state = "MET" if got >= goal else f"MISSED by {goal / got:.2f}x"
                out.append(f"{label}, {name}: {got:.2f}x today's images/s per core (goal {goal:g}x): {state}")
    out += serving_verdicts(result)
    par = result.get("parity")
    if par:
        for label, r in par["routes"].items():
            if "(float16)" in label and "x (" in label:
                ok = r["mean"] >= GOALS["parity_mean"] and r["worst"] >= GOALS["parity_worst"]
                out.append(f"parity {label}: mean {r['mean']:.5f}, worst {r['worst']:.5f}: {'MET' if ok else 'MISSED'}")
    return out


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = result["steps"]["sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4))
    for ax, (label, per) in zip(np.atleast_1d(axes), sets.items()):
        names = list(per)
        med = [per[n]["images_per_s_per_core"]["median"] for n in names]
        lo = [m - per[n]["images_per_s_per_core"]["min"] for n, m in zip(names, med)]
        hi = [per[n]["images_per_s_per_core"]["max"] - m for n, m in zip(names, med)]
        ax.barh(names, med, xerr=[lo, hi], color=["grey"] + ["tab:blue"] * (len(names) - 1))
        ax.set_xlabel("images/s per core (pre + post, network replaced)")
        ax.set_title(label)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_hops(result: dict, path: Path) -> Path | None:
    """Stacked bars, one per repository: the per-request ms of each hop (gRPC + client, then each step's queue
    and compute), from the last round's statistics."""
    tri = result.get("triton")
    if not tri or tri.get("skipped"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = {}
    for name, rows in tri["rows"].items():
        last = [r for r in rows if not r.get("skipped") and r.get("hops")]
        if last:
            hops = last[-1]["hops"]
            parts = {"gRPC + client": hops.get("grpc_client_ms", 0.0)}
            for step, p in hops["steps"].items():
                short = step.removeprefix("banet_")
                parts[f"{short} queue"] = p["queue_ms"]
                parts[f"{short} copy in+out"] = p["compute_input_ms"] + p["compute_output_ms"]
                parts[f"{short} execute"] = p["compute_infer_ms"]
            bars[name] = parts
    if not bars:
        return None
    labels = list(dict.fromkeys(k for parts in bars.values() for k in parts))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, len(labels)))
    fig, ax = plt.subplots(figsize=(10, 0.7 * len(bars) + 2.5))
    left = np.zeros(len(bars))
    for label, colour in zip(labels, colours):
        widths = np.asarray([parts.get(label, 0.0) for parts in bars.values()])
        ax.barh(list(bars), widths, left=left, color=colour, label=label)
        left += widths
    ax.invert_yaxis()
    ax.set_xlabel(f"ms per request (mean, concurrency {tri['concurrency']}, pass-through network)")
    ax.set_title("Where a served request's time goes (Triton statistics, last round)")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def image_sets(data_root: Path) -> tuple[dict[str, list[bytes]], list[bytes]]:
    from PIL import Image

    from banet.data.pairs import find_pairs

    test = [p.image.read_bytes() for p in find_pairs(data_root / "kvasir-seg", "test")]
    large = [p for p in sorted((data_root / "kvasir-seg" / "images").glob("*.jpg")) if Image.open(p).size == (1920, 1072)]
    if not test or not large:
        raise FileNotFoundError(f"need the Kvasir-SEG test split and its 1920x1072 frames under {data_root / 'kvasir-seg'}")
    return {"kvasir test split": test, "1920x1072": [p.read_bytes() for p in large[:8]]}, test


def main(argv: list[str] | None = None) -> int:
    from bench import options
    from bench.results import command_line

    p = argparse.ArgumentParser(prog="python -m references.serving.hotpath", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_data(p, split=None, required=True, type=Path, help="datasets root holding kvasir-seg/")
    options.add_checkpoint(p, help="a trained BA-Net checkpoint for the mask-parity table")
    p.add_argument("--size", type=int, default=256, help="network input side of the timed parts (default 256)")
    p.add_argument("--reps", type=int, default=5, help="rounds (>= 3)")
    p.add_argument("--no-triton", action="store_true", help="skip the perf_analyzer part")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0, help="perf_analyzer measurement window per round")
    options.add_output(p, tag=None)
    args = p.parse_args(argv)
    if args.reps < 3:
        p.error("--reps must be >= 3 (a spread needs repeats)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    torch.set_num_threads(1)
    files = options.result_files(args, kind="hotpath", plots=("throughput", "hops"), parser=p,
                                 command=command_line("python -m references.serving.hotpath", argv))
    size = args.size
    sets, test = image_sets(args.data)
    result = {"title": "serving hot path ceiling", "machine": files.machine, "size": size, "reps": args.reps, "goals": GOALS,
              "steps": measure_steps(sets, size, args.reps)}
    if args.checkpoint:  # at the size the checkpoint was trained at
        from export.pipeline import _image_size

        trained = _image_size(argparse.Namespace(image_size=None), torch.load(args.checkpoint, weights_only=True))
        result["parity"] = {**measure_parity(args.checkpoint, test, trained), "size": trained}
    result["triton"] = None if args.no_triton else measure_triton(test, size, args.reps, args.concurrency, args.seconds,
                                                                  frames=video_frames(args.data))
    result["verdicts"] = verdicts(result)
    options.finish(files, result, markdown, {"throughput": lambda path: plot(result, path),
                                             "hops": lambda path: plot_hops(result, path)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
