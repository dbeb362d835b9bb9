"""TensorRT: every artifact parsed and built by a real TensorRT builder (TensorRT-RTX ahead of time on
these machines, no GPU needed), a rejected graph as a clear failure that keeps the other artifacts,
the commands and profile for Triton plans, and on GPU hosts engines that pass the mask gate. The
mypy check of the TensorRT API use is in test_typecheck.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from banet.spec import MAX_BATCH_SIZE, NETWORK_INPUT, OPT_BATCH_SIZE, network_tensors, sized
from export import tensorrt as trt_route

def test_profile_follows_the_spec():
    shapes = trt_route.profile_shapes(128)
    assert shapes == {"min": (1, 3, 128, 128), "opt": (OPT_BATCH_SIZE, 3, 128, 128),
                      "max": (MAX_BATCH_SIZE, 3, 128, 128)}


def test_trtexec_command():
    cmd = trt_route.trtexec_command("out/1/model_fp16.onnx", "out/1/model_fp16.plan", image_size=256,
                                    timing_cache="out/1/timing.cache", workspace_gib=2)
    assert cmd == ("trtexec --onnx=out/1/model_fp16.onnx --saveEngine=out/1/model_fp16.plan "
                   f"--minShapes={NETWORK_INPUT.name}:1x3x256x256 --optShapes={NETWORK_INPUT.name}:8x3x256x256 "
                   f"--maxShapes={NETWORK_INPUT.name}:32x3x256x256 --stronglyTyped --memPoolSize=workspace:2048M "
                   "--timingCacheFile=out/1/timing.cache")
    assert "--fp16" not in cmd and "--int8" not in cmd  # removed in TensorRT 11: precision is in the graph
    assert "--versionCompatible" in trt_route.trtexec_command("a.onnx", "a.plan", image_size=64, version_compatible=True)


# the import names of the two builders, as their wheels install them (not the code's own table): the
# data-center TensorRT is ``tensorrt``; TensorRT for RTX is ``tensorrt_rtx_bindings`` (PyPI
# tensorrt-rtx-cu13-bindings) or ``tensorrt_rtx`` (NVIDIA's own wheels)
INSTALLED_AS = {"tensorrt": ("tensorrt",), "tensorrt_rtx": ("tensorrt_rtx_bindings", "tensorrt_rtx")}


def test_loader_finds_what_is_installed():
    builder = trt_route.load_builder()
    has = {kind: any(importlib.util.find_spec(m) for m in mods) for kind, mods in INSTALLED_AS.items()}
    if has["tensorrt"]:
        assert builder.kind == "tensorrt" and builder.for_triton
    elif has["tensorrt_rtx"]:
        assert builder.kind == "tensorrt_rtx" and not builder.for_triton and builder.can_build()
        assert builder.label.startswith("TensorRT-RTX ") and builder.version[0].isdigit()
    else:
        assert builder is None and "not installed" in trt_route.unavailable_reason()
    with pytest.raises(ValueError, match="must be one of"):
        trt_route.load_builder("tensorrt-llm")


def test_timing_cache_lives_under_the_export_root(tmp_path):
    """Data-center TensorRT: one cache per TensorRT version and GPU under OUT/, shared by every export
    into OUT (not the staging folder). TensorRT-RTX: none (its timing-cache calls are no-ops)."""
    dc = trt_route.Builder("tensorrt", None, "tensorrt", "10.13.0")
    path = trt_route.timing_cache_path(tmp_path, dc)
    assert path.parent == tmp_path / "timing_cache" and path.name.startswith("tensorrt-10.13.0")
    assert trt_route.timing_cache_path(tmp_path, trt_route.Builder("tensorrt_rtx", None, "x", "1.7")) is None


def _int32_bias(src: Path, dst: Path) -> str:
    """Break an INT8 graph the way ONNX Runtime's default ``QuantizeBias`` does: give its first
    quantized conv an int32 bias behind a DequantizeLinear (ONNX Runtime runs it; TensorRT rejects it)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and len(n.input) == 3
                and getattr(producer.get(n.input[1]), "op_type", "") == "DequantizeLinear")
    bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float32)
    scale = np.full(bias.shape, 1e-4, np.float32)
    q = np.round(bias / scale).astype(np.int32)
    model.graph.initializer.extend([numpy_helper.from_array(q, "broken_bias_q"),
                                    numpy_helper.from_array(scale, "broken_bias_scale")])
    out_type = inits[conv.input[2]].data_type
    nodes = [helper.make_node("DequantizeLinear", ["broken_bias_q", "broken_bias_scale"], ["broken_bias_f32"],
                              name="broken_bias_DequantizeLinear", axis=0),
             helper.make_node("Cast", ["broken_bias_f32"], ["broken_bias"], to=out_type, name="broken_bias_Cast")]
    conv.input[2] = "broken_bias"
    for i, node in enumerate(nodes):
        model.graph.node.insert(i, node)
    onnx.save(model, str(dst))
    return conv.name


