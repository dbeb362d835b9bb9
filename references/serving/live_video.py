"""Issue 23's video goal: a 25 fps 720p clip streamed through the real Triton server at the source rate with the
tiny model, on this machine's cores: frames dropped at steady state, p50/p99 latency, achieved fps.

    python -m references.serving.live_video --checkpoint models/banet_tiny128_kvasir.pt --data ../shared/data

Makes the clip from Kvasir-SEG test frames (references.serving.kvasir_clip: 1280x720, 25 fps, ``--seconds``),
exports the checkpoint to ONNX and a model repository (export.onnx, export.repository: the default hot-path
repository, ONNX Runtime in the Python backend) in a temporary folder, starts the embedded tritonserver
(banet.server), waits for it, and streams the clip through it with :func:`banet.video.stream_video` (the code
behind ``banet-client VIDEO``), once per ``--send`` way and ``--max-in-flight`` value. The client, the server and whatever else runs
share the machine's cores: the load average before and after each stream is recorded.

Writes ``bench/results/live_video_<date>_<machine>.json`` and ``.md`` (bench.results.ResultFiles; refuses to
overwrite unless --force). The overlay video and per-frame CSV of each stream go to ``--keep DIR`` if given.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
GOAL = "a 25 fps 720p clip at the source rate with no frame dropped at steady state"


def session_cpu_s(session: int) -> float:
    """CPU seconds (user + system) of every live process in ``session`` (the server's: tritonserver and its
    Python-backend stubs; banet.server starts it in a new session), read from ``/proc``."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[3]) == session:  # after ")": state ppid pgrp session ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


STAT_KEYS = ("queue", "compute_input", "compute_infer", "compute_output")


def model_stats(segmenter) -> dict:
    """Triton's cumulative statistics per model: requests and nanoseconds per step (the statistics extension)."""
    stats = segmenter.client.get_inference_statistics(as_json=True)
    return {m["name"]: {"count": int(m.get("inference_count", 0)),
                        **{k: int(m["inference_stats"][k].get("ns", 0)) for k in STAT_KEYS}}
            for m in stats.get("model_stats", [])}


def per_request_ms(before: dict, after: dict) -> dict:
    """Per model: mean milliseconds per request of each step between two :func:`model_stats` readings."""
    out = {}
    for name, now in after.items():
        count = now["count"] - before.get(name, {}).get("count", 0)
        if count:
            out[name] = {"requests": count, **{k: (now[k] - before.get(name, {}).get(k, 0)) / 1e6 / count
                                               for k in STAT_KEYS}}
    return out


