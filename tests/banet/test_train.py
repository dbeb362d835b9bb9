"""banet-train: run folder, refusal to overwrite, resume, recipes, DDP on the CPU (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from banet.checkpoint import load_checkpoint, model_from_checkpoint
from banet.cli.train import main as train_main
from banet.data.synthetic import SynthConfig, write_dataset
from banet.train import RECIPES, TrainError, build_scheduler, fit, resolve_config

SIZE = 64


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("synth") / "data", SynthConfig(count=16, size=80, seed=0))


def _config(data, out, **kw):
    values = dict(preset="tiny", size=SIZE, batch_size=4, epochs=1, val_batch_size=8, workers=1, seed=0)
    values.update(kw)
    return resolve_config(str(data), str(out), **values)


def test_fit_writes_a_complete_run_folder(synth, tmp_path):
    out = tmp_path / "run"
    result = fit(_config(synth, out, max_steps=2))
    for name in ("train_config.json", "last.pt", "best.pt", "history.json", "curves.png"):
        assert (out / name).is_file(), name
    stored = json.loads((out / "train_config.json").read_text())
    assert stored["preset"] == "tiny" and stored["optimizer"] == "adam" and stored["model_config"]["width"] == 16
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 1 and state["step"] == 2
    assert {"optimizer", "scheduler", "scaler", "history", "train_config", "best_ja"} <= set(state)
    assert state["train_config"]["size"] == SIZE
    val = result["history"][0]["val"]
    assert val["images"] == 3 and 0.0 <= val["mean"]["JA"] <= 1.0
    model, _ = model_from_checkpoint(out / "best.pt")  # rebuilds from the checkpoint alone
    assert model(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 1, SIZE, SIZE)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_existing_run_is_never_overwritten_silently(synth, tmp_path, capsys):
    out = tmp_path / "run"
    fit(_config(synth, out, max_steps=1))
    before = (out / "last.pt").read_bytes()
    with pytest.raises(TrainError, match="already holds a run.*--force"):
        fit(_config(synth, out, max_steps=1))
    args = ["--data", str(synth), "--out", str(out), "--preset", "tiny", "--size", str(SIZE), "--epochs", "1",
            "--max-steps", "1", "--batch-size", "4"]
    assert train_main(args) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "last.pt").read_bytes() == before
    other = tmp_path / "other"
    fit(_config(synth, other, max_steps=1))
    with pytest.raises(TrainError, match="already holds a run"):  # resuming into another run's folder
        fit(_config(synth, out, max_steps=2), resume=other / "last.pt")
    assert train_main(args + ["--force", "--seed", "5"]) == 0
    assert (out / "last.pt").read_bytes() != before


def _run_args(data, out) -> list[str]:
    # 10 training images, batch 2: 5 steps per epoch; poly decay over all 10 steps; 32 px keeps it cheap
    return ["--data", str(data), "--out", str(out), "--preset", "tiny", "--size", "32", "--batch-size", "2",
            "--val-batch-size", "8", "--epochs", "2", "--schedule", "poly", "--lr", "1e-3", "--workers", "1",
            "--seed", "0", "--amp", "none", "--device", "cpu"]  # one precision (the probe may choose either), CPU on GPU hosts too


_KILLED_AFTER_STEP = """
import os, signal, sys, types
import banet.train
from banet.cli.train import main

kill_after, build, done = int(sys.argv[1]), banet.train.build_optimizer, []

def step_then_maybe_die(self, *args, **kwargs):
    result = type(self).step(self, *args, **kwargs)
    done.append(1)
    if len(done) == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)
    return result

def build_optimizer(config, params):  # the real optimizer, whose process SIGKILLs itself after step N
    optimizer = build(config, params)
    optimizer.step = types.MethodType(step_then_maybe_die, optimizer)  # bound: the LR scheduler wraps it
    return optimizer

