"""Checkpoints rebuild their model; bad files give CheckpointError, nothing is overwritten."""

from __future__ import annotations

import hashlib
import pickle

import pytest
import torch

from banet.checkpoint import (
    FORMAT,
    CheckpointError,
    file_sha256,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from banet.model import ARCHITECTURES, PRESETS, build, build_model

TINY = PRESETS["tiny"]


@pytest.fixture()
def trained_like_model():
    """A tiny model whose BatchNorm statistics are not the defaults (as after training)."""
    torch.manual_seed(3)
    model = build_model(TINY.with_ablation("no_ia")).train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 3, 64, 64))
    return model.eval()


def test_round_trip_rebuilds_identical_model(tmp_path, trained_like_model):
    path = save_checkpoint(tmp_path / "sub" / "m.pt", trained_like_model, epoch=7, history=[0.5, 0.25])
    rebuilt, payload = model_from_checkpoint(path)
    assert not rebuilt.training
    assert rebuilt.config == trained_like_model.config
    assert payload["format"] == FORMAT and payload["epoch"] == 7 and payload["history"] == [0.5, 0.25]
    for key, value in trained_like_model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    x = torch.randn(2, 3, 63, 97)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), trained_like_model(x))


def test_fixture_checkpoint_rebuilds_with_nontrivial_masks(tiny_checkpoint):
    model, payload = model_from_checkpoint(tiny_checkpoint)
    assert payload["model_config"] == TINY.to_dict()
    with torch.no_grad():
        fg = (model(torch.randn(2, 3, 64, 64)) > 0).float().mean().item()
    assert 0.05 < fg < 0.95


def test_refuses_to_overwrite_unless_asked(tmp_path, trained_like_model):
    path = save_checkpoint(tmp_path / "m.pt", trained_like_model)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="m.pt exists"):
        save_checkpoint(path, build_model(TINY))
    assert path.read_bytes() == before
    save_checkpoint(path, build_model(TINY), overwrite=True)
    assert path.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind


def test_extra_entries_cannot_replace_the_checkpoint_entries(tmp_path):
    with pytest.raises(ValueError, match=r"may not be named \['state_dict'\]"):
        save_checkpoint(tmp_path / "x.pt", build_model(TINY), state_dict={})
    assert not (tmp_path / "x.pt").exists()


def test_only_banet_models_are_saved(tmp_path):
    with pytest.raises(TypeError, match="expected a network of banet.model.ARCHITECTURES, got Linear"):
        save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(2, 2))


def test_truncated_file_is_a_checkpoint_error(tmp_path, trained_like_model):
    path = save_checkpoint(tmp_path / "m.pt", trained_like_model)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pt is not a readable checkpoint"):
        load_checkpoint(cut)


class _Payload:
    def __reduce__(self):  # what a malicious pickle does: call something on load
        return (print, ("executed",))


@pytest.mark.parametrize("content", [
    pickle.dumps(_Payload(), protocol=2),
    pickle.dumps({"format": FORMAT, "x": _Payload()}, protocol=2),
    b"\x00\x01 random bytes \xff" * 10,
    b"",
], ids=["code-pickle", "dict-with-code", "random-bytes", "empty"])
def test_random_pickles_and_bytes_are_checkpoint_errors(tmp_path, capsys, content):
    path = tmp_path / "evil.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="evil.pt is not a readable checkpoint"):
        load_checkpoint(path)
    assert "executed" not in capsys.readouterr().out


def test_other_torch_files_are_not_checkpoints(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="plain.pt is not a BA-Net checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found: .*missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_weights_that_do_not_fit_the_config(tmp_path, trained_like_model):
    path = save_checkpoint(tmp_path / "m.pt", trained_like_model)
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["stage_channels"] = 16
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt: weights do not match the stored model config"):
        model_from_checkpoint(tmp_path / "bad.pt")
    payload["model_config"] = {"backbone": "resnet152"}
    torch.save(payload, tmp_path / "bad2.pt")
    with pytest.raises(CheckpointError, match="bad2.pt.*resnet152"):
        model_from_checkpoint(tmp_path / "bad2.pt")


def test_file_sha256(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"banet" * 1000)
    assert file_sha256(path) == hashlib.sha256(b"banet" * 1000).hexdigest()


def test_checkpoint_from_before_the_gate_fix_is_refused_not_loaded(tmp_path, trained_like_model):
    # format 1 was written before the IA/CFF gates moved before the ReLU: its parameter names and
    # shapes match today's model exactly, so only the format tells the two functions apart
    path = save_checkpoint(tmp_path / "m.pt", trained_like_model)
    payload = torch.load(path, weights_only=True)
    payload["format"] = "banet-checkpoint/1"
    torch.save(payload, tmp_path / "old.pt")
    for load in (load_checkpoint, model_from_checkpoint):
        with pytest.raises(CheckpointError, match=r"old.pt has the retired format 'banet-checkpoint/1'.*retrain"):
            load(tmp_path / "old.pt")
    assert FORMAT == "banet-checkpoint/3"


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_round_trips_with_its_name(tmp_path, arch):
    torch.manual_seed(0)
    model = build(arch, "tiny").train()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))  # BatchNorm statistics that are not the defaults
    model.eval()
    path = save_checkpoint(tmp_path / f"{arch}.pt", model)
    payload = torch.load(path, weights_only=True)
    assert payload["arch"] == arch and payload["format"] == FORMAT
    again, loaded = model_from_checkpoint(path)
    assert type(again) is type(model) and again.config == model.config and loaded["arch"] == arch
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_format_2_checkpoints_are_banet_and_still_load(tmp_path, trained_like_model):
    # format 2 was written before the comparison networks: no 'arch' entry, always a BA-Net
    path = save_checkpoint(tmp_path / "m.pt", trained_like_model)
    payload = torch.load(path, weights_only=True)
    payload["format"] = "banet-checkpoint/2"
    del payload["arch"]
    torch.save(payload, tmp_path / "v2.pt")
    assert load_checkpoint(tmp_path / "v2.pt")["arch"] == "banet"
    model, _ = model_from_checkpoint(tmp_path / "v2.pt")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), trained_like_model(x))


def test_unknown_architecture_and_newer_format_are_refused_clearly(tmp_path, trained_like_model):
    path = save_checkpoint(tmp_path / "m.pt", trained_like_model)
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "arch": "segformer"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other.pt holds a 'segformer' network, which this version does not know"):
        model_from_checkpoint(tmp_path / "other.pt")
    torch.save({**payload, "format": "banet-checkpoint/9"}, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match=r"newer.pt has the format 'banet-checkpoint/9'.*newer banet"):
        load_checkpoint(tmp_path / "newer.pt")
    no_arch = dict(payload)
    del no_arch["arch"]
    torch.save(no_arch, tmp_path / "no_arch.pt")
    with pytest.raises(CheckpointError, match="no architecture name"):
        load_checkpoint(tmp_path / "no_arch.pt")
