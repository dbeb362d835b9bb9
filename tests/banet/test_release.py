"""banet-release: a training checkpoint without its training state, with a model card and scores."""

from __future__ import annotations

import json

import pytest
import torch

from banet.checkpoint import load_checkpoint, model_from_checkpoint
from banet.cli.release import main as release_main
from banet.data.synthetic import SynthConfig, write_dataset
from banet.train import fit, resolve_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    data = write_dataset(root / "data", SynthConfig(count=16, size=72, seed=2))
    fit(resolve_config(str(data), str(root / "run"), preset="tiny", size=64, batch_size=4, epochs=1, max_steps=2,
                       workers=1, amp="none"))
    return root, data


def test_release_keeps_the_model_drops_training_state_and_writes_a_card(trained, tmp_path, capsys):
    root, data = trained
    source = root / "run" / "best.pt"
    argv = [str(source), "--data", str(data), "--out", str(tmp_path / "models"), "--name", "tiny"]
    assert release_main(argv) == 0
    slim = tmp_path / "models" / "tiny.pt"
    payload = load_checkpoint(slim)
    assert not {"optimizer", "scheduler", "scaler", "generator_states"} & set(payload)
    assert payload["train_config"] == load_checkpoint(source)["train_config"] and payload["history"]
    assert slim.stat().st_size < source.stat().st_size / 2  # Adam's two moments per weight are gone
    a, _ = model_from_checkpoint(source)
    b, _ = model_from_checkpoint(slim)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(a(x), b(x))
    scores = json.loads((tmp_path / "models" / "tiny.json").read_text())["scores"]["test"]
    assert payload["release_scores"]["test"] == scores and 0.0 <= scores["paper_256"]["JA"] <= 1.0
    card = (tmp_path / "models" / "tiny.md").read_text()
    assert "256x256" in card and "original size" in card and "sha256" in card and "banet-release" in card
    assert "of 1 epochs run" in card  # the run's end is read from last.pt beside best.pt
    assert "chosen" not in card and "chosen" not in json.loads((tmp_path / "models" / "tiny.json").read_text())
    assert release_main(argv) == 2 and "exists" in capsys.readouterr().err  # never replaced silently
    why = "the best of seeds 0-2 by validation JA"
    assert release_main([*argv, "--force", "--chosen", why]) == 0
    assert f"- chosen: {why}" in (tmp_path / "models" / "tiny.md").read_text()
    assert json.loads((tmp_path / "models" / "tiny.json").read_text())["chosen"] == why
    assert release_main([str(tmp_path / "missing.pt"), *argv[1:], "--force"]) == 2
    assert "not found" in capsys.readouterr().err
