"""export/dali.py: the DALI pre-processing model. Its CPU pipeline runs wherever nvidia-dali is installed
(``pip install '.[dali]'``; ``make install`` and so CI install it); the GPU pipeline is only defined and
serialized here (no GPU, and Triton's dali backend ships in NVIDIA's container only), with the executor
settings Triton's backend creates pipelines with."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from banet import processing, spec
from export import dali
from export.repository import RepositoryError, write_repository

needs_dali = pytest.mark.needs_dali  # a skip on a user's machine without it, a failure under CI (tests/conftest.py)

# How Triton creates every DALI pipeline, read from the sources (the reference for these tests, independent of
# export/dali.py): dali_backend src/dali_executor/dali_pipeline.h CreatePipeline calls
# daliCreatePipeline(handle, serialized, len, max_batch_size, num_threads, device_id, 0, 1, 0, 0, 0), i.e. not
# separated, prefetch queue depth 1; DALI dali/c_api/c_api.cc forwards daliCreatePipeline to
# daliCreatePipeline2(..., pipelined_execution=1, async_execution=1, ...): DALI_EXEC_IS_ASYNC | _PIPELINED, never
# DALI_EXEC_IS_DYNAMIC. These flags are passed when the pipeline is created, so they override the definition's.
TRITON_EXECUTOR = {"exec_async": True, "exec_pipelined": True, "exec_dynamic": False, "prefetch_queue_depth": 1}


@pytest.fixture
def tritons_executor(monkeypatch):
    """Every pipeline defined through ``nvidia.dali.pipeline_def`` gets Triton's executor settings, whatever the
    definition asks for (as daliCreatePipeline's arguments win over the serialized ones on the server)."""
    import nvidia.dali as dali_package

    original = dali_package.pipeline_def

    def triton_pipeline_def(fn=None, **kwargs):
        kwargs.update(TRITON_EXECUTOR)
        return original(fn, **kwargs) if fn is not None else original(**kwargs)

    monkeypatch.setattr(dali_package, "pipeline_def", triton_pipeline_def)
    return TRITON_EXECUTOR


def _float_onnx(path, size):
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info(spec.NETWORK_INPUT.name, TensorProto.FLOAT, ["batch", 3, size, size])
    logits = helper.make_tensor_value_info(spec.NETWORK_OUTPUT.name, TensorProto.FLOAT, ["batch", 1, size, size])
    graph = helper.make_graph([helper.make_node("ReduceMean", [image.name], [logits.name], axes=[1], keepdims=1)],
                              "g", [image], [logits])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", spec.ONNX_OPSET)]), path)
    return path


def test_without_dali_the_dali_repository_is_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(dali, "available", lambda: False)
    with pytest.raises(RepositoryError, match=r"needs nvidia.dali .*pip install '.\[dali\]'"):
        write_repository(tmp_path / "repo", onnx_path=_float_onnx(tmp_path / "m.onnx", 64), preprocess="dali")
    assert not (tmp_path / "repo").exists()
    with pytest.raises(ValueError, match="needs network_io='uint8'"):
        write_repository(tmp_path / "repo", onnx_path=tmp_path / "m.onnx", preprocess="dali", network_io="float32")


@needs_dali
@pytest.mark.needs_data
def test_dali_cpu_pipeline_matches_the_python_path(kvasir_test_pairs, data_root):
    """Kvasir-SEG images (incl. the 1920x1072 frame) and an EXIF-rotated JPEG: DALI's decode + antialiased
    linear resize gives the Python path's uint8 network input within a fraction of a grey level."""
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(kvasir_test_pairs[0][0]).save(rotated, format="JPEG", quality=92, exif=exif.tobytes())
    encoded = [p.read_bytes() for p, _ in kvasir_test_pairs[:6]]
    encoded += [(data_root / "kvasir-seg" / "images" / "cjyzul1qggwwj07216mhiv5sy.jpg").read_bytes(), rotated.getvalue()]
    images, sizes = dali.run_cpu(encoded, 128)
    for data, image, size in zip(encoded, images, sizes):
        full = processing.decode_image(data)
        assert size == full.shape[:2]
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        diff = np.abs(image.astype(int) - processing.resize_image(full, 128))
        assert diff.mean() < 0.5, diff.mean()


@needs_dali
def test_served_gpu_pipeline_is_defined_with_tritons_executor(tritons_executor):
    """The served variant (nvJPEG ``mixed`` decode) under the executor Triton uses: a graph that reads the GPU
    decoder's output shape on the CPU is refused by DALI ("This pipeline doesn't support transition from GPU to
    CPU"); the size must come from the encoded stream on the CPU."""
    pipe = dali.build_pipeline(64, device="gpu")
    assert not pipe.exec_dynamic and pipe.exec_async and pipe.exec_pipelined and pipe.prefetch_queue_depth == 1
    serialized = pipe.serialize()
    assert b"PeekImageShape" in serialized and b"mixed" in serialized


@needs_dali
def test_dali_repository_ships_dali_py_that_the_backend_autoserializes(tmp_path, tritons_executor):
    """The repository carries ``dali.py`` (no ``model.dali`` written by this machine's DALI 2.4): the backend
    imports it and calls ``invoke_autoserialize`` with the container's DALI (dali_backend
    ``src/model_provider/model_provider.h``). Done here the same way, under Triton's executor."""
    import importlib.util
    import sys

    from google.protobuf import text_format
    from nvidia.dali._utils.autoserialize import invoke_autoserialize
    from tritonclient.grpc import model_config_pb2 as pb

    repo = tmp_path / "repo"
    write_repository(repo, onnx_path=_float_onnx(tmp_path / "m.onnx", 64), preprocess="dali", preprocess_instances=2,
                     max_batch_size=16)
    version = repo / spec.PREPROCESS_MODEL / "1"
    assert sorted(p.name for p in version.iterdir()) == [dali.AUTOSERIALIZED_FILE]
    source = (version / dali.AUTOSERIALIZED_FILE).read_text()
    assert "import banet" not in source and "from banet" not in source  # the backend's python3 has no banet
    found = importlib.util.spec_from_file_location("autoserialize_mod", version / dali.AUTOSERIALIZED_FILE)
    module = importlib.util.module_from_spec(found)
    sys.modules["autoserialize_mod"] = module
    try:
        found.loader.exec_module(module)
        invoke_autoserialize(module, str(tmp_path / "model.dali"))
    finally:
        del sys.modules["autoserialize_mod"]
    assert (module.IMAGE_SIZE, module.MAX_BATCH_SIZE, module.ENCODED_NAME) == (64, 16, spec.ENCODED_IMAGE.name)
    assert (tmp_path / "model.dali").stat().st_size > 1000

    pre = text_format.Parse((repo / spec.PREPROCESS_MODEL / "config.pbtxt").read_text(), pb.ModelConfig())
    assert pre.backend == "dali" and pre.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert pre.instance_group[0].count == 2 and pre.max_batch_size == 16
    assert pre.HasField("dynamic_batching") and pre.dynamic_batching.max_queue_delay_microseconds == 0
    assert [(t.name, t.data_type, list(t.dims), t.allow_ragged_batch) for t in pre.input] == [
        (spec.ENCODED_IMAGE.name, pb.TYPE_UINT8, [-1], True)]
    assert [(t.name, t.data_type, list(t.dims)) for t in pre.output] == [
        (spec.SERVING_INPUT.name, pb.TYPE_UINT8, [64, 64, 3]), (spec.ORIGINAL_SIZE.name, pb.TYPE_INT32, [2])]
    ens = text_format.Parse((repo / spec.ENSEMBLE_MODEL / "config.pbtxt").read_text(), pb.ModelConfig())
    assert (ens.input[0].name, ens.input[0].data_type, list(ens.input[0].dims)) == (spec.ENCODED_IMAGE.name, pb.TYPE_UINT8, [-1])
    # the CPU variant of the same graph deserializes and runs here; the GPU one needs a CUDA device
    from nvidia.dali import Pipeline

    cpu = dali.write_pipeline(tmp_path / "cpu.dali", 64, device="cpu")
    Pipeline.deserialize(filename=str(cpu)).build()


@needs_dali
def test_a_stale_model_dali_is_refused_then_replaced_with_force(tmp_path):
    """Triton's backend loads ``model.dali`` before ``dali.py`` (dali_backend ``src/dali_model.h``): one left by an
    earlier export would shadow the shipped ``dali.py``."""
    onnx_path = _float_onnx(tmp_path / "m.onnx", 64)
    stale = tmp_path / "repo" / spec.PREPROCESS_MODEL / "1" / dali.PIPELINE_FILE
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"serialized by another DALI")
    with pytest.raises(RepositoryError, match="would be loaded by Triton instead of dali.py"):
        write_repository(tmp_path / "repo", onnx_path=onnx_path, preprocess="dali")
    assert stale.exists() and not (tmp_path / "repo" / spec.NETWORK_MODEL).exists()
    write_repository(tmp_path / "repo", onnx_path=onnx_path, preprocess="dali", force=True)
    assert not stale.exists() and (stale.parent / dali.AUTOSERIALIZED_FILE).is_file()


@needs_dali
def test_a_pipeline_triton_would_refuse_is_refused_before_writing(tmp_path, monkeypatch):
    """The export's own gate: the pre-issue graph (the size read from the GPU decoder's output) in the template
    is refused with DALI's reason, and the repository is not created."""
    text = dali.template_path().read_text()
    old_graph = text.replace("shape = peek_image_shape(encoded, dtype=types.INT32, adjust_orientation=True)",
                             "shape = images.shape(dtype=types.INT32)")
    assert old_graph != text
    (tmp_path / "dali.py").write_text(old_graph)
    monkeypatch.setattr(dali, "template_path", lambda: tmp_path / "dali.py")
    with pytest.raises(RepositoryError, match="transition from GPU to CPU"):
        write_repository(tmp_path / "repo", onnx_path=_float_onnx(tmp_path / "m.onnx", 64), preprocess="dali")
    assert not (tmp_path / "repo").exists()