@pytest.mark.needs_trt_builder
@pytest.mark.needs_data
def test_every_artifact_parses_and_builds(exported, trt_builder):
    """FP32, FP16 and INT8 each parse and build into an engine, with the precision the graph says."""
    import onnx

    folder = Path(exported["directory"])
    assert exported["tensorrt_builder"] == trt_builder.to_dict()
    engines = {e["precision"]: e for e in exported["engines"] if "source" in e}
    assert sorted(engines) == ["fp16", "fp32", "int8"]
    for precision, engine in engines.items():
        assert engine["status"] == "built", f"{engine['source']}: {engine.get('error')}"
        assert engine["bytes"] > 0 and (folder / engine["path"]).stat().st_size == engine["bytes"]
        assert engine["builder"] == trt_builder.kind and engine["version"] == trt_builder.version
        art = next(a for a in exported["artifacts"] if a["path"] == engine["source"])
        assert art["tensorrt_check"]["built"], art["tensorrt_check"]
    convs = {p: e["network"]["convolution_dtypes"] for p, e in engines.items()}
    assert convs["fp32"] == {"FLOAT": engines["fp32"]["network"]["convolutions"]}
    assert set(convs["fp16"]) == {"HALF"}
    # INT8 for TensorRT: Q/DQ in front of exactly the chosen convs, and FP16 around them
    int8 = next(a for a in exported["artifacts"] if a["name"] == "onnx_int8")
    chosen = {p.key: p.value for p in onnx.load(str(folder / int8["path"])).metadata_props}["banet.int8_nodes"]
    assert engines["int8"]["network"]["convolutions_int8"] == len(chosen.split(",")) > 0
    assert set(convs["int8"]) == {"HALF"}, "everything outside the Q/DQ pairs must be FP16 for INT8 to beat FP16"
    if not trt_builder.for_triton:  # TensorRT-RTX: labelled, targets recorded, never a Triton plan
        for engine in engines.values():
            assert engine["name"].startswith("tensorrt_rtx_") and engine["format"] == "tensorrt_rtx_engine"
            assert not engine["triton"] and engine["targets"] == list(trt_route.RTX_DEFAULT_TARGETS)
            assert engine["trtexec"].startswith("trtexec --onnx=")  # the Triton plan is still buildable elsewhere


@pytest.mark.needs_trt_builder
@pytest.mark.needs_data
def test_rejected_graph_is_a_clear_error(exported, trt_builder, tmp_path):
    folder = Path(exported["directory"])
    broken = tmp_path / "int32_bias.onnx"
    conv = _int32_bias(folder / "model_int8.onnx", broken)
    with pytest.raises(trt_route.EngineBuildError) as err:
        trt_route.build_engine(broken, tmp_path / "broken.plan", image_size=64, builder=trt_builder)
    message = str(err.value)
    assert "could not parse int32_bias.onnx" in message and "Int32" in message, message
    assert "broken_bias_DequantizeLinear" in message, "the parser's own message names the node"
    assert "cudaError" not in message, "the CPU-only AOT driver noise is not part of the error"
    assert not (tmp_path / "broken.plan").exists()
    assert conv