banet.train.build_optimizer = build_optimizer
sys.exit(main(sys.argv[2:]))
"""
"""``python -c _KILLED_AFTER_STEP N <banet-train args>``: banet-train, SIGKILLed by itself right after its
N-th optimizer step (deterministic, where polling its progress bar depended on timing)."""


def test_sigkilled_mid_epoch_then_resumed_is_bit_identical(synth, tmp_path):
    """banet-train in its own process, SIGKILLed in the middle of epoch 2 (by itself, right after its
    7th optimizer step, i.e. step 2 of 5 of epoch 2: no polling of the progress bar), resumed from
    last.pt: weights, optimizer and scheduler end bit-identical to an uninterrupted run."""
    import signal

    straight = tmp_path / "straight"
    assert train_main(_run_args(synth, straight)) == 0
    split = tmp_path / "split"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_AFTER_STEP, "7", *_run_args(synth, split)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}, not SIGKILL:\n{out[-2000:]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    first = load_checkpoint(split / "last.pt")
    assert first["epoch"] == 1 and first["step"] == 5, "the kill did not land in epoch 2"
    assert train_main(["--resume", str(split / "last.pt")]) == 0
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    assert b["epoch"] == 2 and b["step"] == 10 and [r["epoch"] for r in b["history"]] == [1, 2]
    assert b["optimizer"]["param_groups"][0]["lr"] < 1e-3 / 2  # poly decay really happened
    assert b["scheduler"] == a["scheduler"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(b["state_dict"][key], value), f"{key} differs after the resume"
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    for index, state in a["optimizer"]["state"].items():
        for name, value in state.items():  # Adam's step counters and moments
            assert torch.equal(b["optimizer"]["state"][index][name], value), (index, name)
    assert [(r["loss"], r["val"]["mean"]) for r in a["history"]] == [(r["loss"], r["val"]["mean"]) for r in b["history"]]


def test_recipes_and_poly_decay():
    paper = resolve_config("d", "o", "paper")
    assert (paper.optimizer, paper.lr, paper.momentum, paper.schedule, paper.batch_size, paper.epochs) == \
        ("sgd", 1e-4, 0.9, "poly", 8, 200)
    assert (paper.preset, paper.augment, paper.dice_weight, paper.align_corners) == ("paper", "paper", 0.0, False)
    official = resolve_config("d", "o")  # the authors' experiment/main.py
    assert (official.recipe, official.optimizer, official.lr, official.weight_decay, official.schedule,
            official.poly_power, official.epochs, official.batch_size) == \
        ("official", "adam", 1e-4, 0.0, "poly", 0.9, 150, 8)
    assert (official.preset, official.dice_weight, official.sync_bn, official.align_corners, official.augment) == \
        ("resnet50", 1.0, True, True, "official")
    assert resolve_config("d", "o", "paper", lr=0.01, optimizer="adam").optimizer == "adam"
    assert set(RECIPES) == {"paper", "official"}
    with pytest.raises(ValueError, match="optimizer"):
        resolve_config("d", "o", optimizer="rmsprop")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(paper, opt, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 1.0 and lrs[5] == pytest.approx(0.5 ** 0.9)
    assert opt.param_groups[0]["lr"] == 0.0


def test_model_choice_from_preset_backbone_and_ablation():
    from banet.train import build_model_config

    cfg = build_model_config(resolve_config("d", "o", preset="tiny", backbone="resnet34", ablation="no_mtl"))
    assert (cfg.backbone, cfg.width, cfg.mtl, cfg.ia, cfg.pee) == ("resnet34", 16, False, False, True)
    assert build_model_config(resolve_config("d", "o")).backbone == "resnet50"  # the authors' code's
    assert build_model_config(resolve_config("d", "o", "paper")).backbone == "resnet101"  # the paper's
    assert build_model_config(resolve_config("d", "o")).align_corners
    assert not build_model_config(resolve_config("d", "o", align_corners=False)).align_corners
    with pytest.raises(ValueError, match="ablation"):
        build_model_config(resolve_config("d", "o", ablation="no_such"))


def test_resume_of_a_foreign_checkpoint_is_refused(synth, tmp_path, tiny_checkpoint, capsys):
    assert train_main(["--resume", str(tiny_checkpoint), "--out", str(tmp_path / "r")]) != 0
    assert "train config" in capsys.readouterr().err


def test_ddp_two_processes_gloo(synth, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "banet.cli.train", "--data", str(synth), "--out", str(out), "--preset", "tiny",
           "--size", str(SIZE), "--epochs", "2", "--batch-size", "4", "--device", "cpu", "--workers", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stored = json.loads((out / "train_config.json").read_text())
    assert stored["world_size"] == 2
    state = load_checkpoint(out / "last.pt")
    # 10 training images, global batch 4 (2 per process): 2 steps per epoch
    assert state["epoch"] == 2 and state["step"] == 4
    assert len(state["generator_states"]) == 2
    assert not torch.equal(state["generator_states"][0], state["generator_states"][1])
    model, _ = model_from_checkpoint(out / "last.pt")
    assert torch.isfinite(model(torch.zeros(1, 3, SIZE, SIZE))).all()


def test_throughput_counts_only_the_steps_taken(synth, tmp_path):
    # 10 training images at batch 4 make 2 batches; --max-steps 1 stops after the first, so the
    # epoch trained on 4 images, not on the 8 of its whole batch list.
    record = fit(_config(synth, tmp_path / "run", max_steps=1))["history"][0]
    assert record["step"] == 1
    assert record["train_images_per_s"] * record["train_seconds"] == pytest.approx(4)


def test_missing_imagenet_weights_file_is_a_clear_error(synth, tmp_path, capsys):
    missing = tmp_path / "resnet18.pth"
    args = ["--data", str(synth), "--out", str(tmp_path / "run"), "--preset", "tiny", "--size", str(SIZE),
            "--batch-size", "4", "--max-steps", "1", "--workers", "1", "--imagenet-weights", str(missing)]
    assert train_main(args) == 2  # not a traceback
    assert str(missing) in capsys.readouterr().err


def test_resume_into_a_new_folder_keeps_a_best_checkpoint(synth, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    fit(_config(synth, first, max_steps=1))
    # make the first run's best unbeatable, as after a long run resumed for a few more epochs
    state = load_checkpoint(first / "last.pt")
    state["best_ja"] = 1.0
    torch.save(state, first / "last.pt")
    result = fit(_config(synth, second, epochs=2, max_steps=2), resume=first / "last.pt")
    assert result["best"] == str(second / "best.pt")
    assert (second / "best.pt").is_file(), "the run folder must hold the best checkpoint it names"
    assert (second / "best.pt").read_bytes() == (first / "best.pt").read_bytes()


def test_recipe_without_imagenet_weights_warns(caplog):
    import logging

    from banet.train import build_model_config, warn_if_unpretrained

    for recipe in ("paper", "official"):
        config = resolve_config("d", "o", recipe)
        with caplog.at_level(logging.WARNING, logger="banet.train"):
            caplog.clear()
            warn_if_unpretrained(config, build_model_config(config))
        assert f"recipe {recipe!r} without --imagenet-weights" in caplog.text
    caplog.clear()
    tiny = resolve_config("d", "o", "paper", preset="tiny")  # width 16: no ImageNet file could fit
    warn_if_unpretrained(tiny, build_model_config(tiny))
    with_weights = resolve_config("d", "o", "paper", imagenet_weights="r101.pth")
    warn_if_unpretrained(with_weights, build_model_config(with_weights))
    assert caplog.text == ""


def test_sync_batchnorm_only_under_ddp_on_cuda():
    from banet.model import PRESETS, build_model
    from banet.train import Dist, sync_batchnorm

    config = resolve_config("d", "o", preset="tiny")
    model = build_model(PRESETS["tiny"])
    assert sync_batchnorm(model, config, torch.device("cpu"), Dist()) == (model, False)
    assert sync_batchnorm(model, config, torch.device("cpu"), Dist(0, 2, 0)) == (model, False)  # gloo: no SyncBN
    converted, active = sync_batchnorm(model, config, torch.device("cuda", 0), Dist(0, 2, 0))
    assert active and any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in converted.modules())
    off = resolve_config("d", "o", preset="tiny", sync_bn=False)
    assert sync_batchnorm(build_model(PRESETS["tiny"]), off, torch.device("cuda", 0), Dist(0, 2, 0))[1] is False


def test_cli_flags_for_the_recipe_fields():
    from banet.cli.train import build_parser, config_from_args

    def parse(*flags):
        return config_from_args(build_parser().parse_args(["--data", "d", "--out", "o", *flags]))

    official = parse()
    assert (official.dice_weight, official.align_corners, official.sync_bn, official.augment) == (1.0, True, True, "official")
    changed = parse("--dice-weight", "0", "--no-align-corners", "--no-sync-bn", "--augment", "paper")
    assert (changed.dice_weight, changed.align_corners, changed.sync_bn, changed.augment) == (0.0, False, False, "paper")
    assert parse("--recipe", "paper", "--align-corners").align_corners
    with pytest.raises(ValueError, match="dice_weight"):
        parse("--dice-weight", "-1")


def test_save_every_writes_last_checkpoint_every_n_epochs_and_at_the_end(synth, tmp_path):
    out = tmp_path / "run"
    seen = []

    class _Watch:
        def __init__(self, **kw):
            pass

        def update(self, n=1):
            last = out / "last.pt"
            seen.append(load_checkpoint(last)["epoch"] if last.is_file() else 0)

        def set_postfix(self, **kw):
            pass

        def close(self):
            pass

    # 10 training images at batch 4: 2 steps per epoch; 3 epochs, last.pt after epochs 2 and 3
    result = fit(_config(synth, out, epochs=3, save_every=2), bar_factory=lambda **kw: _Watch(**kw))
    assert seen == [0, 0, 0, 0, 2, 2]
    assert load_checkpoint(out / "last.pt")["epoch"] == 3 and len(result["history"]) == 3
    assert json.loads((out / "history.json").read_text())[-1]["epoch"] == 3


def test_model_config_of_other_architectures():
    from banet.train import build_model_config

    unet = build_model_config(resolve_config("d", "o", arch="unet"))  # the recipe's BA-Net preset gives way
    assert type(unet).__name__ == "UNetConfig" and unet.base_channels == 64 and unet.align_corners  # official
    cenet = build_model_config(resolve_config("d", "o", "paper", arch="cenet", preset="tiny", backbone="resnet34"))
    assert cenet.backbone == "resnet34" and not cenet.align_corners
    with pytest.raises(ValueError, match="unet has no ResNet backbone"):
        build_model_config(resolve_config("d", "o", arch="unet", backbone="resnet18"))
    with pytest.raises(ValueError, match="ablation 'no_pee' is BA-Net's"):
        build_model_config(resolve_config("d", "o", arch="fcn", ablation="no_pee"))
    with pytest.raises(ValueError, match="unknown architecture 'vit'"):
        build_model_config(resolve_config("d", "o", arch="vit"))


# --- early stopping and the CPU precision probe (issue 21) --------------------------------------
def _scripted_validation(monkeypatch, scores):
    """Make ``validate`` return the JA of ``scores`` in turn (the training itself runs for real)."""
    import banet.train as train

    real = train.validate
    calls = iter(scores)

    def scripted(*args, **kwargs):
        result = real(*args, **kwargs)
        result["mean"] = {**result["mean"], "JA": next(calls)}
        return result

    monkeypatch.setattr(train, "validate", scripted)


def test_epochs_without_improvement_counts_from_the_first_best():
    from banet.train import epochs_without_improvement

    hist = [{"val": {"mean": {"JA": ja}}} for ja in (0.5, 0.7, 0.7, 0.6)]
    assert epochs_without_improvement(hist) == 2  # the tie at epoch 3 is no improvement
    assert epochs_without_improvement(hist[:2]) == 0 and epochs_without_improvement([]) == 0


def test_patience_stops_the_run_and_a_resume_does_not_train_further(synth, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _scripted_validation(monkeypatch, [0.5, 0.6, 0.55, 0.54, 0.9, 0.9])
    result = fit(_config(synth, out, epochs=6, max_steps=None, patience=2, amp="none"))
    assert [r["epoch"] for r in result["history"]] == [1, 2, 3, 4]  # best at 2, then 2 epochs without gain
    last, best = load_checkpoint(out / "last.pt"), load_checkpoint(out / "best.pt")
    assert last["stopped_early"] is True and last["epoch"] == 4 and best["epoch"] == 2
    stamp = (out / "last.pt").stat().st_mtime_ns
    again = fit(_config(synth, out, epochs=6, patience=2, amp="none"), resume=out / "last.pt")
    assert len(again["history"]) == 4 and (out / "last.pt").stat().st_mtime_ns == stamp


def test_without_patience_the_run_goes_to_its_epoch_cap(synth, tmp_path, monkeypatch):
    _scripted_validation(monkeypatch, [0.5, 0.4, 0.3])
    result = fit(_config(synth, tmp_path / "run", epochs=3, amp="none", max_steps=6))
    assert [r["epoch"] for r in result["history"]] == [1, 2, 3]


def test_cpu_probe_keeps_fp32_unless_another_precision_is_clearly_faster():
    from banet.losses import DeepSupervisionLoss
    from banet.model import PRESETS, build_model
    from banet.train import CPU_PROBE_MARGIN, probe_cpu_precision

    model = build_model(PRESETS["tiny"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = (torch.randn(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float())
    loss = DeepSupervisionLoss()
    candidates = {"fp32": (None, False), "fp32_channels_last": (None, True)}

    def clock_for(step_seconds):  # warm-up step, then one timed step per candidate
        ticks, now = [], 0.0
        for seconds in step_seconds:
            ticks += [now, now + seconds]
            now += seconds + 1.0
        return iter(ticks).__next__

    slightly = probe_cpu_precision(model, loss, batch, steps=1, candidates=candidates,
                                   clock=clock_for([9, 1.0, 9, 1.0 / (CPU_PROBE_MARGIN - 0.05)]))
    clearly = probe_cpu_precision(model, loss, batch, steps=1, candidates=candidates,
                                  clock=clock_for([9, 1.0, 9, 0.5]))
    assert slightly["choice"] == "fp32" and clearly["choice"] == "fp32_channels_last"
    assert clearly["channels_last"] is True and clearly["seconds_per_step"]["fp32_channels_last"] == 0.5
    for key, value in model.state_dict().items():  # BatchNorm statistics and weights as they were
        assert torch.equal(value, before[key]), key


def test_cpu_run_records_the_probe_and_a_resume_keeps_its_choice(synth, tmp_path):
    out = tmp_path / "run"
    fit(_config(synth, out, epochs=2, max_steps=1))
    stored = json.loads((out / "train_config.json").read_text())["precision"]
    assert stored["choice"] in ("fp32", "fp32_channels_last", "bf16_channels_last")
    assert set(stored["seconds_per_step"]) == {"fp32", "fp32_channels_last", "bf16_channels_last"}
    assert load_checkpoint(out / "last.pt")["precision"] == stored
    fit(_config(synth, out, epochs=2, max_steps=2), resume=out / "last.pt")
    assert json.loads((out / "train_config.json").read_text())["precision"] == stored
    forced = tmp_path / "forced"
    fit(_config(synth, forced, epochs=1, max_steps=1, amp="none"))
    assert json.loads((forced / "train_config.json").read_text())["precision"]["choice"] == "configured"


def test_train_config_defaults_are_the_default_recipe():
    from banet.train import DEFAULT_RECIPE, TrainConfig

    config = TrainConfig(data="d", out="o")
    assert config.recipe == DEFAULT_RECIPE == "official"
    assert {k: getattr(config, k) for k in RECIPES[DEFAULT_RECIPE]} == RECIPES[DEFAULT_RECIPE]
