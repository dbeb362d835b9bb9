"""Which video library for ``banet-client VIDEO``: PyAV (``av``) or OpenCV (``opencv-python-headless``), by
installed size and decode speed, measured side by side.

    python -m references.serving.video_decoders --data ../shared/data --rounds 3

Makes a 720p and a 1080p clip from Kvasir-SEG test frames (references.serving.kvasir_clip, H.264, 25 fps, 8 s)
in a temporary folder, then decodes each clip to ``(H, W, 3)`` uint8 RGB arrays with each library that imports
(PyAV: ``to_ndarray("rgb24")``; OpenCV: ``VideoCapture.read`` + ``cvtColor`` BGR->RGB), each with its default
threading (PyAV with FFmpeg's automatic threading, as banet.video reads) and with one decoding thread, all
interleaved in every round: wall-clock fps, and CPU milliseconds per frame (process time over all threads,
which other jobs on shared cores hardly move). Installed size is the
sum of the files a distribution's RECORD lists (its bundled FFmpeg/codec libraries included; numpy, shared by
both, not counted). Also records whether each can write H.264 (the overlay video). Install OpenCV elsewhere to
compare without touching the project's environment, e.g. ``pip install --target /tmp/cv opencv-python-headless``
and ``PYTHONPATH=/tmp/cv``.

Writes ``bench/results/video_decoders_<date>_<machine>.json`` and ``.md`` (bench.results.ResultFiles).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
LIBRARIES = {"pyav": "av", "opencv": "opencv-python-headless"}
CLIPS = {"720p": (1280, 720), "1080p": (1920, 1080)}


def installed_bytes(distribution: str) -> dict:
    """Bytes of the files ``distribution`` installed (its RECORD), and its version; None when absent."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return {"version": None, "bytes": None}
    total = 0
    for entry in dist.files or []:
        path = Path(entry.locate())
        if path.is_file():
            total += path.stat().st_size
    return {"version": dist.version, "bytes": total, "location": str(dist.locate_file(""))}


def decode_pyav(path: Path, threads: int = 0) -> int:
    """Decode every frame to RGB with PyAV; ``threads`` 0 = FFmpeg's automatic frame + slice threading."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if threads:
            stream.codec_context.thread_count = threads
        else:
            stream.thread_type = "AUTO"
        count = 0
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            count += 1
    return count


def decode_opencv(path: Path, threads: int = 0) -> int:
    """Decode every frame to RGB with OpenCV's FFmpeg capture; ``threads`` 0 = its default."""
    import cv2

    params = [cv2.CAP_PROP_N_THREADS, threads] if threads else []
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        raise RuntimeError(f"OpenCV cannot open {path}")
    count = 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        count += 1
    capture.release()
    return count


DECODERS = {"pyav": decode_pyav, "opencv": decode_opencv}
VARIANTS = {"pyav": ("pyav", 0), "pyav 1 thread": ("pyav", 1), "opencv": ("opencv", 0), "opencv 1 thread": ("opencv", 1)}
"""What is timed: each library with its default threading and with one decoding thread (the CPU cost per frame)."""


def writes_h264(name: str, folder: Path) -> bool | str:
    """Whether the library writes an H.264 file here without extra system packages."""
    frame = np.zeros((64, 64, 3), np.uint8)
    path = folder / f"h264_{name}.mp4"
    try:
        if name == "pyav":
            from banet.video import write_video

            write_video([frame] * 3, path, fps=25, force=True)
        else:
            import cv2

            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"avc1"), 25, (64, 64))
            if not writer.isOpened():
                return "no: VideoWriter with fourcc avc1 did not open (no H.264 encoder in the wheel; mp4v works)"
            for _ in range(3):
                writer.write(frame)
            writer.release()
        return path.is_file() and path.stat().st_size > 0
    except Exception as err:  # noqa: BLE001 - recorded as the answer
        return f"no: {type(err).__name__}: {err}"


def available(name: str) -> str | None:
    """None when the library imports, else why not."""
    try:
        __import__("av" if name == "pyav" else "cv2")
    except ImportError as err:
        return f"not importable: {err}"
    return None


