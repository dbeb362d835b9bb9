"""references/serving/serving_latency.py on the tiny model: both paths give the same mask, figures are consistent."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.needs_triton, pytest.mark.needs_data]


def test_measure_compares_the_same_masks_and_splits_the_time(tiny_onnx, data_root):
    from banet import spec
    from references.serving.serving_latency import markdown, measure, pick_images

    images = pick_images(data_root)
    assert set(images) == {"kvasir_1920x1072", "isic_256x192"}
    # measure() raises if a Triton mask differs from the in-process mask of the same image
    result = measure(tiny_onnx, images, reps=2, warmup=1)
    for label, r in result.items():
        assert r["reps"] == 2 and len(r["samples_ms"]["triton_e2e"]) == 2
        for model in (spec.PREPROCESS_MODEL, spec.NETWORK_MODEL, spec.POSTPROCESS_MODEL, spec.ENSEMBLE_MODEL):
            assert r["triton_models"][model]["count"] == 2, (label, model)
        med = r["median_ms"]
        assert 0 < med["inproc_pre"] + med["inproc_net"] + med["inproc_post"] <= med["inproc_total"] * 1.01
        assert 0 < r["triton_pre_post_share"] < 1
    assert result["kvasir_1920x1072"]["size_hw"] == [1072, 1920]
    text = markdown({"command": "pytest", "machine": {"cpu": "cpu", "cores": 2, "date": "today"},
                     "models": {"tiny": result}})
    assert "kvasir_1920x1072" in text and "isic_256x192" in text


def test_pick_images_names_the_missing_folder(tmp_path):
    import numpy as np
    from PIL import Image

    from references.serving.serving_latency import pick_images

    images = tmp_path / "kvasir-seg" / "images"
    images.mkdir(parents=True)
    Image.fromarray(np.zeros((1072, 1920, 3), np.uint8)).save(images / "frame.jpg")
    with pytest.raises(FileNotFoundError, match="isic2017"):
        pick_images(tmp_path)  # a Kvasir-SEG frame but no ISIC test image: named, not an IndexError


def test_command_measures_an_onnx_and_writes_results(tiny_onnx, data_root, tmp_path):
    """``python -m references.serving.serving_latency --onnx ...``: JSON + Markdown with the split for both images."""
    import json

    from references.serving.serving_latency import main

    out = tmp_path / "results"
    assert main(["--data", str(data_root), "--onnx", str(tiny_onnx), "--reps", "1", "--warmup", "0",
                 "--out", str(out)]) == 0
    (json_path,) = out.glob("serving_latency_*.json")
    result = json.loads(json_path.read_text())
    (model,) = result["models"].values()
    assert set(model) == {"kvasir_1920x1072", "isic_256x192"}
    for r in model.values():
        assert r["reps"] == 1 and 0 < r["triton_pre_post_share"] < 1
        assert r["median_ms"]["triton_e2e"] > 0 and r["median_ms"]["inproc_total"] > 0
    md = json_path.with_suffix(".md").read_text()
    assert "kvasir_1920x1072" in md and "isic_256x192" in md and result["command"] in md
    assert result["machine"]["load_average"] is not None
