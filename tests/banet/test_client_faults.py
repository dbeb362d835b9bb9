"""Faults between client and server: the server stops in the middle of a client run."""

from __future__ import annotations

import csv
import threading

import numpy as np
import pytest

from banet import processing

pytestmark = [pytest.mark.needs_triton]


def _images(folder, count: int, rng) -> list:
    folder.mkdir()
    paths = []
    for index in range(count):
        h, w = (int(v) for v in rng.integers(24, 96, size=2))
        path = folder / f"img_{index:02d}.png"
        processing.save_png(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), path)
        paths.append(path)
    return paths


def test_server_restart_mid_run_loses_and_duplicates_nothing(model_repository, tmp_path):
    from banet.client import TritonSegmenter, segment_files
    from banet.server import TritonServer

    from triton_helpers import start_server

    images = _images(tmp_path / "in", 24, np.random.default_rng(0))
    out = tmp_path / "out"
    server = start_server(model_repository)
    ports = dict(grpc_port=server.grpc_port, http_port=server.http_port)
    done = []
    stopped = threading.Event()

    restarted: list[TritonServer] = []
    restarter = threading.Thread(target=lambda: restarted.append(start_server(model_repository, **ports)))

    def on_result(result):
        done.append(result)
        if len(done) == 6 and not stopped.is_set():
            stopped.set()
            server.kill()  # a crash in the middle of the run: in-flight requests are lost server-side
            restarter.start()

    seg = TritonSegmenter(f"127.0.0.1:{ports['grpc_port']}", timeout_s=60, retries=10, backoff_s=0.25, max_backoff_s=2)
    try:
        results = segment_files(seg, images, out, concurrency=2, on_result=on_result)
    finally:
        seg.close()
        server.stop()
        if restarter.is_alive():
            restarter.join()
        for s in restarted:
            s.stop()
    assert stopped.is_set() and restarted, "the server was never restarted during the run"
    assert [r.status for r in results] == ["ok"] * len(images), [(r.image, r.error) for r in results if r.status != "ok"]
    assert max(r.attempts for r in results) > 1  # some requests really met the stopped server
    masks = sorted(p.name for p in (out / "masks").iterdir())
    assert masks == sorted(f"{p.stem}.png" for p in images)  # no loss, no duplicates, no temp files
    assert sorted(p.name for p in (out / "overlays").iterdir()) == masks
    for path in images:
        assert processing.load_image(out / "masks" / f"{path.stem}.png").shape[:2] == processing.load_image(path).shape[:2]


def test_failed_images_are_reported_and_a_rerun_completes_only_them(model_repository, tmp_path):
    from banet.client import TritonSegmenter, append_csv, segment_files
    from banet.server import free_port

    from triton_helpers import start_server

    images = _images(tmp_path / "in", 6, np.random.default_rng(1))
    out = tmp_path / "out"
    grpc, http = free_port(), free_port()
    seg = TritonSegmenter(f"127.0.0.1:{grpc}", timeout_s=30, retries=1, backoff_s=0.1)
    first = segment_files(seg, images, out, concurrency=3)  # nobody listens yet
    append_csv(out / "results.csv", first, "run-1")
    assert [r.status for r in first] == ["error"] * 6
    assert all("UNAVAILABLE" in r.error and r.image in r.error for r in first)
    assert not (out / "masks").exists()  # nothing half-written
    server = start_server(model_repository, grpc_port=grpc, http_port=http)
    try:
        processing.save_png(np.zeros((8, 8), np.uint8), out / "masks" / "img_00.png")
        processing.save_png(np.zeros((8, 8, 3), np.uint8), out / "overlays" / "img_00.png")
        seg.close()
        seg = TritonSegmenter(f"127.0.0.1:{grpc}", timeout_s=30)  # the rerun: a new client, default retries
        second = segment_files(seg, images, out, concurrency=3)
        append_csv(out / "results.csv", second, "run-2")
        forced = segment_files(seg, images[:1], out, concurrency=1, force=True)
    finally:
        seg.close()
        server.stop()
    assert [r.status for r in second] == ["exists"] + ["ok"] * 5, [r.error for r in second]  # skipped, not replaced
    assert forced[0].status == "ok"
    assert processing.load_image(out / "masks" / "img_00.png").shape[:2] == processing.load_image(images[0]).shape[:2]
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["run_started"] for r in rows] == ["run-1"] * 6 + ["run-2"] * 6
    assert [r["status"] for r in rows[6:]] == ["exists"] + ["ok"] * 5


def test_a_half_finished_output_is_completed_without_rewriting_what_exists(segmenter, tmp_path):
    """A run killed after the mask but before the overlay: the rerun writes the overlay only."""
    from banet.client import output_paths, segment_file

    image = tmp_path / "in" / "lesion.png"
    processing.save_png(np.random.default_rng(1).integers(0, 256, size=(40, 52, 3), dtype=np.uint8), image)
    mask_path, overlay_path = output_paths(tmp_path / "out", image)
    processing.save_png(np.full((40, 52), 255, np.uint8), mask_path)  # the earlier run's mask (all foreground)
    before = mask_path.read_bytes()
    result = segment_file(segmenter, image, tmp_path / "out")
    assert result.status == "ok", result
    assert mask_path.read_bytes() == before  # not replaced without --force
    assert overlay_path.is_file()
    segment_file(segmenter, image, tmp_path / "out", force=True)
    assert mask_path.read_bytes() != before  # --force replaces it with the server's (partial) mask
