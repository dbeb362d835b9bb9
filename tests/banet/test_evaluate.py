"""banet-eval: scores at the original size, baselines, JSON/report output, masks and overlays."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from banet import processing
from banet.checkpoint import save_checkpoint
from banet.cli.evaluate import main as eval_main
from banet.data.pairs import find_pairs
from banet.data.synthetic import SynthConfig, write_dataset
from banet.evaluate import BASELINES, baseline_mask, evaluate, write_report
from banet.metrics import METRIC_NAMES, PAPER_SCORE_SIZE
from banet.model import PRESETS, build_model


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    # 72 px images, while the checkpoints below say they were trained at 48: masks must be resized back
    return write_dataset(tmp_path_factory.mktemp("synth") / "data", SynthConfig(count=10, size=72, seed=4))


@pytest.fixture(scope="module")
def all_foreground_checkpoint(tmp_path_factory):
    """A tiny model whose head says 'foreground' everywhere: its scores follow from the masks alone."""
    torch.manual_seed(0)
    model = build_model(PRESETS["tiny"]).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(20.0)
    path = tmp_path_factory.mktemp("ckpt") / "fg.pt"
    save_checkpoint(path, model, train_config={"size": 48})
    return path


def test_scores_match_a_hand_computation(synth, all_foreground_checkpoint):
    result = evaluate(all_foreground_checkpoint, synth, "val", baselines=BASELINES)
    masks = [processing.load_mask(p.mask) for p in find_pairs(synth, "val")]
    fg = [m.mean() for m in masks]
    mean = result["model"]["mean"]
    # predicting everything: JA = |G| / |image|, DI = 2|G| / (|G| + |image|), SE = 1, SP = 0
    assert mean["JA"] == pytest.approx(np.mean(fg))
    assert mean["DI"] == pytest.approx(np.mean([2 * f / (f + 1) for f in fg]))
    assert (mean["SE"], mean["SP"]) == (1.0, 0.0)
    assert result["model"]["aggregate"]["JA"] == pytest.approx(sum(m.sum() for m in masks) / sum(m.size for m in masks))
    assert result["size"] == 48 and result["model"]["images"] == len(masks) == 2
    background = result["baselines"]["all_background"]["mean"]
    assert (background["JA"], background["SE"], background["SP"]) == (0.0, 0.0, 1.0)
    blob = result["baselines"]["centred_blob"]["mean"]
    assert 0.0 < blob["JA"] < 1.0
    # scored as the paper does: the mask resized to 256x256 (nearest neighbour), all-foreground prediction
    paper = [processing.resize_mask(m, PAPER_SCORE_SIZE).mean() for m in masks]
    assert result["model_paper"]["mean"]["JA"] == pytest.approx(np.mean(paper))
    assert result["paper_score_size"] == PAPER_SCORE_SIZE == 256
    assert [r["JA_paper"] for r in result["per_image"]] == pytest.approx(paper)


def test_paper_scoring_equals_original_scoring_for_256_px_images(tiny_checkpoint, tmp_path):
    data = write_dataset(tmp_path / "data256", SynthConfig(count=10, size=PAPER_SCORE_SIZE, seed=5))
    result = evaluate(tiny_checkpoint, data, "val")
    assert result["model_paper"] == result["model"]
    assert 0.0 < result["model"]["mean"]["JA"] < 1.0  # a non-trivial prediction, so the equality means something


def test_baseline_masks():
    blob = baseline_mask("centred_blob", (300, 500))
    assert blob.dtype == np.uint8 and blob.shape == (300, 500)
    assert (blob > 0).mean() == pytest.approx(0.25, abs=0.01)
    assert blob[150, 250] == 255 and blob[0, 0] == 0
    assert not baseline_mask("all_background", (4, 6)).any()
    with pytest.raises(ValueError, match="baseline"):
        baseline_mask("circle", (4, 4))


def test_cli_json_masks_overlays_and_refusal(synth, tiny_checkpoint, tmp_path, capsys):
    out_json, out_dir = tmp_path / "val.json", tmp_path / "pred"
    args = [str(tiny_checkpoint), "--data", str(synth), "--split", "val", "--json", str(out_json),
            "--out-dir", str(out_dir), "--save-masks", "--save-overlays", "--baselines"]
    assert eval_main(args) == 0
    table = capsys.readouterr().out
    assert "model (mean)" in table and "baseline: centred_blob" in table
    result = json.loads(out_json.read_text())
    assert set(result["model"]["mean"]) == set(METRIC_NAMES)
    assert all(0.0 <= v <= 1.0 for v in result["model"]["mean"].values())
    assert [r["name"] for r in result["per_image"]] == [p.name for p in find_pairs(synth, "val")]
    assert result["model"]["mean"]["JA"] == pytest.approx(np.mean([r["JA"] for r in result["per_image"]]))
    for pair in find_pairs(synth, "val"):
        mask = np.asarray(Image.open(out_dir / "val" / "masks" / f"{pair.name}.png"))
        overlay = np.asarray(Image.open(out_dir / "val" / "overlays" / f"{pair.name}.png"))
        assert mask.shape == (72, 72) and set(np.unique(mask).tolist()) <= {0, 255}
        assert overlay.shape == (72, 72, 3)
    assert eval_main(args) == 2  # existing files are not replaced ...
    assert "--force" in capsys.readouterr().err
    assert eval_main(args + ["--force"]) == 0  # ... unless asked


def test_report_has_command_machine_and_refuses_overwrite(synth, all_foreground_checkpoint, tmp_path):
    result = evaluate(all_foreground_checkpoint, synth, "test", baselines=BASELINES)
    json_path, md_path = write_report([result], tmp_path / "r", command=["banet-eval", "x"])
    doc = json.loads(json_path.read_text())
    assert doc["command"] == "banet-eval x" and doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"]
    assert doc["evaluations"][0]["model"]["mean"]["JA"] == result["model"]["mean"]["JA"]
    text = md_path.read_text()
    assert "banet-eval x" in text and "all_background" in text and f"{result['model']['mean']['JA']:.4f}" in text
    with pytest.raises(FileExistsError):
        write_report([result], tmp_path / "r")


def test_existing_report_is_refused_before_any_output(synth, tiny_checkpoint, tmp_path, capsys):
    # the --report check used to come last: the evaluation ran, --json was written, then exit 2
    (tmp_path / "r.md").write_text("an earlier report\n")
    out_json = tmp_path / "val.json"
    args = [str(tiny_checkpoint), "--data", str(synth), "--split", "val", "--json", str(out_json),
            "--report", str(tmp_path / "r")]
    assert eval_main(args) == 2
    err = capsys.readouterr().err
    assert "r.md" in err and "--force" in err
    assert not out_json.exists()
    assert (tmp_path / "r.md").read_text() == "an earlier report\n"


def test_bad_inputs_are_named(synth, tiny_checkpoint, tmp_path, capsys):
    assert eval_main([str(tmp_path / "missing.pt"), "--data", str(synth)]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert eval_main([str(tiny_checkpoint), "--data", str(synth), "--split", "nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert eval_main([str(tiny_checkpoint), "--data", str(synth), "--threshold", "1.5"]) == 2
    assert "threshold" in capsys.readouterr().err


@pytest.mark.needs_data
def test_real_kvasir_images_scored_at_their_original_size(data_root, tiny_checkpoint, tmp_path):
    root = data_root / "kvasir-seg"
    names = [p.name for p in find_pairs(root, "test")[:3]]
    split_file = tmp_path / "three.csv"
    with open(split_file, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "split"])
        w.writerows([(f"{n}.jpg", "some") for n in names])
    result = evaluate(tiny_checkpoint, root, "some", split_file=split_file, baselines=("all_background",))
    assert [r["name"] for r in result["per_image"]] == names
    for r, name in zip(result["per_image"], names):
        width, height = Image.open(root / "images" / f"{name}.jpg").size
        assert (r["height"], r["width"]) == (height, width)
    assert result["model"]["images"] == 3


def test_broken_image_is_named_or_skipped(synth, all_foreground_checkpoint, tmp_path):
    import shutil

    from banet.data.pairs import DatasetError

    data = tmp_path / "data"
    shutil.copytree(synth, data)
    victim = find_pairs(data, "val")[0]
    victim.image.write_bytes(victim.image.read_bytes()[:100])  # truncated PNG
    with pytest.raises(DatasetError, match=rf"{victim.image.name}.*--skip-broken"):
        evaluate(all_foreground_checkpoint, data, "val")
    result = evaluate(all_foreground_checkpoint, data, "val", skip_broken=True)
    assert result["model"]["images"] == 1 and victim.name not in [r["name"] for r in result["per_image"]]
