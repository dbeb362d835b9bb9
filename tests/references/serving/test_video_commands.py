"""The live-video reference commands: the Kvasir clip maker, the decoder comparison, live_video's helpers.

(live_video's stream itself is banet.video.stream_video, tested against the real server in tests/banet/test_video.py.)
"""

from __future__ import annotations

import json
import os

import pytest

pytestmark = [pytest.mark.needs_video]  # PyAV: a skip here, a failure under CI (tests/conftest.py)


@pytest.mark.needs_data
def test_kvasir_clip_writes_once_and_refuses_to_overwrite(data_root, tmp_path, capsys):
    from banet.video import VideoReader
    from references.serving.kvasir_clip import main

    out = tmp_path / "clip.mp4"
    argv = [str(out), "--data", str(data_root), "--size", "96x64", "--fps", "10", "--seconds", "1", "--hold", "3"]
    assert main(argv) == 0
    with VideoReader(out) as video:
        assert (video.width, video.height, video.fps, video.frame_count) == (96, 64, 10.0, 10)
        assert len(list(video)) == 10
    before = out.read_bytes()
    assert main(argv) == 2
    assert "clip.mp4 exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == before
    with pytest.raises(SystemExit):
        main([str(tmp_path / "x.mp4"), "--data", str(data_root), "--size", "96by64"])


@pytest.mark.needs_data
def test_video_decoders_writes_sizes_and_decode_rates(data_root, tmp_path):
    from references.serving.video_decoders import main

    assert main(["--data", str(data_root), "--seconds", "0.4", "--rounds", "1", "--out", str(tmp_path)]) == 0
    (result_file,) = tmp_path.glob("video_decoders_*.json")
    result = json.loads(result_file.read_text())
    pyav = result["libraries"]["pyav"]
    assert pyav["bytes"] > 10_000_000 and pyav["h264"] is True  # FFmpeg's libraries are in the wheel
    for clip in ("720p", "1080p"):
        assert result["frames"][clip]["pyav"] == 10 and result["fps"][clip]["pyav"][0] > 0
        assert result["cpu_ms_per_frame"][clip]["pyav 1 thread"][0] > 0
    opencv = result["libraries"]["opencv"]
    assert opencv.get("skipped") or result["frames"]["720p"]["opencv"] == 10
    assert "PyAV vs OpenCV" in result_file.with_suffix(".md").read_text()


def test_live_video_reads_server_cpu_and_per_step_times():
    from references.serving.live_video import per_request_ms, session_cpu_s

    spent = session_cpu_s(os.getsid(0))  # this test's own session: pytest has used CPU
    assert spent > 0
    sum(i * i for i in range(300_000))
    assert session_cpu_s(os.getsid(0)) >= spent
    before = {"banet": {"count": 2, "queue": 0, "compute_input": 0, "compute_infer": 4_000_000, "compute_output": 0}}
    after = {"banet": {"count": 6, "queue": 8_000_000, "compute_input": 0, "compute_infer": 24_000_000,
                       "compute_output": 400_000},
             "idle": {"count": 0, "queue": 0, "compute_input": 0, "compute_infer": 0, "compute_output": 0}}
    assert per_request_ms(before, after) == {"banet": {"requests": 4, "queue": 2.0, "compute_input": 0.0,
                                                       "compute_infer": 5.0, "compute_output": 0.1}}
