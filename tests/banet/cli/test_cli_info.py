"""banet-info: parameter and FLOP counts, table / JSON / Markdown output."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from banet.cli import info
from banet.model import PRESETS, build_model

TINY = PRESETS["tiny"]


def test_model_size_matches_a_real_model_on_the_cpu():
    size = info.model_size(TINY, 64, 96)
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    assert size["params"] == sum(p.numel() for p in model.parameters())
    assert size["flops"] == _conv_flops_by_arithmetic(TINY, 64, 96)  # not torch's counter again
    assert sum(size["flops_by_component"].values()) == size["flops"]
    assert size["gmacs"] == pytest.approx(size["flops"] / 2e9)


def _conv_flops_by_arithmetic(config, height: int, width: int) -> int:
    """FLOPs of every convolution the model runs, from each layer's own shapes: 2 x output elements x
    (input channels / groups) x kernel height x kernel width (no bias, BN, ReLU, pooling or resize,
    the convention of banet-info). BA-Net has no other layer with multiply-adds (no Linear, no matmul)."""
    total = 0

    def count(conv, inputs, output):
        nonlocal total
        kh, kw = conv.kernel_size
        total += 2 * output.numel() * (conv.in_channels // conv.groups) * kh * kw

    with torch.device("meta"):
        model = build_model(config).eval()
        image = torch.zeros(1, 3, height, width)
    for module in model.modules():
        assert type(module) not in (torch.nn.Linear, torch.nn.ConvTranspose2d)  # would need their own rule
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(count)
    with torch.no_grad():
        model(image)
    return total


@pytest.mark.parametrize("preset, gflops", [("paper", 130.7), ("resnet50", 91.9)])
def test_gflops_of_the_resnet_configurations_match_layer_arithmetic(preset, gflops):
    # the README's figures (bench/results/model_size_2026-11-26.md), counted layer by layer
    size = info.model_size(PRESETS[preset], 256)
    assert size["flops"] == _conv_flops_by_arithmetic(PRESETS[preset], 256, 256)
    assert round(size["gflops"], 1) == gflops


def test_flops_count_a_multiply_add_as_two():
    # the stem alone, by hand: 7x7x3 kernel, `width` outputs at half resolution, 2 FLOPs per MAC
    conv1 = 2 * (64 // 2) * (64 // 2) * TINY.width * 7 * 7 * 3
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        build_model(TINY).encoder.conv1(torch.zeros(1, 3, 64, 64))
    assert counter.get_total_flops() == conv1


def test_flops_grow_with_pixels_and_shrink_with_ablations():
    small, large = info.model_size(TINY, 64), info.model_size(TINY, 128)
    assert small["params"] == large["params"]
    assert large["flops"] / small["flops"] == pytest.approx(4.0, rel=0.02)
    baseline = info.model_size(TINY.with_ablation("baseline"), 64)
    assert baseline["flops"] < small["flops"] and baseline["params"] < small["params"]
    assert baseline["flops_by_component"]["encoder"] == small["flops_by_component"]["encoder"]


def test_json_output(capsys):
    assert info.main(["--preset", "tiny", "--ablation", "full", "no_mtl", "--size", "63", "97", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["command"] == "banet-info --preset tiny --ablation full no_mtl --size 63 97 --json"
    assert [r["ablation"] for r in report["rows"]] == ["full", "no_mtl"]
    assert all((r["height"], r["width"], r["backbone"]) == (63, 97, "resnet18") for r in report["rows"])
    assert report["machine"]["cores"] >= 1 and "2 FLOPs" in report["flop_convention"]


def test_table_and_backbone_override(capsys):
    info.main(["--preset", "tiny", "--backbone", "resnet34", "--size", "64"])
    out = capsys.readouterr().out
    assert "GFLOPs" in out and "resnet34" in out and "64x64" in out


def test_markdown_and_json_files_refuse_to_overwrite(tmp_path, capsys):
    md = tmp_path / "results" / "size.md"
    info.main(["--preset", "tiny", "--size", "64", "--markdown", str(md)])
    text = md.read_text()
    assert "banet-info --preset tiny --size 64 --markdown" in text and "| tiny | resnet18 | full | 64x64 |" in text
    assert json.loads(md.with_suffix(".json").read_text())["rows"][0]["preset"] == "tiny"
    with pytest.raises(SystemExit):
        info.main(["--preset", "tiny", "--size", "64", "--markdown", str(md)])
    assert "size.md exists; pass --force" in capsys.readouterr().err
    info.main(["--preset", "tiny", "--size", "64", "--ablation", "baseline", "--markdown", str(md), "--force"])
    assert "| baseline |" in md.read_text()


@pytest.mark.parametrize("argv, message", [
    (["--size", "0"], "one or two positive integers"),
    (["--size", "1", "2", "3"], "one or two positive integers"),
    (["--preset", "huge"], "invalid choice: 'huge'"),
    (["--markdown", "out.txt"], "needs a .md path"),
])
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        info.main(argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["fcn", "unet", "multiresunet", "attention_unet", "deeplabv3", "cenet"])
def test_every_architecture_is_counted_whole(arch):
    from banet.model import registry

    config = registry.preset(arch, "tiny")
    size = info.model_size(config, 64, 96)
    torch.manual_seed(0)
    assert size["params"] == sum(p.numel() for p in registry.build(arch, config).parameters())
    assert sum(size["flops_by_component"].values()) == size["flops"] > 0  # the groups cover every layer


def test_arch_all_json_and_preset_refusal(capsys):
    assert info.main(["--arch", "all", "--preset", "tiny", "--size", "64", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["arch"] for r in rows] == ["fcn", "unet", "multiresunet", "attention_unet", "deeplabv3", "cenet", "banet"]
    assert {r["ablation"] for r in rows if r["arch"] != "banet"} == {"-"}
    with pytest.raises(SystemExit):
        info.main(["--arch", "unet", "--preset", "resnet50"])
    assert "not every preset exists for unet (presets paper, tiny)" in capsys.readouterr().err


def test_random_checkpoint_is_seeded_and_loads_as_a_model(tmp_path, capsys):
    """Same seed, same weights (a figure measured on it can be recreated); another seed differs;
    the checkpoint rebuilds its model and names the size it was made for; never overwritten silently."""
    from banet.checkpoint import model_from_checkpoint

    a, b, c = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    info.main(["--preset", "tiny", "--size", "96", "--random-checkpoint", str(a)])
    info.main(["--preset", "tiny", "--size", "96", "--random-checkpoint", str(b)])
    info.main(["--preset", "tiny", "--size", "96", "--random-checkpoint", str(c), "--seed", "1"])
    (ma, pa), (mb, _), (mc, _) = (model_from_checkpoint(p) for p in (a, b, c))
    sa, sb, sc = ma.state_dict(), mb.state_dict(), mc.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert pa["train_config"] == {"size": 96, "seed": 0, "random_weights": True}
    assert pa["model_config"] == TINY.to_dict()
    with pytest.raises(SystemExit):
        info.main(["--preset", "tiny", "--random-checkpoint", str(a)])
    assert "a.pt exists; pass --force" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        info.main(["--preset", "tiny", "paper", "--random-checkpoint", str(tmp_path / "d.pt")])
    assert "one --preset" in capsys.readouterr().err
