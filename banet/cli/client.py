"""``banet-client``: segment image files or folders on a Triton server over gRPC.

    banet-client IMAGES_OR_FOLDERS... --url 127.0.0.1:8001 --out DIR [--concurrency 4] [--threshold 0.5]
                 [--outputs compact|full]

One video file or camera index instead streams it as live video: ``banet-client VIDEO --out DIR``
(:mod:`banet.cli.video`, ``banet-client clip.mp4 --help``).

Writes ``DIR/masks/NAME.png`` (0/255), ``DIR/overlays/NAME.png`` and appends one row per image to
``DIR/results.csv`` (latency, area, status, error). Existing outputs are skipped (status
``exists``) unless ``--force``; every PNG is written atomically, so an interrupted run leaves no
half file and a rerun completes only what is missing. A bad file is reported and the rest go on;
the exit status is 1 when any image failed.

DICOM files (``.dcm``/``.dicom``, or any file with the ``DICM`` marker; needs ``pip install
'banet-deploy[dicom]'``) are decoded and shown as a viewer would (docs/dicom.md); each frame gets its
mask (``NAME.png``, or ``NAME_frame0001.png`` ... for a multi-frame file) and the file gets a DICOM
Segmentation ``DIR/seg/NAME.dcm`` whose segment is ``--seg-label`` and whose algorithm identification
comes from ``--manifest`` (the served export's manifest.json: precision, version) or else from the
server's model metadata (precision recorded as unknown).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from datetime import datetime, timezone

from banet import spec


def add_server_options(p: argparse.ArgumentParser, *, out_help: str) -> None:
    """``--url``, ``--out``, ``--model``, ``--raw-model``: what every banet-client mode (files, video) takes."""
    p.add_argument("--url", default=f"{spec.DEFAULT_HOST}:{spec.GRPC_PORT}", help="Triton gRPC HOST:PORT")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--model", default=spec.ENSEMBLE_MODEL, help="ensemble to call (default: %(default)s)")
    p.add_argument("--raw-model", default="auto", type=lambda v: None if v.lower() == "none" else v,
                   help="ensemble that takes decoded pixels (arrays: DICOM frames, video frames) and runs the same "
                        "network as --model; auto: banet_raw for the default banet, none for another --model; none: "
                        "send arrays as PNG to --model (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="banet-client", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", help="image files and/or folders of images")
    add_server_options(p, out_help="output folder (masks/, overlays/, results.csv)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=None, help=f"mask threshold in [0, 1] (server default {spec.MASK_THRESHOLD})")
    p.add_argument("--outputs", choices=("compact", "full"), default="compact",
                   help="compact: the server sends the run-length encoded mask (a few kB), the client decodes it; "
                        "full: the MASK and BOUNDARY tensors at the image size (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request deadline in seconds")
    p.add_argument("--retries", type=int, default=5, help="retries of UNAVAILABLE with exponential backoff")
    p.add_argument("--backoff", type=float, default=0.5, help="first retry delay in seconds (doubles each time)")
    p.add_argument("--force", action="store_true", help="replace existing mask/overlay files")
    p.add_argument("--seg-label", default="lesion", help="DICOM inputs: the SEG's segment label (default: %(default)s)")
    p.add_argument("--manifest", default=None,
                   help="DICOM inputs: the served export's manifest.json, for the SEG's algorithm version and precision")
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def video_source(argv: list[str]) -> str | None:
    """The one positional argument when it is a video file or a camera index (``banet-client VIDEO``), else None."""
    from banet.cli import video
    from banet.video import is_video_source

    takes_value = {flag for parser in (build_parser(), video.build_parser()) for action in parser._actions
                   if action.option_strings and action.nargs != 0 for flag in action.option_strings}
    positionals, tokens = [], iter(argv)
    for token in tokens:
        if token.startswith("-") and len(token) > 1:
            if token in takes_value:
                next(tokens, None)
        else:
            positionals.append(token)
    return positionals[0] if len(positionals) == 1 and is_video_source(positionals[0]) else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if video_source(argv) is not None:  # one video file or camera index: live video (banet.cli.video)
        from banet.cli import video

        return video.main(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from pathlib import Path

    from tqdm import tqdm

    from banet.client import TritonSegmenter, append_csv, collect_images, segment_files

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        print(f"banet-client: --threshold must be within [0, 1], got {args.threshold}", file=sys.stderr)
        return 2
    try:
        images = collect_images(args.images)
    except ValueError as err:
        print(f"banet-client: {err}", file=sys.stderr)
        return 2
    if not images:
        print("banet-client: no images found in " + " ".join(args.images), file=sys.stderr)
        return 2
    out = Path(args.out)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    segmenter = TritonSegmenter(args.url, model=args.model, raw_model=args.raw_model, timeout_s=args.timeout,
                                retries=args.retries, backoff_s=args.backoff, outputs=args.outputs)
    dicom = None
    from banet.dicom import is_dicom_file

    if any(is_dicom_file(p) for p in images):
        from banet.dicom_seg import Algorithm, SegOptions

        try:
            algorithm = (Algorithm.from_manifest(args.manifest, served_model=args.model) if args.manifest
                         else Algorithm.from_server(segmenter.client, served_model=args.model))
        except ValueError as err:
            print(f"banet-client: --manifest: {err}", file=sys.stderr)
            segmenter.close()
            return 2
        dicom = SegOptions(label=args.seg_label, algorithm=algorithm)
    bar = tqdm(total=len(images), unit="img", disable=args.quiet, desc="banet-client")

    def on_result(result) -> None:
        bar.update(1)
        if result.status == "error":
            bar.write(f"FAILED {result.image}: {result.error}", file=sys.stderr)

    try:
        results = segment_files(segmenter, images, out, concurrency=args.concurrency, force=args.force,
                                threshold=args.threshold, on_result=on_result, dicom=dicom)
    finally:
        bar.close()
        segmenter.close()
    append_csv(out / "results.csv", results, started)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "exists", "error")}
    latencies = sorted(r.latency_ms for r in results if r.status == "ok")
    if not args.quiet:
        median = f"{statistics.median(latencies):.1f} ms" if latencies else "-"
        print(f"{counts['ok']} segmented, {counts['exists']} skipped (outputs exist), {counts['error']} failed; "
              f"median latency {median}; results in {out / 'results.csv'}")
        for r in results:
            if r.status == "error":
                print(f"  failed: {r.image}: {r.error}", file=sys.stderr)
    return 1 if counts["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