@pytest.mark.needs_trt_builder
@pytest.mark.needs_data
def test_export_keeps_every_artifact_when_tensorrt_rejects_one(real_tiny_checkpoint, kvasir, trt_builder,
                                                              tmp_path, monkeypatch, capsys):
    """banet-export: the builder rejects the INT8 graph -> exit 4 with the parser's message; the
    version directory holds every artifact, the rejected one fails its check and cannot be promoted."""
    from export import pipeline
    from export.cli import main
    from dataclasses import replace

    from export.pipeline import ExportConfig, ExportError, promote

    real_quantize = pipeline.quantize_int8

    def quantize_then_break(src, dst, *args, **kwargs):
        real_quantize(src, dst, *args, **kwargs)
        good = Path(dst).with_name("good.onnx")
        Path(dst).rename(good)
        _int32_bias(good, Path(dst))
        good.unlink()
        return Path(dst)

    monkeypatch.setattr(pipeline, "quantize_int8", quantize_then_break)
    out = tmp_path / "exports"
    rc = main(["--checkpoint", str(real_tiny_checkpoint), "--out", str(out), "--image-size", "64", "--int8",
               "--calib-data", f"{kvasir}:train", "--calib-count", "8", "--parity-data", f"{kvasir}:test",
               "--parity-count", "4", "-q"])
    captured = capsys.readouterr()
    assert rc == 4, captured.err
    assert "could not parse model_int8.onnx" in captured.err and "Int32" in captured.err
    assert f"every artifact is kept in {out / '1'}" in captured.err
    manifest = json.loads((out / "1" / "manifest.json").read_text())
    for item in [*manifest["artifacts"], *manifest["engines"]]:
        if item.get("status", "built") == "built":
            assert (out / "1" / item["path"]).is_file(), item["path"]
    int8 = next(a for a in manifest["artifacts"] if a["name"] == "onnx_int8")
    assert int8["gate"] == "fail" and not int8["tensorrt_check"]["built"]
    assert any("Int32" in r for r in int8["parity"]["reasons"])
    engines = {e["precision"]: e for e in manifest["engines"]}
    assert engines["int8"]["status"] == "failed" and engines["fp32"]["status"] == "built"
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "staging folder left behind"
    # the rejected graph is the TensorRT one: only tensorrt_plan would serve it, and that is refused
    config = ExportConfig(checkpoint=str(real_tiny_checkpoint), out=str(out), int8=True, calib_data="x",
                          repository=str(tmp_path / "repo"), promote="int8", backend="tensorrt_plan", image_size=64)
    with pytest.raises(ExportError, match="no data-center TensorRT int8 plan"):
        promote(out / "1", manifest, config)
    assert not (tmp_path / "repo").exists()
    # ONNX Runtime on the CPU serves the CPU INT8 artifact (export/quantize_cpu.py), which the rejection does not touch
    cpu = next(a for a in manifest["artifacts"] if a["name"] == "onnx_int8_cpu_serving")
    assert "tensorrt_check" not in cpu  # TensorRT never parses it; its own gate decides
    config = replace(config, backend="python_onnxruntime", force_promote=True)  # KIND_CPU: issue 19 defect 8
    assert promote(out / "1", manifest, config)["artifact"] == "onnx_int8_cpu_serving"


