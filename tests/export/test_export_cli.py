"""``banet-export`` end to end: manifest, versions and --force, engine messages, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxsim")

from export.cli import main  # noqa: E402

# the data-center TensorRT (Triton plans); TensorRT-RTX, which builds here, is asked for with --trt-builder.
# Where it and a GPU are present these tests skip (allowed under CI: tests/conftest.py) and the engines
# are built and gated instead (test_export_tensorrt.py's needs_tensorrt tests).
no_tensorrt = pytest.mark.needs_no_tensorrt


@pytest.fixture(scope="module")
def base_args(real_tiny_checkpoint, kvasir) -> list[str]:
    return ["--checkpoint", str(real_tiny_checkpoint), "--image-size", "64", "--parity-data", f"{kvasir}:test",
            "--parity-count", "4", "-q"]


@pytest.mark.needs_data
@no_tensorrt
def test_cli_writes_manifest_and_trtexec_commands(base_args, kvasir, tmp_path, capsys):
    out = tmp_path / "exports"
    rc = main([*base_args, "--out", str(out), "--fp16", "--int8", "--calib-data", f"{kvasir}:train",
               "--calib-count", "8", "--trt-builder", "tensorrt"])
    stdout = capsys.readouterr().out
    assert rc == 0
    manifest = json.loads((out / "1" / "manifest.json").read_text())
    config = json.loads((out / "1" / "export_config.json").read_text())
    assert config["image_size"] == 64 and config["fp16"] and config["calib_count"] == 8
    assert [(a["name"], a.get("io", "float32")) for a in manifest["artifacts"]] == [
        ("onnx_fp32", "float32"), ("onnx_fp16", "float32"), ("onnx_int8", "float32"), ("onnx_int8_cpu", "float32"),
        ("onnx_fp32_serving", "uint8"), ("onnx_fp16_serving", "uint8"), ("onnx_int8_serving", "uint8"),
        ("onnx_int8_cpu_serving", "uint8")]
    assert [a.get("target") for a in manifest["artifacts"] if a["precision"] == "int8"] == [
        "tensorrt", "onnxruntime", "tensorrt", "onnxruntime"]
    for art in manifest["artifacts"]:
        assert (out / "1" / art["path"]).stat().st_size == art["bytes"]
        assert len(art["sha256"]) == 64 and art["gate"] in ("pass", "fail")
        if art.get("io") == "uint8":  # the serving variant of each precision, gated over the served path
            assert art["name"].endswith("_serving") and art["path"].endswith("_serving.onnx")
            assert art["inputs"] == {"image_u8": ["batch", 64, 64, 3]}
            assert art["outputs"] == {"probability": ["batch", 1, 64, 64]}
            # random weights react to the reduced decode (the gate may fail them at 64 px); a broken
            # graph (no normalization, swapped layout) would agree at about 0.5
            assert art["parity"]["images"] == 4 and art["parity"]["mean_agreement"] > 0.9
        else:
            assert art["inputs"] == {"image": ["batch", 3, 64, 64]}
    assert manifest["checkpoint"]["sha256"] and manifest["tools"]["onnxruntime"]
    assert all(e["status"].startswith("not built") for e in manifest["engines"])
    assert "No TensorRT engine was built" in stdout
    assert ("trtexec --onnx=model_int8.onnx --saveEngine=model_int8.plan --minShapes=image:1x3x64x64 "
            "--optShapes=image:8x3x64x64 --maxShapes=image:32x3x64x64 --stronglyTyped") in stdout
    assert ("trtexec --onnx=model_int8_serving.onnx --saveEngine=model_int8_serving.plan "
            "--minShapes=image_u8:1x64x64x3 --optShapes=image_u8:8x64x64x3 --maxShapes=image_u8:32x64x64x3") in stdout
    assert "onnx_fp16" in stdout and "gate" in stdout  # the final table


@pytest.mark.needs_data
def test_no_silent_overwrite_and_force(base_args, tmp_path, capsys):
    out = tmp_path / "exports"
    assert main([*base_args, "--out", str(out), "--no-engine"]) == 0
    assert main([*base_args, "--out", str(out), "--no-engine"]) == 0  # a new export -> a new version
    assert sorted(p.name for p in out.iterdir()) == ["1", "2"]
    first = (out / "1" / "manifest.json").read_text()
    capsys.readouterr()
    assert main([*base_args, "--out", str(out), "--version", "1", "--no-engine"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (out / "1" / "manifest.json").read_text() == first
    assert main([*base_args, "--out", str(out), "--version", "1", "--force", "--no-engine"]) == 0
    assert (out / "1" / "manifest.json").read_text() != first  # new creation time
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "staging directory left behind"


@no_tensorrt
def test_require_engine_fails_without_tensorrt(tiny_checkpoint, tmp_path, capsys):
    rc = main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "x"), "--require-engine",
               "--trt-builder", "tensorrt", "-q"])
    assert rc == 2
    assert "--require-engine" in capsys.readouterr().err
    assert not (tmp_path / "x").exists(), "nothing should be written when the engine is required up front"


def test_missing_checkpoint(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x"), "-q"]) == 2
    assert f"checkpoint not found: {tmp_path / 'nope.pt'}" in capsys.readouterr().err


def test_checkpoint_of_another_architecture(tiny_checkpoint, tmp_path, capsys):
    import torch

    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["model_config"]["backbone"] = "resnet34"  # weights are resnet18-shaped
    wrong = tmp_path / "wrong.pt"
    torch.save(payload, wrong)
    assert main(["--checkpoint", str(wrong), "--out", str(tmp_path / "x"), "-q"]) == 2
    assert "weights do not match the stored model config" in capsys.readouterr().err

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": torch.nn.Linear(2, 2).state_dict()}, foreign)
    assert main(["--checkpoint", str(foreign), "--out", str(tmp_path / "x"), "-q"]) == 2
    assert "is not a BA-Net checkpoint" in capsys.readouterr().err


def test_int8_needs_calibration_data(tiny_checkpoint, tmp_path, capsys):
    assert main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "x"), "--int8", "-q"]) == 2
    assert "--int8 needs --calib-data" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--parity-count", "0"), ("--batch-size", "0")])
def test_non_positive_counts_are_refused_before_any_work(tiny_checkpoint, tmp_path, capsys, flag, value):
    # without the check, a zero got through the whole ONNX export and then died in the gate with
    # numpy's "zero-size array" (or range()'s "arg 3 must not be zero")
    rc = main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "x"), flag, value, "-q"])
    assert rc == 2
    assert f"{flag.lstrip('-').replace('-', '_')} must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_promoting_a_precision_not_exported_is_refused_before_any_work(tiny_checkpoint, tmp_path, capsys):
    # it used to run the whole export, write OUT/1, and only then say there was no int8 artifact
    rc = main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "x"), "--repository",
               str(tmp_path / "repo"), "--promote", "int8", "-q"])
    assert rc == 2
    assert "--promote int8" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "repo").exists()


@pytest.mark.needs_data
def test_too_little_calibration_data_via_cli(base_args, kvasir, tmp_path, capsys):
    rc = main([*base_args, "--out", str(tmp_path / "x"), "--int8", "--calib-data", f"{kvasir}:val", "--no-engine"])
    assert rc == 2
    assert "holds 100 calibration images, 256 requested" in capsys.readouterr().err
    assert not (tmp_path / "x").exists(), "bad calibration data must fail before anything is written"


@pytest.mark.needs_data
def test_failed_gate_blocks_promotion(base_args, tmp_path, capsys):
    repo = tmp_path / "repo"
    rc = main([*base_args, "--out", str(tmp_path / "x"), "--no-engine", "--repository", str(repo),
               "--min-agreement-fp32", "1.01"])
    assert rc == 3
    assert "onnx_fp32_serving failed its accuracy gate" in capsys.readouterr().err
    assert not repo.exists()
    manifest = json.loads((tmp_path / "x" / "1" / "manifest.json").read_text())
    assert manifest["artifacts"][0]["gate"] == "fail"  # reported in the manifest all the same


@pytest.mark.needs_data
@pytest.mark.parametrize("network_io, artifact, source", [("uint8", "onnx_fp32_serving", "model_serving.onnx"),
                                                          ("float32", "onnx_fp32", "model.onnx")])
def test_passing_artifact_is_promoted_into_the_repository(base_args, tmp_path, capsys, network_io, artifact, source):
    from banet.spec import NETWORK_MODEL, network_tensors

    repo = tmp_path / "repo"
    # uint8 is the default; random weights react to the reduced JPEG decode at 64 px, so it is switched off
    # here (test_served_gate_catches_the_reduced_decode shows the gate failing it)
    io_args = ["--decode-oversample", "100"] if network_io == "uint8" else ["--network-io", network_io]
    rc = main([*base_args, "--out", str(tmp_path / "x"), "--no-engine", "--repository", str(repo), *io_args])
    assert rc == 0, capsys.readouterr().err
    assert f"promoted {artifact} into" in capsys.readouterr().out
    promoted = json.loads((tmp_path / "x" / "1" / "manifest.json").read_text())["promoted"]
    assert promoted["artifact"] == artifact and promoted["gate"] == "pass" and not promoted["forced"]
    copied = list((repo / NETWORK_MODEL).glob("1/*.onnx"))
    assert len(copied) == 1 and copied[0].read_bytes() == (tmp_path / "x" / "1" / source).read_bytes()
    assert f'name: "{network_tensors(network_io)[0].name}"' in (repo / NETWORK_MODEL / "config.pbtxt").read_text()


@pytest.mark.needs_data
def test_served_gate_catches_the_reduced_decode(base_args, tmp_path, capsys):
    """The most aggressive reduced decode (1x) changes a random-weight model's masks: the serving
    variant's gate scores the whole served path and refuses to promote it; the float graph passes."""
    from banet.spec import NETWORK_MODEL

    repo = tmp_path / "repo"
    rc = main([*base_args, "--out", str(tmp_path / "x"), "--no-engine", "--repository", str(repo),
               "--decode-oversample", "1"])
    assert rc == 3
    assert "onnx_fp32_serving failed its accuracy gate (mask agreement" in capsys.readouterr().err
    gates = {a["name"]: a for a in json.loads((tmp_path / "x" / "1" / "manifest.json").read_text())["artifacts"]}
    assert gates["onnx_fp32"]["gate"] == "pass" and gates["onnx_fp32_serving"]["gate"] == "fail"
    assert gates["onnx_fp32_serving"]["parity"]["mean_agreement"] < 0.999
    assert not (repo / NETWORK_MODEL).exists()


