"""``banet-client VIDEO``: stream a video file or a camera through Triton as live video.

    banet-client clip.mp4 --url 127.0.0.1:8001 --out DIR [--max-in-flight 2] [--speed 1] [--force]
    banet-client 0 --out DIR --max-frames 750        # camera 0 (V4L2 on Linux, AVFoundation on macOS)

Frames are sent at the source's frame rate (a file is paced by its timestamps, ``--speed`` times faster
if asked) with at most ``--max-in-flight`` requests outstanding; a frame whose turn comes while all are
busy is dropped and counted, never queued. Writes ``DIR/NAME_overlay.mp4`` (H.264, the source's size and
rate: the mask tinted with its contour on every answered frame, the plain frame on dropped or failed
ones) and ``DIR/NAME_frames.csv`` (frame, pts_s, sent_s, status ok/dropped/error, latency_ms, area,
attempts, error), both renamed into place when the stream ends (Ctrl-C ends a camera stream and keeps
what was written); existing outputs are refused unless ``--force``. Prints frames read, sent, dropped (and
dropped after the warm-up), p50/p99 latency and achieved fps. Exit status 0 when every frame sent was
answered, the overlay was written and the stream ran to its end, 1 otherwise, 2 for a bad source or option.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys

from banet import spec


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="banet-client", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", help="a video file (.mp4, .mkv, .avi, ...) or a camera index (0, 1, ...)")
    from banet.cli.client import add_server_options

    add_server_options(p, out_help="output folder (NAME_overlay.mp4, NAME_frames.csv)")
    p.add_argument("--max-in-flight", type=int, default=2,
                   help="requests outstanding at most; a frame arriving when all are busy is dropped (default: %(default)s)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="pace a file at this multiple of its frame rate; 0 = as fast as it decodes (default: %(default)s)")
    p.add_argument("--send", choices=("array", "jpeg"), default="array",
                   help="array: the frame as pixels to TritonSegmenter.predict (lossless); jpeg: re-encoded here as "
                        "JPEG (quality 90), far cheaper on the CPU than the array's PNG (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=None,
                   help="frames left out of the steady-state drop count (default: one second of frames)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames (a camera runs until Ctrl-C)")
    p.add_argument("--camera-fps", type=float, default=None, help="frame rate to ask a camera for")
    p.add_argument("--threshold", type=float, default=None, help=f"mask threshold in [0, 1] (server default {spec.MASK_THRESHOLD})")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request deadline in seconds (default: %(default)s)")
    p.add_argument("--retries", type=int, default=0,
                   help="retries of UNAVAILABLE per frame (default 0: a live frame is not worth waiting for)")
    p.add_argument("--give-up", type=float, default=10.0,
                   help="end the stream when no frame has been answered for this many seconds of failures "
                        "(unavailable, deadline exceeded, refused) (default: %(default)s)")
    p.add_argument("--wait-ready", type=float, default=10.0,
                   help="seconds to wait for the server and model to be ready before the first frame (default: %(default)s)")
    p.add_argument("--no-drop", action="store_true",
                   help="wait for a free slot instead of dropping a frame: every frame of a file is segmented, "
                        "and the stream falls behind the source rate when the server cannot keep up")
    p.add_argument("--no-overlay", action="store_true", help="write the per-frame CSV only (saves the overlay's CPU)")
    p.add_argument("--force", action="store_true", help="replace existing overlay/CSV files")
    p.add_argument("--quiet", action="store_true", help="no progress bar or report")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from tqdm import tqdm

    from banet.client import InferenceError, TritonSegmenter
    from banet.video import VideoError, is_camera, output_paths, stream_video, summary_lines

    def fail(message: str, status: int = 2) -> int:
        print(f"banet-client: {message}", file=sys.stderr)
        return status

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        return fail(f"--threshold must be within [0, 1], got {args.threshold}")
    if args.max_in_flight < 1:
        return fail(f"--max-in-flight must be >= 1, got {args.max_in_flight}")
    if args.speed < 0:
        return fail(f"--speed must be >= 0, got {args.speed}")
    overlay, table = output_paths(args.out, args.video)
    overlay = None if args.no_overlay else overlay
    existing = [p for p in (overlay, table) if p is not None and p.exists()]
    if existing and not args.force:
        return fail(f"{existing[0]} exists; pass --force to replace it")
    from banet.video import VideoReader

    total = None
    if not is_camera(args.video):  # a bad file is reported before the server is asked; the progress bar's length
        try:
            with VideoReader(args.video) as probe:
                total = probe.frame_count
        except VideoError as err:
            return fail(str(err))
    segmenter = TritonSegmenter(args.url, model=args.model, raw_model=args.raw_model, timeout_s=args.timeout,
                                retries=args.retries)
    bar = None
    try:
        try:
            segmenter.wait_ready(args.wait_ready)
        except InferenceError:
            return fail(f"no Triton server with model {args.model!r} ready at {args.url} "
                        f"(waited {args.wait_ready:g} s); start one with banet-serve")
        if args.max_frames:
            total = min(total or args.max_frames, args.max_frames)
        bar = tqdm(total=total, unit="frame", disable=args.quiet or is_camera(args.video) and total is None,
                   desc="banet-client")
        counts = {"dropped": 0, "error": 0}

        def on_frame(result, image, mask) -> None:
            bar.update(1)
            if result.status in counts:
                counts[result.status] += 1
                bar.set_postfix(dropped=counts["dropped"], failed=counts["error"], refresh=False)

        try:
            summary = stream_video(segmenter, args.video, overlay, table, max_in_flight=args.max_in_flight,
                                   speed=math.inf if args.speed == 0 else args.speed, warmup_frames=args.warmup,
                                   max_frames=args.max_frames, threshold=args.threshold, force=args.force,
                                   give_up_s=args.give_up, camera_fps=args.camera_fps, send=args.send,
                                   drop=not args.no_drop, on_frame=on_frame)
        except (VideoError, FileExistsError, ValueError) as err:
            return fail(str(err))
    finally:
        if bar is not None:
            bar.close()
        segmenter.close()
    if not args.quiet:
        for line in summary_lines(summary):
            print(line)
        for example in summary.error_examples:
            print(f"  failed: {example}", file=sys.stderr)
    if summary.overlay_error:
        print(f"banet-client: overlay: {summary.overlay_error}", file=sys.stderr)
    if summary.stopped:
        print(f"banet-client: stopped early: {summary.stopped}", file=sys.stderr)
    return 1 if summary.errors or summary.stopped or summary.overlay_error else 0


if __name__ == "__main__":
    sys.exit(main())