@pytest.mark.needs_trt_builder
@pytest.mark.needs_no_tensorrt  # the data-center TensorRT builds for the visible GPU: no --rtx-targets there
def test_unknown_rtx_target_is_refused_up_front(tiny_checkpoint, trt_builder, tmp_path, capsys):
    from export.cli import main

    assert not trt_builder.for_triton, trt_builder.label
    rc = main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "x"), "--rtx-targets", "SM90", "-q"])
    assert rc == 2 and "--rtx-targets SM90" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_export_error_keeps_what_was_written(tiny_checkpoint, tmp_path, monkeypatch):
    """An error half-way (here: the parity step) leaves the finished files in OUT/<n>.incomplete."""
    from export import parity, pipeline

    def broken(*args, **kwargs):
        raise OSError("disk went away")

    monkeypatch.setattr(parity, "load_parity_set", broken)
    monkeypatch.setattr(parity, "image_paths", lambda spec: [])
    config = pipeline.ExportConfig(checkpoint=str(tiny_checkpoint), out=str(tmp_path), image_size=64,
                                   engine=False, parity_data=str(tmp_path))
    with pytest.raises(pipeline.ExportError, match=r"disk went away; what it had written is kept in .*1\.incomplete"):
        pipeline.run_export(config)
    assert (tmp_path / "1.incomplete" / "model.onnx").stat().st_size > 0
    assert not (tmp_path / "1").exists()


@pytest.mark.needs_torch_tensorrt
def test_torch_tensorrt_refuses_int8_route():
    from export.torch_tensorrt import _prepare

    with pytest.raises(ValueError, match="INT8 engines come from the ONNX Q/DQ route"):
        _prepare(None, "int8", 64)


@pytest.mark.needs_tensorrt
@pytest.mark.needs_data
def test_engines_pass_the_mask_gate_on_a_gpu(exported):
    """GPU hosts: every engine the GPU can run went through the export's parity gate, fed its own I/O
    (uint8 NHWC for the serving engines); the others carry the runtime gate's reason (not run here: no GPU)."""
    folder = Path(exported["directory"])
    for engine in (e for e in exported["engines"] if "source" in e):
        assert engine["status"] == "built", engine.get("error")
        if not engine["runtime"]["runnable"]:  # e.g. TensorRT-RTX engines on an H100/H200: the reason is recorded
            assert engine["gate"] == f"not run: {engine['runtime']['reason']}"
            continue
        assert engine["gate"] == "pass", engine["parity"]["reasons"]
        assert engine["parity"]["images"] == exported["parity_data"]["images"]
        tensor_in = sized(network_tensors(engine["io"])[0], 64)  # image (B, 3, S, S) or image_u8 (B, S, S, 3)
        run = trt_route.engine_runner(folder / engine["path"], io=engine["io"])
        for batch in (1, 3, MAX_BATCH_SIZE):
            assert run(np.zeros((batch, *tensor_in.shape), tensor_in.dtype)).shape == (batch, 1, 64, 64)
        with pytest.raises(trt_route.EngineBuildError, match="outside the engine's optimization profile"):
            run(np.zeros((MAX_BATCH_SIZE + 1, *tensor_in.shape), tensor_in.dtype))


@pytest.mark.needs_torch_tensorrt
def test_torch_tensorrt_route(tiny_checkpoint, tmp_path):
    """GPU hosts: the plan written is the one scored; the caller's module stays FP32 on the CPU."""
    import torch

    from banet.checkpoint import model_from_checkpoint
    from export.torch_tensorrt import TORCH_TENSORRT_OUTPUT, serialize_engine

    model, _ = model_from_checkpoint(tiny_checkpoint)
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    for precision, atol in (("fp32", 1e-3), ("fp16", 5e-2)):
        io = serialize_engine(model, tmp_path / f"{precision}.plan", precision=precision, image_size=64)
        assert io == {"input": "image", "output": TORCH_TENSORRT_OUTPUT, "dtype": "float32",
                      "triton_config_output": "logits"}
        assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
        got = trt_route.engine_runner(tmp_path / f"{precision}.plan", output=io["output"])(x)
        np.testing.assert_allclose(got, want, atol=atol)