def test_image_size_comes_from_the_checkpoint(tiny_checkpoint):
    import torch

    from banet.spec import IMAGE_SIZE
    from export.pipeline import ExportConfig, _image_size

    payload = torch.load(tiny_checkpoint, weights_only=True)
    config = ExportConfig(checkpoint="x", out="y")
    assert _image_size(config, payload) == IMAGE_SIZE
    assert _image_size(config, {**payload, "train_config": {"size": 128}}) == 128
    assert _image_size(ExportConfig(checkpoint="x", out="y", image_size=96), {"train_config": {"size": 128}}) == 96


@pytest.mark.needs_data
def test_a_version_that_appears_during_the_export_is_not_deleted(base_args, tmp_path, monkeypatch, capsys):
    # Another export into the same OUT (same auto version) finishing while this one runs: without
    # --force its version must survive; the late arrival is refused, not rmtree'd.
    from export import pipeline

    out = tmp_path / "x"
    original = pipeline._export_into

    def with_a_concurrent_export(folder, *args, **kwargs):
        manifest = original(folder, *args, **kwargs)
        (out / "1").mkdir()
        (out / "1" / "manifest.json").write_text("the other export\n")
        return manifest

    monkeypatch.setattr(pipeline, "_export_into", with_a_concurrent_export)
    assert main([*base_args, "--out", str(out), "--no-engine"]) == 2
    err = capsys.readouterr().err
    assert f"{out / '1'} was created while this export ran" in err and "--force" in err
    assert (out / "1" / "manifest.json").read_text() == "the other export\n"
    assert [p.name for p in out.iterdir()] == ["1"], "the staging folder is cleaned up"
