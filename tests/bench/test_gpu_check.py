"""bench.gpu_check: the data copy, the epoch plan, and the whole check in its CPU mode (--tiny)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from banet.data.synthetic import SynthConfig, write_dataset
from bench.gpu_check import main, plan_epochs, prepare_data


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_check")
    src = write_dataset(root / "src", SynthConfig(count=12, size=64, seed=0))
    wide = Image.open(next((src / "images").iterdir())).resize((96, 48))  # one non-square image
    name = next((src / "images").iterdir()).stem
    wide.save(src / "images" / f"{name}.png")
    Image.open(src / "masks" / f"{name}.png").resize((96, 48), Image.NEAREST).save(src / "masks" / f"{name}.png")
    info = prepare_data(src, root / "copy", size=40)
    return src, root / "copy", info, name


def test_prepare_data_keeps_pairs_splits_and_aspect(copy):
    src, out, info, wide = copy
    assert info["pairs"] == 12 and (out / "splits.csv").read_text() == (src / "splits.csv").read_text()
    sizes = {p.stem: Image.open(p).size for p in (out / "images").iterdir()}
    assert len(sizes) == 12 and sizes[wide] == (80, 40) and all(min(s) == 40 for s in sizes.values())
    mask = np.asarray(Image.open(out / "masks" / f"{wide}.png"))
    assert mask.shape == (40, 80) and set(np.unique(mask)) <= {0, 255} and mask.any()
    with pytest.raises(FileExistsError, match="--force"):
        prepare_data(src, out, size=40)


def test_epoch_plan_cuts_the_recipe_to_the_time_budget():
    rows = [{"mode": "eager", "batch_size": 8, "images_per_s": 400.0, "warmup_s": 5.0},
            {"mode": "compile", "batch_size": 8, "images_per_s": 800.0, "warmup_s": 60.0},
            {"mode": "compile", "batch_size": 64, "skipped": "failed"}]
    epochs, mode, why = plan_epochs(rows, minutes=10, train_images=800, batch_size=8, recipe_epochs=150)
    assert (epochs, mode) == (150, "compile") and "150 epochs fit" in why  # 1 s per epoch
    epochs, mode, _ = plan_epochs(rows[:1], minutes=10, train_images=800, batch_size=8, recipe_epochs=150)
    assert (epochs, mode) == (150, "eager")  # 2 s per epoch: 267 would fit, the recipe asks for 150
    epochs, _, why = plan_epochs(rows[:1], minutes=2, train_images=800, batch_size=8, recipe_epochs=150)
    assert epochs == int((0.9 * 120 - 5.0) / 2.0) and "cut from 150" in why
    assert plan_epochs([], minutes=10, train_images=800, batch_size=8, recipe_epochs=150)[0] == 150


def test_tiny_mode_runs_every_step_and_writes_the_results(copy, tmp_path, capsys):
    _, data, _, _ = copy
    out = tmp_path / "out"
    args = ["run", "--data", str(data), "--out", str(out), "--tiny", "--work", str(tmp_path / "run"), "--tag", "t"]
    assert main(args) == 0
    result = json.loads((out / "t.json").read_text())
    assert result["tiny"] and result["machine"]["cpu"] and "gpu" in result["machine"]
    eager, compiled = result["throughput"]
    assert eager["mode"] == "eager" and eager["images_per_s"] > 0
    assert "CUDA only" in compiled["skipped"]
    train = result["train"]
    assert train["epochs"] == 1 and 0.0 <= train["test_JA"] <= 1.0 and train["config"]["recipe"] == "official"
    assert train["config"]["dice_weight"] == 1.0 and train["config"]["augment"] == "official"
    rows = {(r["backend"], r["batch_size"]): r for r in result["bench"]}
    assert rows[("torch-fp32@cpu", 1)]["p50_ms"] > 0 and rows[("torch-fp32-cl@cpu", 2)]["p50_ms"] > 0
    assert "no CUDA device" in rows[("torch-fp16-cl-cudagraph@cuda", 1)]["skipped"]
    assert not result["goals"]["training_images_per_s"]["met"]
    md = (out / "t.md").read_text()
    assert "tiny (CPU smoke, not a measurement)" in md and "| torch-fp32@cpu | 1 |" in md
    assert main(args) == 2 and "--force" in capsys.readouterr().err  # never replaced silently
    assert main(["run", "--data", str(data), "--out", str(out), "--tag", "u"]) == 2  # the full check needs CUDA
    assert "no CUDA device" in capsys.readouterr().err