def run(args, tmp: Path) -> dict:
    from banet.checkpoint import model_from_checkpoint
    from banet.client import TritonSegmenter
    from banet.server import TritonServer, free_port
    from banet.video import output_paths, stream_video
    from export.onnx import export_onnx
    from export.repository import write_repository
    from references.serving.kvasir_clip import make_clip

    clip = args.clip or make_clip(tmp / "kvasir_720p.mp4", args.data, size=(1280, 720), fps=25.0,
                                  seconds=args.seconds)
    model, payload = model_from_checkpoint(args.checkpoint)
    size = int((payload.get("train_config") or {}).get("size") or args.image_size)
    onnx = export_onnx(model.eval(), tmp / "model.onnx", image_size=size)
    repo = tmp / "model_repository"
    write_repository(repo, onnx_path=onnx, image_size=size)
    env = {} if args.ort_threads is None else {"BANET_ORT_THREADS": str(args.ort_threads)}
    logging.getLogger("banet.server.tritonserver").setLevel(logging.WARNING)
    streams = []
    with TritonServer(repo, grpc_port=free_port(), http_port=free_port(), metrics_port=None, env=env) as server:
        segmenter = TritonSegmenter(server.grpc_url, timeout_s=10, retries=0)
        try:
            plan = [(send, flight, overlay) for overlay in args.overlay for send in args.send
                    for flight in args.max_in_flight]
            for send, flight, with_overlay in plan:
                out = Path(args.keep) if args.keep else tmp / "out"
                overlay, table = output_paths(out / f"{send}_in_flight_{flight}_overlay_{with_overlay}", clip)
                load_before = [round(v, 2) for v in os.getloadavg()]
                server_cpu, stats = session_cpu_s(server.process.pid), model_stats(segmenter)
                summary = stream_video(segmenter, clip, overlay if with_overlay == "on" else None, table,
                                       max_in_flight=flight, send=send, warmup_frames=args.warmup, force=args.force)
                server_cpu = session_cpu_s(server.process.pid) - server_cpu
                steps = per_request_ms(stats, model_stats(segmenter))
                load_after = [round(v, 2) for v in os.getloadavg()]
                row = {**summary.to_dict(), "load_before": load_before, "load_after": load_after,
                       "server_cpu_ms_per_sent_frame": 1000 * server_cpu / max(summary.sent, 1),
                       "triton_ms_per_request": steps}
                row["goal_met"] = bool(row["dropped_steady"] == 0 and not row["stopped"] and row["errors"] == 0
                                       and row["achieved_fps"] >= 0.98 * row["source_fps"])
                log.info("%s, max in flight %d: %d dropped (%d steady), p50 %.1f ms, p99 %.1f ms, %.2f fps", send, flight,
                         row["dropped"], row["dropped_steady"], row["latency_p50_ms"] or 0, row["latency_p99_ms"] or 0,
                         row["achieved_fps"] or 0)
                streams.append(row)
            # what send=array became (TritonSegmenter chooses): raw pixels to banet_raw, or a PNG to banet
            array_route = (f"raw pixels to {segmenter.raw_model}" if segmenter.raw_available()
                           else f"PNG to {segmenter.model}")
        finally:
            segmenter.close()
    return {"clip": str(clip), "checkpoint": str(args.checkpoint), "image_size": size, "array_route": array_route,
            "streams": streams}


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# Live video through Triton (issue 23's video goal)", "", f"- command: `{result['command']}`",
             f"- date: {m['date']}", f"- machine: {m['cpu']}, {m['cores']} cores; load average at the start "
             f"{m.get('load_average')}", f"- note: {result.get('note', '')}",
             f"- clip: {result['clip_description']}", f"- model: {result['checkpoint']} served at "
             f"{result['image_size']} px (ONNX Runtime in the Python backend, the default repository)",
             f"- frames sent as array went as: {result.get('array_route', 'a PNG (not recorded)')}",
             f"- goal: {GOAL}", "",
             "| frames sent as | overlay | max in flight | frames | sent | dropped | dropped after warm-up | errors | p50 ms | p99 ms | max ms | "
             "achieved fps | source fps | reading lag max ms | client CPU ms/frame | server CPU ms/sent frame | "
             "load before -> after | goal met |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(v, d=1):
        return "-" if v is None else f"{v:.{d}f}"

    for s in result["streams"]:
        lines.append(f"| {s['send']} | {'yes' if s['overlay'] else 'no'} | {s['max_in_flight']} | {s['frames_read']} | {s['sent']} | {s['dropped']} | "
                     f"{s['dropped_steady']} (warm-up {s['warmup_frames']}) | {s['errors']} | {f(s['latency_p50_ms'])} | "
                     f"{f(s['latency_p99_ms'])} | {f(s['latency_max_ms'])} | {f(s['achieved_fps'], 2)} | "
                     f"{f(s['source_fps'], 2)} | {f(s['max_lag_ms'], 0)} | {f(s['client_cpu_ms_per_frame'])} | "
                     f"{f(s['server_cpu_ms_per_sent_frame'])} | {s['load_before'][0]} -> {s['load_after'][0]} | "
                     f"{'yes' if s['goal_met'] else 'no'} |")
    lines += ["", "Triton's statistics per step (ms per request, wall time inside the server; `banet` is the "
              "ensemble around the three steps):", "",
              "| frames sent as | overlay | max in flight | model | requests | queue | compute input | compute infer | "
              "compute output |", "|---|---|---|---|---|---|---|---|---|"]
    for s in result["streams"]:
        for name, st in sorted(s.get("triton_ms_per_request", {}).items()):
            lines.append(f"| {s['send']} | {'yes' if s['overlay'] else 'no'} | {s['max_in_flight']} | {name} | "
                         f"{st['requests']} | {st['queue']:.1f} | {st['compute_input']:.1f} | {st['compute_infer']:.1f} | "
                         f"{st['compute_output']:.1f} |")
    lines += ["", "Latency is the client's: the frame's encoding (array: TritonSegmenter.predict's own, raw pixels to "
              "banet_raw when the server has it, else a PNG; jpeg: quality 90 in banet.video), the gRPC round trip and "
              "the server's decode (none for raw pixels: a resize only), network and post-processing. CPU per frame: the client process (decoding, request encoding, overlay and its H.264 "
              "encoding, CSV) per frame read; the server's process tree (tritonserver and its Python-backend stubs) per "
              "frame sent. Achieved fps = answered frames per second of "
              "the stream's duration.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench import options
    from bench.results import command_line

    p = argparse.ArgumentParser(prog="python -m references.serving.live_video", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=Path("models/banet_tiny128_kvasir.pt"),
                   help="the served model (default: %(default)s)")
    p.add_argument("--data", type=Path, default=None, help="folder holding kvasir-seg/ (default: the data root)")
    p.add_argument("--clip", type=Path, default=None, help="a clip to stream instead of making one")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the made clip (default: %(default)s)")
    p.add_argument("--max-in-flight", type=options.positive_ints, default=(2,),
                   help="comma-separated values, one stream each (default: 2)")
    p.add_argument("--send", type=lambda t: tuple(v.strip() for v in t.split(",") if v.strip()), default=("array", "jpeg"),
                   help="comma-separated ways a frame travels (banet.video.SENDS), one stream each (default: array,jpeg)")
    p.add_argument("--overlay", type=lambda t: tuple(v.strip() for v in t.split(",") if v.strip() in ("on", "off")),
                   default=("on", "off"), help="comma-separated on/off: with and/or without the overlay video (default: on,off)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up frames (default: one second)")
    p.add_argument("--image-size", type=int, default=128, help="served size when the checkpoint does not say")
    p.add_argument("--ort-threads", type=int, default=None, help="ONNX Runtime threads in the server (default: its own)")
    p.add_argument("--keep", type=Path, default=None, help="keep the overlay videos and CSVs in this folder")
    p.add_argument("--note", default="", help="a note for the results file (e.g. what else ran on the cores)")
    options.add_output(p, tag=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from banet.data import data_root

    args.data = args.data or data_root()
    if not args.checkpoint.is_file():
        p.error(f"{args.checkpoint}: not found")
    files = options.result_files(args, kind="live_video", parser=p,
                                 command=command_line("python -m references.serving.live_video", argv))
    with tempfile.TemporaryDirectory(prefix="banet-live-") as tmp:
        result = run(args, Path(tmp))
        clip = Path(result["clip"])
        from banet.video import VideoReader

        with VideoReader(clip) as video:
            result["clip_description"] = (f"{video.width}x{video.height} H.264 at {video.fps:g} fps, {video.frame_count} "
                                          f"frames, {clip.stat().st_size / 1e6:.1f} MB"
                                          + ("" if args.clip else " (Kvasir-SEG test frames, references.serving.kvasir_clip)"))
    result["note"] = args.note
    result["title"] = "live video"
    options.finish(files, result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
