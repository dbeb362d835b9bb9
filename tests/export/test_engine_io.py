"""The engine I/O as the one source (issue 19): read from the real builder's network (TensorRT-RTX here),
recorded per engine in the manifest, and used by the Triton config writer, the engine runner's dtype map
and the runtime gate; the INT8 report's layer precisions from a DETAILED build; Torch-TensorRT's input
name. Configs are parsed with Triton's own protobuf (tritonclient's model_config_pb2)."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import pytest

from banet import spec
from export import tensorrt as trt_route

H200 = {"name": "NVIDIA H200", "compute_capability": "9.0", "sm": "SM90"}
RTX_4090 = {"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9", "sm": "SM89"}


def _pb():
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] not installed")
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def _parse(path: Path):
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), _pb().ModelConfig())


def _built(manifest: dict) -> list[dict]:
    return [e for e in manifest["engines"] if e.get("status") == "built"]


# --- one dtype table --------------------------------------------------------------------------------------
@pytest.mark.needs_trt_builder
def test_every_tensorrt_dtype_has_torch_and_triton_types_or_a_clear_refusal(trt_builder):
    """Every member of the real builder's DataType maps to a torch dtype and a Triton type, or (the
    internal Q/DQ precisions) is refused with a clear error, never a KeyError."""
    import torch

    triton_types = set(_pb().DataType.keys())
    internal = {"FP8", "FP4", "INT4", "E8M0"}
    members = [m for m in trt_builder.module.DataType.__members__]
    assert {"UINT8", "HALF", "FLOAT"} <= set(members)
    for name in members:
        if name in internal:
            with pytest.raises(trt_route.EngineBuildError, match=f"TensorRT type {name} has no torch/Triton"):
                trt_route.torch_dtype(name)
            continue
        assert isinstance(trt_route.torch_dtype(name), torch.dtype), name
        assert spec.triton_dtype(trt_route.io_dtype(name)) in triton_types, name
    assert trt_route.torch_dtype(trt_route.dtype_name(trt_builder.module.DataType.UINT8)) == torch.uint8


# --- the manifest's I/O record, from the builder's network -----------------------------------------------
@pytest.mark.needs_trt_builder
@pytest.mark.needs_data
def test_manifest_records_each_engines_io_from_the_builder(exported):
    """Every engine's I/O, as TensorRT-RTX parsed it: dtypes with torch and Triton types, uint8 in and
    float16 out for the serving engines, the profile's batch range, and nothing differing from the spec."""
    import torch

    triton_types = set(_pb().DataType.keys())
    size = exported["image_size"]
    engines = _built(exported)
    assert {e["io"] for e in engines} == {"uint8", "float32"} and len(engines) >= 6
    for engine in engines:
        tensors = engine["tensors"]
        assert [t["mode"] for t in tensors] == ["input", "output"], tensors
        for t in tensors:
            assert isinstance(trt_route.torch_dtype(t["tensorrt_dtype"]), torch.dtype)
            assert t["triton_dtype"] in triton_types and t["shape"][0] == -1
        tensor_in, tensor_out = tensors
        want_in, want_out = spec.network_tensors(engine["io"])
        assert (tensor_in["name"], tensor_out["name"]) == (want_in.name, want_out.name)
        if engine["io"] == "uint8":
            assert (tensor_in["tensorrt_dtype"], tensor_out["tensorrt_dtype"]) == ("UINT8", "HALF"), engine["name"]
            assert tensor_in["shape"] == [-1, size, size, 3]
        else:
            assert tensor_in["tensorrt_dtype"] == "FLOAT" and tensor_in["shape"] == [-1, 3, size, size]
        assert tensor_in["profile"] == {k: list(v) for k, v in engine["profile"].items()}
        assert tensor_in["profile"]["max"][0] == spec.MAX_BATCH_SIZE
        assert engine["io_check"] == []


