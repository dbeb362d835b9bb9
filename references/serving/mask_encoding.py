"""How to send a binary mask back: bytes and CPU time of each encoding, measured side by side.

Masks: the Kvasir-SEG test split's ground-truth masks at their own sizes (0/255), and a 1920x1080 frame set
(Kvasir-SEG's one 1920x1072 mask and the first 15 test masks, upscaled nearest to 1920x1080, the size of a video frame). Every
candidate encodes every mask and decodes it back to the identical ``(H, W)`` uint8 0/255 array (checked), one
thread, candidates interleaved and their order rotated per round, so load hits all alike.

Candidates: PNG by Pillow (mode ``L`` 0/255 and mode ``1`` one bit per pixel, zlib levels 1 and 6), run-length
(numpy: uint32 run lengths, raw or zlib level 1), ``np.packbits`` + zlib level 1, zlib of the raw bytes, and the
codec the server uses (:mod:`banet.mask_codec`). Today's response is the ``MASK`` + ``BOUNDARY`` tensors,
``2 x H x W`` bytes, the size every row is compared with.

    python -m references.serving.mask_encoding --data ../shared/data --reps 5

Writes ``bench/results/mask_encoding_<date>_<machine>.json`` and ``.md`` (bench.results; refuses to overwrite
unless --force).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
FRAME_SIZE = (1080, 1920)
"""(height, width) of the video-frame set."""


# --- candidates: (encode(mask) -> bytes, decode(bytes) -> mask) --------------------------------------------
def _png(mode: str, level: int):
    from PIL import Image

    def encode(mask: np.ndarray) -> bytes:
        buf = io.BytesIO()
        image = Image.fromarray(mask > 0) if mode == "1" else Image.fromarray(mask)
        image.save(buf, format="PNG", compress_level=level)
        return buf.getvalue()

    def decode(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as image:
            # mode "1" -> "L" maps 1 to 255 (Pillow's own bool arrays hold 255 in their bytes: no view tricks)
            return np.asarray(image.convert("L") if image.mode == "1" else image)

    return encode, decode


def _rle(level: int | None):
    def encode(mask: np.ndarray) -> bytes:
        flat = mask.reshape(-1) > 0
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        edges = np.concatenate(([0], change, [flat.size]))
        runs = np.diff(edges).astype(np.uint32)
        if flat.size and flat[0]:
            runs = np.concatenate(([0], runs)).astype(np.uint32)  # runs alternate, background first
        body = np.asarray(mask.shape, np.uint32).tobytes() + runs.tobytes()
        return body if level is None else zlib.compress(body, level)

    def decode(data: bytes) -> np.ndarray:
        raw = np.frombuffer(data if level is None else zlib.decompress(data), np.uint32)
        shape, runs = tuple(int(v) for v in raw[:2]), raw[2:]
        values = np.zeros(runs.size, np.uint8)
        values[1::2] = 255
        return np.repeat(values, runs).reshape(shape)

    return encode, decode


def _packbits(level: int):
    def encode(mask: np.ndarray) -> bytes:
        return np.asarray(mask.shape, np.uint32).tobytes() + zlib.compress(np.packbits(mask > 0).tobytes(), level)

    def decode(data: bytes) -> np.ndarray:
        shape = tuple(int(v) for v in np.frombuffer(data[:8], np.uint32))
        bits = np.unpackbits(np.frombuffer(zlib.decompress(data[8:]), np.uint8), count=shape[0] * shape[1])
        return (bits * np.uint8(255)).reshape(shape)

    return encode, decode


def _zlib_raw(level: int):
    def encode(mask: np.ndarray) -> bytes:
        return np.asarray(mask.shape, np.uint32).tobytes() + zlib.compress(mask.tobytes(), level)

    def decode(data: bytes) -> np.ndarray:
        shape = tuple(int(v) for v in np.frombuffer(data[:8], np.uint32))
        return np.frombuffer(zlib.decompress(data[8:]), np.uint8).reshape(shape)

    return encode, decode


def candidates() -> dict:
    out = {"png L level 1": _png("L", 1), "png L level 6": _png("L", 6),
           "png 1-bit level 1": _png("1", 1), "png 1-bit level 6": _png("1", 6),
           "rle uint32": _rle(None), "rle uint32 + zlib 1": _rle(1),
           "packbits + zlib 1": _packbits(1), "zlib 1 of raw bytes": _zlib_raw(1)}
    try:
        from banet import mask_codec
    except ImportError:  # the library's codec is measured once it exists
        return out
    out[f"banet.mask_codec ({mask_codec.FORMAT})"] = (mask_codec.encode_mask, mask_codec.decode_mask)
    return out


# --- measuring -----------------------------------------------------------------------------------------------
def time_candidate(funcs, masks: list[np.ndarray]) -> dict:
    """Mean bytes, encode and decode seconds per mask over ``masks`` (one pass); raises if a decode differs."""
    encode, decode = funcs
    sizes, enc, dec = [], 0.0, 0.0
    for mask in masks:
        t0 = time.perf_counter()
        data = encode(mask)
        t1 = time.perf_counter()
        back = decode(data)
        t2 = time.perf_counter()
        if back.shape != mask.shape or back.dtype != np.uint8 or not np.array_equal(back, mask):
            raise AssertionError("decoded mask differs from the encoded one")
        sizes.append(len(data))
        enc, dec = enc + t1 - t0, dec + t2 - t1
    return {"bytes": float(np.mean(sizes)), "bytes_max": int(max(sizes)), "encode_s": enc / len(masks),
            "decode_s": dec / len(masks)}


def measure(sets: dict[str, list[np.ndarray]], reps: int) -> dict:
    cands = candidates()
    names = list(cands)
    rounds = {label: {name: [] for name in names} for label in sets}
    load = []
    for rep in range(reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for label, masks in sets.items():
            for name in order:
                rounds[label][name].append(time_candidate(cands[name], masks))
        load.append(os.getloadavg())
        log.info("round %d/%d (load %.1f)", rep + 1, reps, load[-1][0])
    out = {}
    for label, per in rounds.items():
        today = float(np.mean([2 * m.size for m in sets[label]]))  # MASK + BOUNDARY uint8 tensors
        out[label] = {"masks": len(sets[label]), "today_bytes": today,
                      "foreground": float(np.mean([np.count_nonzero(m) / m.size for m in sets[label]])), "candidates": {}}
        for name, runs in per.items():
            total = [1000 * (r["encode_s"] + r["decode_s"]) for r in runs]
            out[label]["candidates"][name] = {
                "bytes": runs[0]["bytes"], "bytes_max": runs[0]["bytes_max"],
                "share_of_today": runs[0]["bytes"] / today,
                "encode_ms": 1000 * float(np.median([r["encode_s"] for r in runs])),
                "decode_ms": 1000 * float(np.median([r["decode_s"] for r in runs])),
                "total_ms": {"min": min(total), "median": float(np.median(total)), "max": max(total)}}
    return {"sets": out, "loadavg": load}


def mask_sets(data_root: Path) -> dict[str, list[np.ndarray]]:
    from PIL import Image

    from banet import processing, spec
    from banet.data.pairs import find_pairs

    pairs = find_pairs(data_root / "kvasir-seg", "test")
    if not pairs:
        raise FileNotFoundError(f"no Kvasir-SEG test split under {data_root / 'kvasir-seg'}")

    def as_uint8(mask: np.ndarray) -> np.ndarray:
        return np.where(mask, spec.MASK_FOREGROUND_VALUE, 0).astype(np.uint8)

    test = [as_uint8(processing.load_mask(p.mask)) for p in pairs]
    # Kvasir-SEG holds one 1920x1072 frame (the one references/serving/hotpath.py times); with the first 15 test
    # masks, all upscaled (nearest) to a 1920x1080 video frame
    large = [m for m in sorted((data_root / "kvasir-seg" / "masks").glob("*.jpg")) if Image.open(m).size == (1920, 1072)]
    frames = [as_uint8(processing.resize_mask(processing.load_mask(m), FRAME_SIZE))
              for m in [*large[:1], *(p.mask for p in pairs[:15])]]
    return {"kvasir test split": test, "1920x1080": frames}


def markdown(result: dict) -> str:
    m = result["machine"]
    loads = [x[0] for x in result["loadavg"]]
    lines = ["# Mask encodings: response bytes and CPU time (encode + decode)", "",
             f"- command: `{result['command']}`", f"- machine: {m['cpu']}, {m['cores']} cores; date {m['date']}",
             f"- one thread; {result['reps']} rounds, candidates interleaved (order rotated per round); load average "
             f"{min(loads):.1f}-{max(loads):.1f} (shared cores: compare rows of one table)",
             "- every decode checked equal to the encoded mask; bytes are deterministic (one round)",
             f"- today: `MASK` + `BOUNDARY` uint8 tensors, 2 x H x W bytes", ""]
    for label, s in result["sets"].items():
        lines += [f"## {label} ({s['masks']} masks, {s['foreground']:.1%} foreground; today {s['today_bytes'] / 1e3:,.0f} kB)", "",
                  "| encoding | mean bytes | max bytes | % of today | encode ms | decode ms | encode+decode ms: median (min-max) |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in sorted(s["candidates"].items(), key=lambda kv: kv[1]["total_ms"]["median"]):
            t = r["total_ms"]
            lines.append(f"| {name} | {r['bytes']:,.0f} | {r['bytes_max']:,} | {100 * r['share_of_today']:.3f} | "
                         f"{r['encode_ms']:.3f} | {r['decode_ms']:.3f} | {t['median']:.3f} ({t['min']:.3f}-{t['max']:.3f}) |")
        lines.append("")
    if result.get("choice"):
        lines += ["## Choice", "", result["choice"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench import options
    from bench.results import command_line

    p = argparse.ArgumentParser(prog="python -m references.serving.mask_encoding", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="datasets root holding kvasir-seg/")
    p.add_argument("--reps", type=int, default=5, help="rounds (>= 3)")
    options.add_output(p, tag=None)
    args = p.parse_args(argv)
    if args.reps < 3:
        p.error("--reps must be >= 3 (a spread needs repeats)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    files = options.result_files(args, kind="mask_encoding", parser=p,
                                 command=command_line("python -m references.serving.mask_encoding", argv))
    result = {"title": "mask encodings", "reps": args.reps, **measure(mask_sets(args.data), args.reps)}
    result["choice"] = choice(result)
    paths = files.write(result, markdown)
    print(markdown(result))
    print(f"wrote {', '.join(map(str, paths.values()))}")
    return 0


def choice(result: dict) -> str:
    """On 1920x1080, among the encodings within 5 % of today's bytes: the fastest (median encode + decode), and
    every one whose median lies within the fastest's min-max spread counts as tied with it (shared cores); of the
    tied, the smallest."""
    per = result["sets"]["1920x1080"]["candidates"]
    fitting = {n: r for n, r in per.items() if r["share_of_today"] <= 0.05 and not n.startswith("banet.")}
    if not fitting:
        return "no candidate within 5 % of today's bytes"
    fastest = min(fitting, key=lambda n: fitting[n]["total_ms"]["median"])
    spread = fitting[fastest]["total_ms"]
    tied = [n for n, r in fitting.items() if r["total_ms"]["median"] <= spread["max"]]
    best = min(tied, key=lambda n: fitting[n]["bytes"])
    return (f"fastest within 5 % of today's bytes on 1920x1080: {fastest} ({spread['median']:.3f} ms, "
            f"{spread['min']:.3f}-{spread['max']:.3f}); tied within that spread: {', '.join(tied)}; the smallest of "
            f"them: **{best}** ({fitting[best]['bytes']:,.0f} B mean, {fitting[best]['total_ms']['median']:.3f} ms, "
            f"{100 * fitting[best]['share_of_today']:.3f} % of today's MASK + BOUNDARY)")


if __name__ == "__main__":
    sys.exit(main())
