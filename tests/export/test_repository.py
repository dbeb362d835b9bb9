"""export.repository: configs from banet.spec that Triton's own protobuf parses, versioning, refusals."""

from __future__ import annotations

import pytest

from banet import spec
from export.repository import BACKENDS, RepositoryError, write_repository

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] not installed")


def _parse(path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _onnx_file(path, size: int):
    """A minimal ONNX graph with the spec's float32 I/O at ``size`` px (the writer reads its input shape)."""
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info(spec.NETWORK_INPUT.name, TensorProto.FLOAT, ["batch", 3, size, size])
    logits = helper.make_tensor_value_info(spec.NETWORK_OUTPUT.name, TensorProto.FLOAT, ["batch", 1, size, size])
    node = helper.make_node("ReduceMean", [image.name], [logits.name], axes=[1], keepdims=1)
    graph = helper.make_graph([node], "g", [image], [logits])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", spec.ONNX_OPSET)]), path)
    return path


@pytest.fixture()
def model_file(tmp_path):
    return _onnx_file(tmp_path / "model.onnx", spec.IMAGE_SIZE)


@pytest.mark.parametrize("network_io", spec.NETWORK_IO)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_config_parses_with_tritons_protobuf(tmp_path, model_file, backend, network_io):
    from tritonclient.grpc import model_config_pb2 as pb

    from export.serving_graph import graph_io

    repo = tmp_path / "repo"
    version = write_repository(repo, onnx_path=model_file, engine_path=model_file, backend=backend, instance_count=2,
                               network_io=network_io, preprocess_instances=3, postprocess_instances=2)
    tensor_in, tensor_out = (spec.sized(t, spec.IMAGE_SIZE) for t in spec.network_tensors(network_io))
    triton_type = {"float32": pb.TYPE_FP32, "float16": pb.TYPE_FP16, "uint8": pb.TYPE_UINT8}
    configs = {m: _parse(repo / m / "config.pbtxt") for m in
               (spec.ENSEMBLE_MODEL, spec.PREPROCESS_MODEL, spec.NETWORK_MODEL, spec.POSTPROCESS_MODEL)}
    for name, cfg in configs.items():
        assert cfg.name == name and cfg.max_batch_size == spec.MAX_BATCH_SIZE
    net = configs[spec.NETWORK_MODEL]
    assert (net.platform or net.backend) == {"python_onnxruntime": "python", "onnxruntime_onnx": "onnxruntime_onnx",
                                             "tensorrt_plan": "tensorrt_plan"}[backend]
    assert [(t.name, t.data_type, tuple(t.dims)) for t in net.input] == [
        (tensor_in.name, triton_type[tensor_in.dtype], tensor_in.shape)]
    assert [(t.name, t.data_type, tuple(t.dims)) for t in net.output] == [
        (tensor_out.name, triton_type[tensor_out.dtype], tensor_out.shape)]
    if network_io == "uint8":
        assert (tensor_in.dtype, tensor_in.shape, tensor_out.dtype) == ("uint8", (256, 256, 3), "float16")
    assert net.dynamic_batching.max_queue_delay_microseconds > 0
    assert net.instance_group[0].count == 2
    assert net.instance_group[0].kind == (pb.ModelInstanceGroup.KIND_CPU if backend == "python_onnxruntime"
                                          else pb.ModelInstanceGroup.KIND_GPU)
    assert net.model_warmup[0].inputs[tensor_in.name].zero_data
    assert net.model_warmup[0].inputs[tensor_in.name].data_type == triton_type[tensor_in.dtype]
    pre, post = configs[spec.PREPROCESS_MODEL], configs[spec.POSTPROCESS_MODEL]
    assert pre.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert (pre.instance_group[0].count, post.instance_group[0].count) == (3, 2)
    assert [(t.name, t.data_type, tuple(t.dims)) for t in pre.output][0] == (
        tensor_in.name, triton_type[tensor_in.dtype], tensor_in.shape)
    assert (post.input[0].name, post.input[0].data_type) == (tensor_out.name, triton_type[tensor_out.dtype])
    assert pre.parameters["network_io"].string_value == post.parameters["network_io"].string_value == network_io
    assert float(pre.parameters["decode_oversample"].string_value) >= 1
    assert [t.name for t in pre.input] == [spec.ENCODED_IMAGE.name]
    assert pre.input[0].data_type == pb.TYPE_STRING
    assert [t.name for t in post.output] == list(spec.SERVED_OUTPUTS)
    assert {t.name: (t.data_type, tuple(t.dims)) for t in post.output} == {
        spec.MASK_ENCODED.name: (pb.TYPE_STRING, (1,)), spec.AREA.name: (pb.TYPE_INT64, (1,)),
        spec.MASK.name: (pb.TYPE_UINT8, (-1, -1)), spec.BOUNDARY.name: (pb.TYPE_UINT8, (-1, -1))}
    assert [t.optional for t in post.input] == [False, False, True]
    ens = configs[spec.ENSEMBLE_MODEL]
    assert ens.platform == "ensemble"
    assert [s.model_name for s in ens.ensemble_scheduling.step] == [
        spec.PREPROCESS_MODEL, spec.NETWORK_MODEL, spec.POSTPROCESS_MODEL]
    assert {t.name: t.optional for t in ens.input} == {spec.ENCODED_IMAGE.name: False, spec.THRESHOLD.name: True}
    assert {m.input_map[k] for m in ens.ensemble_scheduling.step[1:2] for k in m.input_map} == {"preprocessed_image"}
    assert list(ens.ensemble_scheduling.step[1].input_map) == [tensor_in.name]
    assert [t.name for t in ens.output] == list(spec.SERVED_OUTPUTS)
    assert dict(ens.ensemble_scheduling.step[2].output_map) == {n: n for n in spec.SERVED_OUTPUTS}
    # the raw ensemble: decoded pixels -> banet_pixels (resize only) -> the same network and post-processing
    raw, pixels = _parse(repo / spec.RAW_ENSEMBLE_MODEL / "config.pbtxt"), _parse(repo / spec.PIXELS_MODEL / "config.pbtxt")
    assert raw.platform == "ensemble" and raw.max_batch_size == spec.MAX_BATCH_SIZE
    assert {t.name: (t.data_type, tuple(t.dims), t.optional) for t in raw.input} == {
        spec.IMAGE_PIXELS.name: (pb.TYPE_UINT8, (-1, -1, 3), False), spec.THRESHOLD.name: (pb.TYPE_FP32, (1,), True)}
    assert [t.name for t in raw.output] == list(spec.SERVED_OUTPUTS)
    assert [s.model_name for s in raw.ensemble_scheduling.step] == [
        spec.PIXELS_MODEL, spec.NETWORK_MODEL, spec.POSTPROCESS_MODEL]
    assert [step.input_map == ens_step.input_map and step.output_map == ens_step.output_map
            for step, ens_step in zip(raw.ensemble_scheduling.step[1:], ens.ensemble_scheduling.step[1:])] == [True, True]
    assert [(t.name, t.data_type, tuple(t.dims)) for t in pixels.input] == [(spec.IMAGE_PIXELS.name, pb.TYPE_UINT8, (-1, -1, 3))]
    assert [(t.name, t.data_type, tuple(t.dims)) for t in pixels.output] == [
        (t.name, t.data_type, tuple(t.dims)) for t in pre.output]
    assert pixels.parameters["network_io"].string_value == network_io
    assert pixels.parameters["image_size"].string_value == pre.parameters["image_size"].string_value
    assert pixels.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert (repo / spec.PIXELS_MODEL / "1" / "model.py").is_file() and (repo / spec.RAW_ENSEMBLE_MODEL / "1").is_dir()
    expected_file = "model.plan" if backend == "tensorrt_plan" else "model.onnx"
    assert version == repo / spec.NETWORK_MODEL / "1"
    if backend == "tensorrt_plan" or network_io == "float32":  # copied as it is
        assert (version / expected_file).read_bytes() == model_file.read_bytes()
    else:  # a float32 ONNX file is wrapped into the uint8-I/O serving graph on the way in
        assert graph_io(version / expected_file) == "uint8"
    assert (version / "model.py").exists() == (backend == "python_onnxruntime")
    assert (repo / spec.PREPROCESS_MODEL / "1" / "model.py").is_file()
    assert (repo / spec.ENSEMBLE_MODEL / "1").is_dir()



@pytest.mark.parametrize("backend", ["python_onnxruntime", "tensorrt_plan"])
def test_dynamic_batching_follows_tritons_batcher_guide(tmp_path, model_file, backend):
    """Triton's batcher guide (server docs/user_guide/batcher.md): no preferred_batch_size except for TensorRT
    models with several optimization profiles (ours have one), and a queue delay only where it pays: the
    network step. A lone request then waits once (QUEUE_DELAY_US), not once per ensemble step."""
    from export.repository import QUEUE_DELAY_US

    repo = tmp_path / "repo"
    write_repository(repo, onnx_path=model_file, engine_path=model_file, backend=backend)
    configs = {m: _parse(repo / m / "config.pbtxt") for m in
               (spec.PREPROCESS_MODEL, spec.NETWORK_MODEL, spec.POSTPROCESS_MODEL)}
    for name, cfg in configs.items():
        assert cfg.HasField("dynamic_batching"), name  # batching stays on for every step
        assert list(cfg.dynamic_batching.preferred_batch_size) == [], name
    delays = {name: cfg.dynamic_batching.max_queue_delay_microseconds for name, cfg in configs.items()}
    assert delays == {spec.PREPROCESS_MODEL: 0, spec.NETWORK_MODEL: QUEUE_DELAY_US, spec.POSTPROCESS_MODEL: 0}
    ensemble = _parse(repo / spec.ENSEMBLE_MODEL / "config.pbtxt")
    assert sum(delays[s.model_name] for s in ensemble.ensemble_scheduling.step) == QUEUE_DELAY_US

def test_each_write_adds_a_new_version_and_never_touches_old_ones(tmp_path, model_file):
    repo = tmp_path / "repo"
    first = write_repository(repo, onnx_path=model_file)
    other = _onnx_file(tmp_path / "second.onnx", spec.IMAGE_SIZE)
    import onnx

    model = onnx.load(str(other))
    model.graph.name = "second model"
    onnx.save(model, other)
    second = write_repository(repo, onnx_path=other)
    assert (first.name, second.name) == ("1", "2")
    assert (first / "model.onnx").read_bytes() != (second / "model.onnx").read_bytes()


def test_a_differing_config_is_refused_without_force(tmp_path, model_file):
    repo = tmp_path / "repo"
    write_repository(repo, onnx_path=model_file)
    before = (repo / spec.NETWORK_MODEL / "config.pbtxt").read_text()
    with pytest.raises(RepositoryError, match=r"banet_\w+/config.pbtxt exists with different content"):
        write_repository(repo, onnx_path=model_file, max_batch_size=8)
    assert (repo / spec.NETWORK_MODEL / "config.pbtxt").read_text() == before
    assert sorted(p.name for p in (repo / spec.NETWORK_MODEL).iterdir() if p.is_dir()) == ["1"]  # nothing half-written
    write_repository(repo, onnx_path=model_file, max_batch_size=8, force=True)
    assert _parse(repo / spec.NETWORK_MODEL / "config.pbtxt").max_batch_size == 8


def test_bad_arguments_are_named(tmp_path, model_file):
    with pytest.raises(RepositoryError, match="needs engine_path"):
        write_repository(tmp_path / "r", onnx_path=model_file, backend="tensorrt_plan")
    with pytest.raises(RepositoryError, match="model file not found: .*missing.onnx"):
        write_repository(tmp_path / "r", onnx_path=tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="max_batch_size must be within"):
        write_repository(tmp_path / "r", onnx_path=model_file, max_batch_size=spec.MAX_BATCH_SIZE + 1)
    with pytest.raises(ValueError, match="backend must be one of"):
        write_repository(tmp_path / "r", onnx_path=model_file, backend="pytorch")
    with pytest.raises(ValueError, match="network_io must be one of"):
        write_repository(tmp_path / "r", onnx_path=model_file, network_io="int8")
    with pytest.raises(ValueError, match="decode_oversample must be >= 1"):
        write_repository(tmp_path / "r", onnx_path=model_file, decode_oversample=0.5)
    assert not (tmp_path / "r").exists()


def test_module_cli(tmp_path, model_file, capsys):
    from export.repository import main

    assert main(["--onnx", str(model_file), "--out", str(tmp_path / "r")]) == 0
    assert main(["--out", str(tmp_path / "r"), "--backend", "tensorrt_plan"]) == 1
    assert "needs engine_path" in capsys.readouterr().err


def test_image_size_flows_into_the_configs(tmp_path):
    """A model exported at 128 px: pre-processing resizes to 128 and the network declares 128."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repo = tmp_path / "repo"
    model_file = _onnx_file(tmp_path / "m128.onnx", 128)
    write_repository(repo, onnx_path=model_file)  # the size is read from the ONNX input
    pre = text_format.Parse((repo / spec.PREPROCESS_MODEL / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert pre.parameters["image_size"].string_value == "128"
    assert list(pre.output[0].dims) == [128, 128, 3]
    net = text_format.Parse((repo / spec.NETWORK_MODEL / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert list(net.input[0].dims) == [128, 128, 3]
    assert list(net.output[0].dims) == [1, 128, 128]
    assert list(net.model_warmup[0].inputs[spec.SERVING_INPUT.name].dims) == [128, 128, 3]
    served = tmp_path / "served.onnx"  # the serving graph itself gives its size too
    (repo / spec.NETWORK_MODEL / "1" / "model.onnx").replace(served)
    write_repository(tmp_path / "again", onnx_path=served)
    assert "dims: [ 128, 128, 3 ]" in (tmp_path / "again" / spec.PREPROCESS_MODEL / "config.pbtxt").read_text()
    with pytest.raises(RepositoryError, match="uint8-I/O serving graph; a network_io=float32 repository"):
        write_repository(tmp_path / "float", onnx_path=served, network_io="float32")
    assert not (tmp_path / "float").exists()
    with pytest.raises(RepositoryError, match="different content"):  # same repository, other size
        write_repository(repo, onnx_path=_onnx_file(tmp_path / "m64.onnx", 64))
    with pytest.raises(RepositoryError, match="takes 128x128 images, not the 256"):
        write_repository(tmp_path / "other", onnx_path=model_file, image_size=256)
    (tmp_path / "junk.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(RepositoryError, match="not a readable ONNX model"):
        write_repository(tmp_path / "other", onnx_path=tmp_path / "junk.onnx")


@pytest.mark.needs_data
@pytest.mark.parametrize("name", ["onnx_int8_cpu", "onnx_int8_cpu_serving"])
def test_cpu_int8_graph_is_refused_on_kind_gpu(exported, tmp_path, name):
    """issue 19 defect 8: onnxruntime_onnx (KIND_GPU) would run the x86 CPU INT8 graph's Q/DQ as float ops.

    The writer refuses it (found from the graph: the serving variant has no metadata) and writes nothing;
    the same file is served by python_onnxruntime (KIND_CPU), and the TensorRT INT8 graph is not refused.
    """
    from pathlib import Path

    from export.repository import onnx_int8_target

    folder = Path(exported["directory"])
    by_name = {a["name"]: a for a in exported["artifacts"]}
    cpu = folder / by_name[name]["path"]
    assert onnx_int8_target(cpu) == "onnxruntime"
    assert onnx_int8_target(folder / by_name["onnx_int8_serving"]["path"]) == "tensorrt"
    assert onnx_int8_target(folder / by_name["onnx_fp32"]["path"]) is None
    with pytest.raises(RepositoryError, match="KIND_GPU.*python_onnxruntime"):
        write_repository(tmp_path / "gpu", onnx_path=cpu, backend="onnxruntime_onnx")
    assert not (tmp_path / "gpu").exists(), "nothing written"
    assert write_repository(tmp_path / "cpu", onnx_path=cpu, backend="python_onnxruntime").is_dir()
    assert "KIND_CPU" in (tmp_path / "cpu" / spec.NETWORK_MODEL / "config.pbtxt").read_text()


def test_export_refuses_to_promote_cpu_int8_to_onnxruntime_onnx(tmp_path):
    """The export says so before it starts (the repository writer would refuse after the whole export)."""
    from export.pipeline import ExportConfig

    with pytest.raises(ValueError, match="KIND_GPU"):
        ExportConfig(checkpoint="x.pt", out=str(tmp_path), int8=True, calib_data="x", repository=str(tmp_path / "r"),
                     backend="onnxruntime_onnx", promote="int8")
    ExportConfig(checkpoint="x.pt", out=str(tmp_path), int8=True, calib_data="x", repository=str(tmp_path / "r"),
                 backend="python_onnxruntime", promote="int8")