@pytest.mark.needs_trt_builder
@pytest.mark.needs_data
def test_tensorrt_plan_config_is_written_from_the_engine_record(exported, tmp_path):
    """The banet_model config of a tensorrt_plan repository takes names, types and dims from the engine's
    record: every dim equals the profile's, the batch fits it, the ensemble maps the engine's names."""
    folder = Path(exported["directory"])
    pb = _pb()
    from export.repository import write_repository

    for engine in _built(exported):
        repo = tmp_path / engine["name"]
        write_repository(repo, engine_path=folder / engine["path"], backend="tensorrt_plan",
                         engine_tensors=engine["tensors"])
        net = _parse(repo / spec.NETWORK_MODEL / "config.pbtxt")
        assert net.platform == "tensorrt_plan"
        tensor_in, tensor_out = engine["tensors"]
        profile = tensor_in["profile"]
        (cfg_in,), (cfg_out,) = net.input, net.output
        assert cfg_in.name == tensor_in["name"] and pb.DataType.Name(cfg_in.data_type) == tensor_in["triton_dtype"]
        assert cfg_out.name == tensor_out["name"] and pb.DataType.Name(cfg_out.data_type) == tensor_out["triton_dtype"]
        assert list(cfg_in.dims) == profile["min"][1:] == profile["opt"][1:] == profile["max"][1:]
        assert list(cfg_out.dims) == tensor_out["shape"][1:]
        assert profile["min"][0] <= 1 and net.max_batch_size <= profile["max"][0]
        assert list(net.model_warmup[0].inputs[tensor_in["name"]].dims) == profile["max"][1:]
        ensemble = _parse(repo / spec.ENSEMBLE_MODEL / "config.pbtxt")
        step = next(s for s in ensemble.ensemble_scheduling.step if s.model_name == spec.NETWORK_MODEL)
        assert set(step.input_map) == {tensor_in["name"]} and set(step.output_map) == {tensor_out["name"]}


