"""Bounded soak on loopback: concurrent clients, one response per request, masks equal single requests."""

from __future__ import annotations

import json

import pytest

from references.serving.soak import latency_bound_ms

pytestmark = [pytest.mark.needs_triton]


def _check(result: dict) -> None:
    assert result["requests_sent"] > result["clients"]  # the load really ran
    assert result["checks"]["one_response_per_request"], result
    assert result["checks"]["masks_equal_single_request"], result
    assert result["checks"]["no_errors"], result["errors_sample"]
    assert result["rss_mb"]["start"] > 0 and result["rss_mb"]["end"] > 0 and result["rss_mb"]["samples_s_mb"]
    single = result["single_request_ms"]["median"]
    assert single > 0 and result["latency_bound_ms"] == latency_bound_ms(single, result["clients"])
    assert result["checks"]["p99_within_bound"], (
        f"p99 {result['latency_ms']['p99']:.0f} ms under load > bound {result['latency_bound_ms']:.0f} ms "
        f"from the single-request median {single:.1f} ms")


def _data_root():
    """Real images when the datasets are there, synthetic PNGs otherwise: the soak runs either way."""
    import os
    from pathlib import Path

    root = Path(os.environ.get("BANET_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    return root if (root / "isic2017").is_dir() else None


def test_short_soak(triton_server, tmp_path):
    from bench.results import ResultFiles
    from references.serving.soak import markdown, run_soak, soak_images

    result = run_soak(triton_server.grpc_url, soak_images(_data_root(), 6), clients=3, duration_s=20,
                      rss=triton_server.rss_bytes)
    _check(result)
    paths = ResultFiles.dated(tmp_path, "soak", None, command="pytest").write(
        {"model": "tiny", "server": "test", "soak": result}, markdown)
    assert json.loads(paths["json"].read_text())["soak"]["requests_sent"] == result["requests_sent"]
    assert "PASS" in paths["md"].read_text()
    with pytest.raises(FileExistsError):
        ResultFiles(tmp_path, paths["json"].stem)


@pytest.mark.slow
def test_long_soak(triton_server):
    from references.serving.soak import run_soak, soak_images

    result = run_soak(triton_server.grpc_url, soak_images(_data_root(), 12), clients=8, duration_s=600,
                      rss=triton_server.rss_bytes)
    _check(result)
    # no unbounded growth: after the warm-up (the first quarter, where the Python backend stubs and ORT's
    # arenas grow; README's soak: 303 -> 430 MB in 48 s, then 430-463 MB) the RSS stays on its plateau
    samples = result["rss_mb"]["samples_s_mb"]
    warm = [mb for t, mb in samples if t >= 0.25 * samples[-1][0]]
    assert warm and max(warm) <= 1.10 * warm[0] + 20, samples


def test_existing_results_are_refused_before_the_soak_runs(tmp_path, capsys):
    # a soak can run for minutes: an existing result file must stop it up front, not after the load
    from datetime import datetime, timedelta, timezone

    from references.serving.soak import main

    out = tmp_path / "results"
    out.mkdir()
    now = datetime.now(timezone.utc)
    from banet.machine import machine_info
    from bench.results import result_stem

    machine = machine_info()
    for moment in (now, now + timedelta(minutes=1)):  # this minute and the next (the run may cross one)
        stem = result_stem(dict(machine, date=moment.isoformat(timespec="seconds")), "", "soak")
        (out / f"{stem}.json").write_text("{}")
    with pytest.raises(SystemExit) as exc:
        main(["--repository", str(tmp_path / "no_repository_here"), "--out", str(out), "--duration", "1"])
    assert exc.value.code == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert all(p.read_text() == "{}" for p in out.iterdir())


def test_soak_command_serves_an_onnx_and_writes_passing_results(tiny_onnx, tmp_path, capsys):
    """``python -m references.serving.soak --onnx ...``: its own server, a short load, JSON + Markdown that pass."""
    from references.serving.soak import main

    out = tmp_path / "results"
    argv = ["--onnx", str(tiny_onnx), "--clients", "2", "--duration", "3", "--images", "2", "--out", str(out)]
    assert main(argv) == 0
    (json_path,) = out.glob("soak_*.json")
    result = json.loads(json_path.read_text())
    assert result["command"] == "python -m references.serving.soak " + " ".join(argv)
    assert result["machine"]["cores"] >= 1 and len(result["machine"]["load_average"]) == 3
    soak = result["soak"]
    assert soak["clients"] == 2 and soak["requests_sent"] > 2 and all(soak["checks"].values()), soak
    assert soak["requests_sent"] == soak["responses_ok"] == soak["server_responses"]
    md = json_path.with_suffix(".md").read_text()
    assert f"| 2 | {soak['duration_s']} | {soak['requests_sent']} | {soak['responses_ok']} | 0 |" in md
    assert md.count("| PASS |") == len(soak["checks"]) and "wrote" in capsys.readouterr().out


def test_preset_model_is_centred_on_the_soak_images():
    # --preset soaks a random-weight model; centred on the images, about half of each mask is
    # foreground, so "every mask equals its single-request mask" compares real boundaries
    import numpy as np
    import torch

    from banet import processing
    from references.serving.soak import _model, soak_images

    images = soak_images(None, 3)
    net = _model(None, "tiny", images, 64)
    batch = np.stack([processing.preprocess(processing.decode_image(data), 64) for _, data in images])
    with torch.no_grad():
        foreground = (net(torch.from_numpy(batch)) > 0).float().mean().item()
    assert 0.3 < foreground < 0.7
    with pytest.raises(SystemExit, match="unknown --preset 'huge'"):
        _model(None, "huge", images, 64)
