"""Which decoder plugins for compressed DICOM pixel data: decode time on pydicom's own test files, installed size.

For every compressed file in ``pydicom/data/test_files`` (JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000,
RLE), every pydicom decoding plugin installed for its transfer syntax (``pydicom.pixels.get_decoder(ts)``) decodes
it ``--reps`` times (interleaved, median reported), through pydicom's own ``Decoder.as_array`` with
``decoding_plugin=NAME``, so the time is what ``banet.dicom`` pays per file. Each plugin's result is also compared
with the first plugin's (max abs difference: lossy JPEG decoders may differ by a few levels). The installed size
of each plugin's distributions is summed from their RECORD files (importlib.metadata), shared libraries included.

    python -m references.serving.dicom_decoders --reps 5

Writes ``bench/results/dicom_decoders_<date>_<machine>.json`` and ``.md`` (bench.results.ResultFiles).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

PLUGIN_DISTRIBUTIONS = {
    "pylibjpeg": ("pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle"),
    "pillow": ("pillow",),
    "pyjpegls": ("pyjpegls",),
    "gdcm": ("python-gdcm",),
    "pydicom": (),  # pydicom's own pure-Python RLE decoder: no extra install
}
"""pydicom plugin name -> the distributions it needs (their sizes are summed)."""


def distribution_bytes(name: str) -> int | None:
    """Installed bytes of one distribution (its RECORD's files), None when it is not installed."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    total = 0
    for file in dist.files or ():
        path = Path(dist.locate_file(file))
        if path.is_file():
            total += path.stat().st_size
    return total


def compressed_test_files() -> list[Path]:
    """pydicom's bundled test files whose pixel data are compressed (the package folder, never the network)."""
    import pydicom
    from pydicom.misc import is_dicom

    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    found = []
    for path in sorted(folder.glob("*.dcm")):
        if not is_dicom(path):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        ts = getattr(ds.file_meta, "TransferSyntaxUID", None)
        if ts is not None and ts.is_compressed and "BitsAllocated" in ds:
            found.append(path)
    return found


def measure(paths: list[Path], reps: int) -> list[dict]:
    """One row per (file, plugin): median decode ms, ok/error, max abs difference to the first plugin."""
    import numpy as np
    import pydicom
    from pydicom.pixels import get_decoder

    rows = []
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
        ts = ds.file_meta.TransferSyntaxUID
        decoder = get_decoder(ts)
        plugins = sorted(decoder.available_plugins)
        times: dict[str, list[float]] = {p: [] for p in plugins}
        results: dict[str, object] = {}
        for _ in range(reps):
            for plugin in plugins:  # interleaved: load drift hits every plugin alike
                if isinstance(results.get(plugin), str):
                    continue
                started = time.perf_counter()
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        array, _ = decoder.as_array(ds, decoding_plugin=plugin)
                except Exception as err:  # noqa: BLE001 - a plugin that cannot decode this file is a result
                    results[plugin] = " ".join(str(err).split())[-200:]  # pydicom puts the plugin's own error last
                    continue
                times[plugin].append(time.perf_counter() - started)
                results[plugin] = array
        first = next((results[p] for p in plugins if not isinstance(results.get(p), str)), None)
        for plugin in plugins:
            value = results.get(plugin)
            ok = not isinstance(value, str)
            diff = (float(np.abs(value.astype(np.float64) - first.astype(np.float64)).max())
                    if ok and first is not None and value.shape == first.shape else None)
            rows.append({"file": path.name, "transfer_syntax": str(ts), "transfer_syntax_name": ts.name,
                         "plugin": plugin, "ok": ok, "error": None if ok else value,
                         "decode_ms": statistics.median(times[plugin]) * 1000 if ok else None,
                         "max_abs_diff_to_first": diff})
    return rows


def summarize(rows: list[dict]) -> dict:
    """Per plugin: files decoded / tried, total median ms over the files every plugin of a syntax decoded."""
    out: dict[str, dict] = {}
    for plugin in sorted({r["plugin"] for r in rows}):
        mine = [r for r in rows if r["plugin"] == plugin]
        sizes = {d: distribution_bytes(d) for d in PLUGIN_DISTRIBUTIONS.get(plugin, (plugin,))}
        out[plugin] = {"files_decoded": sum(r["ok"] for r in mine), "files_tried": len(mine),
                       "failed": [r["file"] for r in mine if not r["ok"]],
                       "total_decode_ms": round(sum(r["decode_ms"] for r in mine if r["ok"]), 3),
                       "installed_bytes": {d: s for d, s in sizes.items()},
                       "installed_mb": round(sum(s or 0 for s in sizes.values()) / 1e6, 2)}
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# DICOM decoder plugins: decode time and installed size", "",
             f"- command: `{result.get('command', '')}`",
             f"- machine: {m['cpu']}, {m['cores']} cores, load {m.get('load_average')}; date {m['date']}",
             f"- pydicom {result['pydicom']}; median of {result['reps']} decodes per file and plugin", "",
             "| plugin | files decoded | total ms (files it decoded) | installed MB | failed |",
             "|---|---:|---:|---:|---|"]
    for name, s in result["summary"].items():
        lines.append(f"| {name} | {s['files_decoded']}/{s['files_tried']} | {s['total_decode_ms']:.1f} | "
                     f"{s['installed_mb']:.1f} | {', '.join(s['failed']) or '-'} |")
    lines += ["", "| distribution | installed MB |", "|---|---:|"]
    sizes = {d: b for s in result["summary"].values() for d, b in s["installed_bytes"].items()}
    lines += [f"| {d} | {'not installed' if b is None else f'{b / 1e6:.1f}'} |" for d, b in sorted(sizes.items())]
    lines += ["", "| file | transfer syntax | plugin | ms | max abs diff to first | error |", "|---|---|---|---:|---:|---|"]
    for r in result["rows"]:
        ms = f"{r['decode_ms']:.2f}" if r["decode_ms"] is not None else "-"
        diff = "-" if r["max_abs_diff_to_first"] is None else f"{r['max_abs_diff_to_first']:g}"
        lines.append(f"| {r['file']} | {r['transfer_syntax_name']} | {r['plugin']} | {ms} | {diff} | {r['error'] or ''} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench import options
    from bench.results import command_line

    p = argparse.ArgumentParser(prog="python -m references.serving.dicom_decoders", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5, help="decodes per file and plugin (median reported)")
    options.add_output(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    files = options.result_files(args, kind="dicom_decoders",
                                 command=command_line("python -m references.serving.dicom_decoders", argv), parser=p)
    import pydicom

    # after the import (pydicom sets its logger's level there): a plugin that fails is a row, not a traceback
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    rows = measure(compressed_test_files(), args.reps)
    result = {"title": "dicom_decoders", "pydicom": pydicom.__version__, "reps": args.reps,
              "summary": summarize(rows), "rows": rows}
    paths = files.write(result, markdown)
    print(markdown(result))
    print(f"wrote {paths['json']} and {paths['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