@pytest.mark.needs_trt_builder
@pytest.mark.needs_data
def test_repository_cli_reads_the_engine_size_from_the_manifest_or_refuses(exported, tmp_path, capsys):
    """python -m export.repository --backend tensorrt_plan --engine X: a 64 px engine gets 64 px dims
    (read from the export's manifest beside it); an engine with no record is refused, nothing written."""
    from export.repository import main

    folder = Path(exported["directory"])
    size = exported["image_size"]
    assert size != spec.IMAGE_SIZE  # otherwise a silent default would pass
    serving = next(e for e in _built(exported) if e["io"] == "uint8" and e["precision"] == "fp16")
    # the name of the Triton plan that the entry's trtexec command writes from the same ONNX file
    triton_plan = serving.get("triton_plan", serving["path"].replace("_rtx.plan", ".plan"))
    for name in (serving["path"], triton_plan):
        if not (folder / name).exists():
            shutil.copyfile(folder / serving["path"], tmp_path / name)
            engine = tmp_path / name
            shutil.copyfile(folder / "manifest.json", tmp_path / "manifest.json")
        else:
            engine = folder / name
        repo = tmp_path / f"repo_{name}"
        assert main(["--backend", "tensorrt_plan", "--engine", str(engine), "--out", str(repo)]) == 0
        net = _parse(repo / spec.NETWORK_MODEL / "config.pbtxt")
        assert list(net.input[0].dims) == [size, size, 3] and net.input[0].name == spec.SERVING_INPUT.name
        pre = _parse(repo / spec.PREPROCESS_MODEL / "config.pbtxt")
        assert pre.parameters["image_size"].string_value == str(size)

    lone = tmp_path / "lone" / "model.plan"
    lone.parent.mkdir()
    shutil.copyfile(folder / serving["path"], lone)
    capsys.readouterr()
    assert main(["--backend", "tensorrt_plan", "--engine", str(lone), "--out", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "cannot tell the image size" in err and "--image-size" in err, err
    assert not (tmp_path / "none").exists()
    # explicit sizes that contradict the record are refused too
    assert main(["--backend", "tensorrt_plan", "--engine", str(folder / serving["path"]), "--image-size",
                 str(spec.IMAGE_SIZE), "--out", str(tmp_path / "wrong")]) == 1
    assert f"takes {size}x{size} images" in capsys.readouterr().err
    assert not (tmp_path / "wrong").exists()


def test_an_engine_record_that_does_not_fit_the_ensemble_is_refused(tmp_path):
    """A Torch-TensorRT-like plan (input x, output output0) is refused with the names, not written."""
    from export.repository import RepositoryError, write_repository

    plan = tmp_path / "model.plan"
    plan.write_bytes(b"engine bytes")
    tensors = [{"name": "x", "mode": "input", "tensorrt_dtype": "FLOAT", "dtype": "float32",
                "triton_dtype": "TYPE_FP32", "shape": [-1, 3, 64, 64],
                "profile": {"min": [1, 3, 64, 64], "opt": [8, 3, 64, 64], "max": [32, 3, 64, 64]}},
               {"name": "output0", "mode": "output", "tensorrt_dtype": "FLOAT", "dtype": "float32",
                "triton_dtype": "TYPE_FP32", "shape": [-1, 1, 64, 64]}]
    with pytest.raises(RepositoryError, match="input is named 'x', expected 'image'.*output is named 'output0'"):
        write_repository(tmp_path / "repo", engine_path=plan, backend="tensorrt_plan", engine_tensors=tensors)
    assert not (tmp_path / "repo").exists()
    # the engine runner's check reports the same (and the runner runs with the engine's names)
    problems = trt_route.check_engine_io(tensors, "float32")
    assert problems == ["input is named 'x', expected 'image'", "output is named 'output0', expected 'logits'"]
    assert trt_route.check_engine_io(tensors, "float32", output="output0") == ["input is named 'x', expected 'image'"]


# --- can an engine run on the visible GPU? ----------------------------------------------------------------
def test_runtime_gate_rules(monkeypatch):
    rtx = trt_route.Builder("tensorrt_rtx", types.SimpleNamespace(Runtime=type("R", (), {"engine_host_code_allowed": False})),
                            "tensorrt_rtx_bindings", "1.7")
    dc = trt_route.Builder("tensorrt", types.SimpleNamespace(Runtime=type("R", (), {"engine_host_code_allowed": False})),
                           "tensorrt", "10.13")
    targets = list(trt_route.RTX_DEFAULT_TARGETS)
    assert trt_route.engine_runnable(rtx, targets=targets, device=RTX_4090)[0]
    ok, why = trt_route.engine_runnable(rtx, targets=targets, device=H200)
    assert not ok and "SM90" in why and "no SM90 target" in why
    monkeypatch.setattr(trt_route, "gpu", lambda: None)
    assert trt_route.engine_runnable(rtx, targets=targets) == (False, "no CUDA GPU is visible")
    assert trt_route.engine_runnable(dc, targets=["SM90"], version_compatible=True, device=H200)[0]
    ok, why = trt_route.engine_runnable(dc, targets=["SM80"], device=H200)
    assert not ok and "built for SM80" in why
    no_host_code = trt_route.Builder("tensorrt", types.SimpleNamespace(Runtime=object), "tensorrt", "8.5")
    ok, why = trt_route.engine_runnable(no_host_code, targets=["SM90"], version_compatible=True, device=H200)
    assert not ok and "host code" in why
    assert trt_route.engine_runnable(no_host_code, targets=["SM90"], device=H200)[0]


@pytest.mark.needs_trt_builder
@pytest.mark.needs_data
@pytest.mark.filterwarnings("ignore:Use del obj instead:DeprecationWarning")  # TensorRT-RTX's Runtime on collection
def test_runtime_allows_host_code_when_deserializing(exported, trt_builder):
    """The trt.Runtime that deserializes an engine has engine_host_code_allowed = True (version-compatible
    plans embed the lean runtime as host code; Triton's tensorrt_backend src/loader.cc sets it too)."""
    seen = []

    class RecordingRuntime(trt_builder.module.Runtime):
        def deserialize_cuda_engine(self, data):
            seen.append(self.engine_host_code_allowed)
            return super().deserialize_cuda_engine(data)

    module = types.ModuleType(trt_builder.module.__name__)
    module.__dict__.update(vars(trt_builder.module))
    module.Runtime = RecordingRuntime
    builder = trt_route.Builder(trt_builder.kind, module, trt_builder.module_name, trt_builder.version)
    plan = Path(exported["directory"]) / _built(exported)[0]["path"]
    try:
        trt_route._runtime_engine(plan, builder)
    except trt_route.EngineBuildError:
        pass  # no GPU here: the real runtime cannot deserialize; what it was told is what is checked
    assert seen == [True]


def _simulated_gpu_export(real_tiny_checkpoint, kvasir, tmp_path, monkeypatch, device, **kwargs):
    from export.pipeline import ExportConfig, run_export

    monkeypatch.setattr(trt_route, "gpu", lambda: device)
    config = ExportConfig(checkpoint=str(real_tiny_checkpoint), out=str(tmp_path / "exports"), image_size=64,
                          parity_data=f"{kvasir}:test", parity_count=4, repository=str(tmp_path / "repo"),
                          force_promote=True, **kwargs)  # the tiny model's 64 px gate is not the point here
    return run_export(config)


@pytest.mark.needs_trt_builder
@pytest.mark.needs_data
def test_export_on_an_h200_reports_engines_it_cannot_run_and_keeps_everything(real_tiny_checkpoint, kvasir,
                                                                             trt_builder, tmp_path, monkeypatch):
    """A simulated H200 (SM 9.0) whose runtime cannot allow host code: every TensorRT-RTX engine is built,
    reported as not runnable with the reason, never deserialized; every artifact stays and the
    repository is written."""
    if trt_builder.for_triton:
        pytest.skip("the data-center TensorRT builds for the visible GPU; this simulates TensorRT-RTX engines")
    monkeypatch.setattr(trt_route, "runtime_allows_host_code", lambda builder: False, raising=False)
    monkeypatch.setattr(trt_route, "engine_runner", lambda *a, **k: pytest.fail("a non-runnable engine was loaded"))
    manifest = _simulated_gpu_export(real_tiny_checkpoint, kvasir, tmp_path, monkeypatch, H200,
                                     version_compatible=True)
    folder = Path(manifest["directory"])
    engines = [e for e in manifest["engines"] if "source" in e]
    assert len(engines) == 2 and all(e["status"] == "built" for e in engines)
    for engine in engines:
        assert engine["runtime"]["runnable"] is False and engine["runtime"]["gpu"] == H200
        assert "SM90" in engine["runtime"]["reason"] and engine["gate"].startswith("not run: ")
        assert (folder / engine["path"]).stat().st_size == engine["bytes"]
    for art in manifest["artifacts"]:
        assert (folder / art["path"]).is_file() and art["parity"]["images"] == 4, art  # scored, kept
    assert manifest["promoted"]["artifact"] == "onnx_fp32_serving"
    assert (tmp_path / "repo" / spec.NETWORK_MODEL / "1" / "model.onnx").is_file()
    assert json.loads((folder / "manifest.json").read_text())["engines"][0]["runtime"]["runnable"] is False


@pytest.mark.needs_trt_builder
@pytest.mark.needs_data
def test_an_engine_that_fails_to_run_is_reported_and_the_export_goes_on(real_tiny_checkpoint, kvasir,
                                                                       trt_builder, tmp_path, monkeypatch):
    """A GPU the engines were built for (SM 8.9), but the engine fails when loaded (as the missing UINT8
    dtype did): reported per engine with the reason, every artifact kept, the repository written."""
    if trt_builder.for_triton:
        pytest.skip("simulates TensorRT-RTX engines on an RTX GPU")

    def broken_runner(path, *args, **kwargs):
        raise KeyError("UINT8") if "serving" in Path(path).name else trt_route.EngineBuildError("no CUDA here")

    monkeypatch.setattr(trt_route, "engine_runner", broken_runner)
    manifest = _simulated_gpu_export(real_tiny_checkpoint, kvasir, tmp_path, monkeypatch, RTX_4090)
    folder = Path(manifest["directory"])
    engines = {e["io"]: e for e in manifest["engines"] if "source" in e}
    assert all(e["runtime"]["runnable"] for e in engines.values())
    assert engines["uint8"]["gate"] == "fail" and "KeyError: 'UINT8'" in engines["uint8"]["error"]
    assert engines["float32"]["gate"] == "fail" and "no CUDA here" in engines["float32"]["parity"]["reasons"][0]
    assert all((folder / item["path"]).is_file() for item in [*manifest["artifacts"], *engines.values()])
    assert manifest["promoted"]["artifact"] == "onnx_fp32_serving"


# --- the INT8 report: layers by precision from a DETAILED build --------------------------------------------
@pytest.mark.needs_trt_builder
@pytest.mark.needs_data
def test_detailed_build_gives_layers_by_precision(exported):
    """Every build sets ProfilingVerbosity.DETAILED, so TensorRT-RTX's build reports each engine layer's
    output precision (with the default LAYER_NAMES_ONLY it reports none)."""
    engines = {e["name"]: e for e in _built(exported)}
    for engine in engines.values():
        layers = engine["layers"]
        assert layers and layers["layers"] > 0 and sum(layers["by_output_precision"].values()) > 0, engine["name"]
        assert "unknown" not in layers["by_output_precision"], layers
    fp16 = next(e for e in engines.values() if e["precision"] == "fp16" and e["io"] == "float32")
    fp32 = next(e for e in engines.values() if e["precision"] == "fp32" and e["io"] == "float32")
    assert "HALF" in fp16["layers"]["by_output_precision"]
    assert "HALF" not in fp32["layers"]["by_output_precision"]
    from references.precision.tensorrt_builds import _engine_cells  # the report's "engine layers by output precision" column

    assert "HALF" in _engine_cells(fp16)[-1] and _engine_cells(fp32)[-1].startswith(f"{fp32['layers']['layers']}: ")


TENSORRT10_INSPECTOR = {  # the TensorRT 10 JSON form (layer tensors with "Format/Datatype", "Bindings")
    "Layers": [
        {"Name": "conv1", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "image", "Dimensions": [8, 3, 64, 64], "Format/Datatype": "Row major linear FP32"}],
         "Outputs": [{"Name": "c1", "Dimensions": [8, 32, 32, 32],
                      "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
        {"Name": "conv2", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "c1", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}],
         "Outputs": [{"Name": "c2", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}]},
        {"Name": "out", "LayerType": "Reformat", "Inputs": [], "Outputs": [{"Name": "logits", "Format/Datatype": "Float"}]},
    ],
    "Bindings": ["image", "logits"],
}
TENSORRT11_INSPECTOR = {  # TensorRT 11 / TensorRT-RTX: "Datatype" beside "Format", "I/O Tensors" objects
    "Layers": [
        {"Name": "cast", "LayerType": "kgen",
         "Inputs": [{"Name": "image_u8", "Dimensions": [-1, 64, 64, 3], "Datatype": "UInt8", "Format": "(Linear) Row major linear format"}],
         "Outputs": [{"Name": "x", "Dimensions": [-1, 3, 64, 64], "Datatype": "Half", "Format": "(NHWC) Channel major format"}]},
        {"Name": "conv", "LayerType": "correlation", "Inputs": [],
         "Outputs": [{"Name": "p", "Datatype": "Half", "Format": "(Linear) Row major linear format"}]},
        {"Name": "shape", "LayerType": "shape_call", "Inputs": [], "Outputs": []},
    ],
    "I/O Tensors": [{"Name": "image_u8", "IOMode": "Input", "DataType": "UInt8"},
                    {"Name": "probability", "IOMode": "Output", "DataType": "Half"}],
}


def test_inspector_json_of_tensorrt_10_and_11():
    ten = trt_route.layer_precisions(json.dumps(TENSORRT10_INSPECTOR))
    assert ten["form"] == "tensorrt10" and ten["by_output_precision"] == {"HALF": 1, "INT8": 1, "FLOAT": 1}
    assert ten["io_tensors"] == ["image", "logits"]
    eleven = trt_route.layer_precisions(TENSORRT11_INSPECTOR)
    assert eleven["form"] == "tensorrt11" and eleven["by_output_precision"] == {"HALF": 2}
    assert eleven["layers"] == 3 and eleven["io_tensors"] == ["image_u8", "probability"]
    names_only = trt_route.layer_precisions({"Layers": ["conv1", "conv2"], "Bindings": ["image", "logits"]})
    assert names_only["layers"] == 2 and names_only["names_only"] == 2 and names_only["by_output_precision"] == {}


# --- Torch-TensorRT: the engine input is named after the forward argument ---------------------------------
def test_torch_tensorrt_program_input_is_named_image(tiny_checkpoint):
    """Torch-TensorRT names engine inputs after the exported program's placeholder (pytorch/TensorRT
    v2.13.0 py/torch_tensorrt/dynamo/conversion/_TRTInterpreter.py, placeholder()): it must be `image`."""
    import torch

    from banet.checkpoint import model_from_checkpoint
    from export.torch_tensorrt import export_program

    model, _ = model_from_checkpoint(tiny_checkpoint)
    program = export_program(model, torch.float32, 64, device="cpu")
    assert list(program.graph_signature.user_inputs) == [spec.NETWORK_INPUT.name]
    placeholders = [n.name for n in program.graph.nodes if n.op == "placeholder"]
    assert spec.NETWORK_INPUT.name in placeholders
