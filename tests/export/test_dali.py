"""export/dali.py: the DALI pre-processing model. Its CPU pipeline runs wherever nvidia-dali is installed
(``pip install '.[dali]'``; ``make install`` and so CI install it); the GPU pipeline is only
serialized here (no GPU, and Triton's dali backend ships in NVIDIA's container only)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from banet import processing, spec
from export import dali
from export.repository import RepositoryError, write_repository

needs_dali = pytest.mark.needs_dali  # a skip on a user's machine without it, a failure under CI (tests/conftest.py)


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
def test_dali_repository_serializes_the_pipeline_and_its_configs_parse(tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    repo = tmp_path / "repo"
    write_repository(repo, onnx_path=_float_onnx(tmp_path / "m.onnx", 64), preprocess="dali", preprocess_instances=2)
    pipeline = repo / spec.PREPROCESS_MODEL / "1" / dali.PIPELINE_FILE
    assert pipeline.stat().st_size > 1000 and not (repo / spec.PREPROCESS_MODEL / "1" / "model.py").exists()
    pre = text_format.Parse((repo / spec.PREPROCESS_MODEL / "config.pbtxt").read_text(), pb.ModelConfig())
    assert pre.backend == "dali" and pre.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert pre.instance_group[0].count == 2
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
