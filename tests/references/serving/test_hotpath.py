"""references/serving/hotpath.py: its candidates compute the right masks, rounds pair within a round, and its
report says what it measured (timings are not tested)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image


def _jpeg(h: int, w: int) -> bytes:
    rng = np.random.default_rng(h)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def test_steps_report_and_verdicts():
    from references.serving.hotpath import STEPS, markdown, measure_steps, verdicts

    sets = {"kvasir test split": [_jpeg(300, 400), _jpeg(200, 210)], "1920x1072": [_jpeg(1072, 1920)]}
    steps = measure_steps(sets, 64, reps=1)
    for label, per in steps["sets"].items():
        assert "today" in per and any(name.startswith("hotpath") for name in per)
        for r in per.values():
            assert set(r["ms_median"]) == set(STEPS) and all(v > 0 for v in r["ms_median"].values())
        assert per["today"]["speedup_vs_today"]["median"] == pytest.approx(1.0)
    result = {"command": "pytest", "machine": {"cpu": "cpu", "cores": 2, "date": "today"}, "size": 64, "reps": 1,
              "steps": steps, "triton": {"skipped": "not in this test"}, "parity": None}
    result["verdicts"] = verdicts(result)
    text = markdown(result)
    assert "| 1920x1072 (1) | today |" in text and "Not run: not in this test" in text
    assert any("goal 4x" in v for v in result["verdicts"])


def test_pass_through_network_serves_the_constant_map(tmp_path):
    pytest.importorskip("onnxruntime")
    from banet import processing, spec
    from references.serving.hotpath import constant_logits, constant_onnx
    from export.onnxruntime import ort_runner
    from export.serving_graph import add_uint8_io

    served = add_uint8_io(constant_onnx(tmp_path / "c.onnx", 64), tmp_path / "s.onnx")
    out = ort_runner(served, io="uint8")(np.zeros((2, 64, 64, 3), np.uint8))
    assert out.shape == (2, 1, 64, 64) and out.dtype == np.float16
    want = processing.sigmoid(constant_logits(64)).astype(np.float16)
    assert np.allclose(out[1].astype(np.float32), want.astype(np.float32), atol=1e-3)  # ORT vs numpy sigmoid: 1 ulp
    mask = processing.mask_from_probability(out[0], (120, 90))
    assert 0 < processing.mask_area(mask) < mask.size  # a blob with a contour
    assert spec.SERVING_OUTPUT.name == "probability"


def _disc_mask(size: int, shape: tuple[int, int]) -> np.ndarray:
    """Independent reference: the constant network's disc (logit > 0 where the radius < 0.3 S in the S x S map,
    centre (0.45 S, 0.55 S)) sampled at the centres of an ``(H, W)`` image's pixels."""
    h, w = shape
    yy = (np.arange(h) + 0.5) * size / h - 0.5
    xx = (np.arange(w) + 0.5) * size / w - 0.5
    radius = np.hypot(yy[:, None] - 0.45 * size, xx[None, :] - 0.55 * size)
    return radius < 0.3 * size


def test_every_candidate_route_gives_the_constant_networks_mask_at_the_original_size():
    """Not today's route against itself: each route's decode and mask against numpy references."""
    from banet import processing
    from banet.metrics import jaccard
    from references.serving.hotpath import candidates

    data = _jpeg(300, 400)
    full = processing.decode_image(data)
    want = _disc_mask(64, full.shape[:2])
    for name, (decode, pre, post) in candidates(64).items():
        state = pre(decode(data))
        mask = post(state) > 0
        assert mask.shape == full.shape[:2], name
        assert jaccard(mask, want) > 0.98, (name, jaccard(mask, want))
        resized = state[0]
        assert resized.shape[-2:] == (64, 64) or resized.shape[:2] == (64, 64), name


def test_same_round_ratios_never_pair_rows_of_different_rounds():
    from references.serving.hotpath import paired_ratios

    today = [{"throughput": 10.0}, {"skipped": "perf_analyzer timed out"}, {"throughput": 40.0}]
    hotpath = [{"throughput": 20.0}, {"throughput": 30.0}, {"throughput": 80.0}]
    # round 2 of today was skipped: its hot path row is dropped with it, rounds 1 and 3 pair with themselves
    assert paired_ratios(hotpath, today) == [2.0, 2.0]
    with pytest.raises(ValueError, match="rounds"):
        paired_ratios(hotpath, today[:2])


def test_hop_costs_split_a_request_by_step_and_the_goals_say_met_or_missed():
    from references.serving.hotpath import hop_costs, markdown, serving_verdicts

    def row(requests, success, queue, infer, inferences=None, executions=None):
        inferences = requests if inferences is None else inferences
        return {"inferences": inferences, "executions": executions or requests, "requests": requests,
                "success_ns": success, "queue_ns": queue, "compute_input_ns": 0, "compute_infer_ns": infer,
                "compute_output_ns": 0, "busy_ns": infer}

    before = {"banet": row(0, 0, 0, 0), "banet_preprocess": row(0, 0, 0, 0)}
    after = {"banet": row(10, 100e6, 0, 0), "banet_preprocess": row(10, 60e6, 20e6, 40e6, inferences=20, executions=10)}
    hops = hop_costs(before, after, client_ms=12.0)
    pre = hops["steps"]["banet_preprocess"]
    assert (pre["queue_ms"], pre["compute_infer_ms"], pre["busy_per_image_ms"], pre["mean_batch"]) == (2.0, 4.0, 2.0, 2.0)
    assert (hops["ensemble_ms"], hops["ensemble_overhead_ms"], hops["grpc_client_ms"]) == (10.0, 4.0, 2.0)
    steps = {"sets": {"kvasir test split": {"hotpath simplejpeg 3x": {"images_per_s_per_core": {"median": 100.0}}}}}
    triton = {"concurrency": 2, "rows": {"today": [{"throughput": 50.0, "hops": hops, "mean_ms": 12.0, "p50_ms": 11.0}],
                                        "compact": [{"throughput": 90.0, "hops": hops, "mean_ms": 12.0, "p50_ms": 11.0}]},
              "throughput": {"today": {"min": 50.0, "median": 50.0, "max": 50.0},
                             "compact": {"min": 90.0, "median": 90.0, "max": 90.0}},
              "speedup": {"compact": {"min": 1.8, "median": 1.8, "max": 1.8}},
              "response": {"shape": [1080, 1920], "compact_bytes": 1200, "today_bytes": 4_150_000, "share": 1200 / 4_150_000,
                           "masks_equal": True, "foreground": 0.1}}
    result = {"machine": {"cores": 2}, "steps": steps, "triton": triton}
    said = serving_verdicts(result)
    assert said[0].endswith("MISSED by 1.33x (45% of the ceiling)"), said  # 0.6 x 200 = 120 > 90
    assert "0.029 %" in said[1] and said[1].endswith("MET")
    triton["throughput"]["compact"]["median"] = 130.0
    assert serving_verdicts(result)[0].endswith("MET")