def measure(clips: dict[str, Path], names: list[str], rounds: int) -> dict:
    """Per clip and variant: decode fps (wall) and CPU ms per frame (all threads) of each round, variants
    interleaved with their order rotating. CPU time per frame hardly moves with other jobs on the cores."""
    variants = [v for v, (lib, _) in VARIANTS.items() if lib in names]
    fps: dict = {clip: {v: [] for v in variants} for clip in clips}
    cpu: dict = {clip: {v: [] for v in variants} for clip in clips}
    frames: dict = {clip: {} for clip in clips}
    load = []
    for rep in range(rounds):
        order = variants[rep % len(variants):] + variants[:rep % len(variants)]
        for clip, path in clips.items():
            for variant in order:
                lib, threads = VARIANTS[variant]
                wall, used = time.perf_counter(), time.process_time()
                count = DECODERS[lib](path, threads)
                wall, used = time.perf_counter() - wall, time.process_time() - used
                fps[clip][variant].append(count / wall)
                cpu[clip][variant].append(1000 * used / count)
                frames[clip][variant] = count
        load.append([round(v, 2) for v in os.getloadavg()])
        log.info("round %d/%d (load %.2f)", rep + 1, rounds, load[-1][0])
    return {"fps": fps, "cpu_ms_per_frame": cpu, "frames": frames, "load_per_round": load}


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# Video decoders: PyAV vs OpenCV", "", f"- command: `{result['command']}`", f"- date: {m['date']}",
             f"- machine: {m['cpu']}, {m['cores']} cores; load average at the start {m.get('load_average')}, "
             f"per round {result['load_per_round']}",
             f"- clips: {result['clips']}", "", "## Install", "",
             "| library | distribution | version | installed MB | writes H.264 |", "|---|---|---|---|---|"]
    for name, info in result["libraries"].items():
        if info.get("skipped"):
            lines.append(f"| {name} | {LIBRARIES[name]} | - | - | skipped: {info['skipped']} |")
        else:
            size = "-" if info["bytes"] is None else f"{info['bytes'] / 1e6:.1f}"
            lines.append(f"| {name} | {LIBRARIES[name]} | {info['version']} | {size} | {info['h264']} |")
    clips = list(result["fps"])
    lines += ["", "## Decoding to RGB arrays (median over rounds, min-max)", "",
              "| variant | " + " | ".join(f"{c} fps | {c} CPU ms/frame" for c in clips) + " |",
              "|---|" + "---|---|" * len(clips)]
    for variant in result["fps"][clips[0]]:
        cells = []
        for clip in clips:
            runs, cpu = result["fps"][clip][variant], result["cpu_ms_per_frame"][clip][variant]
            cells += [f"{np.median(runs):.0f} ({min(runs):.0f}-{max(runs):.0f})",
                      f"{np.median(cpu):.2f} ({min(cpu):.2f}-{max(cpu):.2f})"]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += ["", f"Summary: {result['choice']}", ""]
    return "\n".join(lines)


def choose(result: dict) -> str:
    libs = {n: i for n, i in result["libraries"].items() if not i.get("skipped")}
    if len(libs) < 2:
        return f"only {', '.join(libs) or 'none'} measured: no comparison"
    parts = []
    for clip in result["fps"]:
        wall = [float(np.median(result["fps"][clip][n])) for n in ("pyav", "opencv")]
        cpu = [float(np.median(result["cpu_ms_per_frame"][clip][n])) for n in ("pyav 1 thread", "opencv 1 thread")]
        parts.append(f"{clip}: PyAV {wall[0]:.0f} vs OpenCV {wall[1]:.0f} fps with default threads, "
                     f"{cpu[0]:.2f} vs {cpu[1]:.2f} CPU ms per frame on one thread")
    size = libs["pyav"]["bytes"] / 1e6, libs["opencv"]["bytes"] / 1e6
    return (f"installed PyAV {size[0]:.0f} MB vs OpenCV {size[1]:.0f} MB; " + "; ".join(parts)
            + f"; H.264 writing: PyAV {libs['pyav']['h264']}, OpenCV {libs['opencv']['h264']}")


def main(argv: list[str] | None = None) -> int:
    from bench import options
    from bench.results import command_line
    from references.serving.kvasir_clip import make_clip

    p = argparse.ArgumentParser(prog="python -m references.serving.video_decoders", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="folder holding kvasir-seg/ (default: the data root)")
    p.add_argument("--rounds", type=int, default=3, help="decode passes per clip and library (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=8.0, help="clip length at 25 fps (default: %(default)s)")
    options.add_output(p, tag=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from banet.data import data_root

    data = args.data or data_root()
    files = options.result_files(args, kind="video_decoders", parser=p,
                                 command=command_line("python -m references.serving.video_decoders", argv))
    libraries = {}
    for name, dist in LIBRARIES.items():
        why = available(name)
        libraries[name] = {"skipped": why} if why else installed_bytes(dist)
    names = [n for n, i in libraries.items() if not i.get("skipped")]
    with tempfile.TemporaryDirectory(prefix="banet-video-") as tmp:
        clips = {}
        for label, size in CLIPS.items():
            clips[label] = make_clip(Path(tmp) / f"kvasir_{label}.mp4", data, size=size, fps=25.0,
                                     seconds=args.seconds)
            log.info("made %s (%.1f MB)", clips[label], clips[label].stat().st_size / 1e6)
        for name in names:
            libraries[name]["h264"] = writes_h264(name, Path(tmp))
        measured = measure(clips, names, args.rounds)
        result = {"title": "video decoders", "libraries": libraries,
                  "clips": {k: f"{CLIPS[k][0]}x{CLIPS[k][1]} H.264 25 fps, {args.seconds:g} s, "
                               f"{v.stat().st_size / 1e6:.1f} MB (Kvasir-SEG test frames)" for k, v in clips.items()},
                  **measured}
    result["choice"] = choose(result)
    options.finish(files, result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
