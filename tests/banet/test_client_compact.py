"""Compact responses and the raw-pixel ensemble through the client, on the real tritonserver (beside banet's
serving side, like test_client.py): the encoded mask is the mask, only the named outputs are computed, decoded
pixels give the masks of their PNG, arrays go to the ensemble the client was told to use, and Triton's ensemble
contract that the request parameter rests on."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from banet import mask_codec, processing, spec
from triton_helpers import KVASIR_LARGE

pytestmark = [pytest.mark.needs_triton]


def _infer(segmenter, model: str, tensor, outputs, parameter: str | None = None, threshold: float | None = None):
    import tritonclient.grpc as grpcclient

    inputs = [tensor]
    if threshold is not None:
        given = grpcclient.InferInput(spec.THRESHOLD.name, [1, 1], "FP32")
        given.set_data_from_numpy(np.full((1, 1), threshold, np.float32))
        inputs.append(given)
    return segmenter.client.infer(model, inputs, outputs=[grpcclient.InferRequestedOutput(n) for n in outputs],
                                  parameters=None if parameter is None else {spec.OUTPUTS_PARAMETER: parameter},
                                  client_timeout=120)


def _encoded(data: bytes):
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput(spec.ENCODED_IMAGE.name, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.asarray([[data]], dtype=object))
    return tensor


def _pixels(array: np.ndarray):
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput(spec.IMAGE_PIXELS.name, [1, *array.shape], "UINT8")
    tensor.set_data_from_numpy(array[None])
    return tensor


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _kvasir(data_root, kvasir_test_pairs) -> list:
    return [p for p, _ in kvasir_test_pairs[:3]] + [data_root / "kvasir-seg" / "images" / f"{KVASIR_LARGE}.jpg"]


@pytest.mark.needs_data
def test_encoded_mask_is_the_mask_tensor_of_the_same_request(segmenter, data_root, kvasir_test_pairs, torch_probability):
    """One request asks for all four outputs: MASK_ENCODED decodes to MASK exactly, AREA counts it and BOUNDARY
    is processing.boundary of it, on real Kvasir-SEG images (1920x1072 incl.) at thresholds where the masks have
    real contours; the client's compact and full modes give the same masks and boundaries."""
    from banet.client import TritonSegmenter

    full = TritonSegmenter(segmenter.url, outputs="full", timeout_s=120)
    try:
        for path in _kvasir(data_root, kvasir_test_pairs):
            image = processing.load_image(path)
            threshold = float(np.median(torch_probability(image)))  # half of the image foreground
            result = _infer(segmenter, spec.ENSEMBLE_MODEL, _encoded(path.read_bytes()), spec.SERVED_OUTPUTS,
                            ",".join(spec.SERVED_OUTPUTS), threshold)
            mask, boundary = result.as_numpy(spec.MASK.name)[0], result.as_numpy(spec.BOUNDARY.name)[0]
            encoded = result.as_numpy(spec.MASK_ENCODED.name).reshape(-1)[0]
            assert mask.shape == image.shape[:2] and 0 < processing.mask_area(mask) < mask.size, path.name
            np.testing.assert_array_equal(mask_codec.decode_mask(encoded), mask, err_msg=path.name)
            assert int(result.as_numpy(spec.AREA.name)[0, 0]) == processing.mask_area(mask)
            np.testing.assert_array_equal(boundary, processing.boundary(mask))
            assert len(encoded) <= 0.01 * (mask.nbytes + boundary.nbytes), (path.name, len(encoded))
            compact, tensors = segmenter.predict(path, threshold=threshold), full.predict(path, threshold=threshold)
            np.testing.assert_array_equal(compact.mask, mask)
            np.testing.assert_array_equal(tensors.mask, mask)
            np.testing.assert_array_equal(compact.boundary, tensors.boundary)  # derived here == the server's
            assert compact.area == tensors.area == processing.mask_area(mask)
    finally:
        full.close()


def test_only_the_named_outputs_are_computed_and_sent(segmenter):
    image = np.random.default_rng(4).integers(0, 256, (40, 56, 3), np.uint8)
    data = _png(image)

    def sent(parameter):
        result = _infer(segmenter, spec.ENSEMBLE_MODEL, _encoded(data), spec.SERVED_OUTPUTS, parameter)
        return sorted(o.name for o in result.get_response().outputs)

    assert sent(None) == sorted(spec.COMPACT_OUTPUTS)  # the default: no MASK / BOUNDARY tensors at all
    assert sent("MASK") == ["MASK"]
    assert sent(" BOUNDARY , AREA ") == ["AREA", "BOUNDARY"]
    assert sent(",".join(spec.FULL_OUTPUTS)) == sorted(spec.FULL_OUTPUTS)
    # a direct call of the post-processing model gets exactly what it requested (no ensemble in between)
    from tritonclient.utils import InferenceServerException

    for bad, reason in (("MASK,NOPE", r"unknown output\(s\) \['NOPE'\]"), (",", "names no output")):
        with pytest.raises(InferenceServerException, match=reason):
            _infer(segmenter, spec.ENSEMBLE_MODEL, _encoded(data), spec.SERVED_OUTPUTS, bad)
    assert segmenter.predict(image).mask.shape == (40, 56)  # the server keeps serving


@pytest.mark.needs_data
def test_raw_pixels_give_the_masks_of_their_png(segmenter, data_root, kvasir_test_pairs):
    """Decoded frames go to banet_raw (no PNG encode, no decode) and come back with the masks the same pixels
    get as a PNG through banet, at their own size; single, concurrent and batched alike."""
    from banet.client import TritonSegmenter

    assert segmenter.raw_available()
    png_only = TritonSegmenter(segmenter.url, raw_model=None, timeout_s=120)
    try:
        images = [processing.load_image(p) for p in _kvasir(data_root, kvasir_test_pairs)]
        singles = [segmenter.predict(image) for image in images]
        for image, pred in zip(images, singles):
            via_png = png_only.predict(image)
            assert pred.mask.shape == image.shape[:2]
            np.testing.assert_array_equal(pred.mask, via_png.mask)
            assert 0 < pred.area == via_png.area
        with ThreadPoolExecutor(max_workers=4) as pool:
            concurrent = list(pool.map(segmenter.predict, images))
        for one, conc in zip(singles, concurrent):
            np.testing.assert_array_equal(one.mask, conc.mask)
        gray = images[0][..., 1]
        np.testing.assert_array_equal(segmenter.predict(gray).mask, png_only.predict(gray).mask)
        same = [images[0], images[0][::-1].copy()]
        batch = segmenter.predict_batch(same)
        for image, pred in zip(same, batch):
            np.testing.assert_array_equal(pred.mask, png_only.predict(image).mask)
    finally:
        png_only.close()


def test_bad_pixels_get_their_own_error(segmenter):
    from tritonclient.utils import InferenceServerException

    for array, reason in ((np.zeros((0, 5, 3), np.uint8), "no pixels|shape"),
                          (np.zeros((4, 5, 4), np.uint8), "dims|shape"),
                          (np.zeros((4, 5, 3), np.float32), "data-type|datatype|UINT8")):
        import tritonclient.grpc as grpcclient

        tensor = grpcclient.InferInput(spec.IMAGE_PIXELS.name, [1, *array.shape],
                                       "UINT8" if array.dtype == np.uint8 else "FP32")
        tensor.set_data_from_numpy(array[None])
        with pytest.raises(InferenceServerException, match=reason):
            _infer(segmenter, spec.RAW_ENSEMBLE_MODEL, tensor, spec.COMPACT_OUTPUTS)
    ok = np.full((3, 2, 3), 200, np.uint8)
    assert segmenter.predict(ok).mask.shape == (3, 2)


ECHO_CONFIG = """name: "echo"
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "A" data_type: TYPE_INT32 dims: [ 1 ] }, { name: "B" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""
ECHO_MODEL = '''import json
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        # what the step was asked for, told back as the error message (the one channel that needs no output)
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError(json.dumps(
            {"requested": sorted(r.requested_output_names()), "parameters": json.loads(r.parameters())})))
            for r in requests]
'''
ENSEMBLE_CONFIG = """name: "echo_ensemble"
platform: "ensemble"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "A" data_type: TYPE_INT32 dims: [ 1 ] }, { name: "B" data_type: TYPE_INT32 dims: [ 1 ] } ]
ensemble_scheduling { step [ { model_name: "echo" model_version: -1 input_map { key: "X" value: "X" }
  output_map { key: "A" value: "A" } output_map { key: "B" value: "B" } } ] }
"""


def test_tritons_ensemble_requests_every_mapped_output_and_forwards_parameters(tmp_path):
    """What banet.spec.OUTPUTS_PARAMETER rests on, seen on the real server: a step inside an ensemble is asked
    for all the outputs in its output_map whatever the client requested (core ensemble_scheduler.cc,
    AddOriginalRequestedOutput per mapped output), while called directly it is asked for what the client named;
    request parameters reach the step (SetParameters)."""
    import json

    import tritonclient.grpc as grpcclient

    from banet.client import TritonSegmenter
    from triton_helpers import start_server

    for name, text in (("echo", ECHO_CONFIG), ("echo_ensemble", ENSEMBLE_CONFIG)):
        (tmp_path / name / "1").mkdir(parents=True)
        (tmp_path / name / "config.pbtxt").write_text(text)
    (tmp_path / "echo" / "1" / "model.py").write_text(ECHO_MODEL)
    server = start_server(tmp_path)
    client = TritonSegmenter(server.grpc_url, model="echo_ensemble").client
    try:
        from tritonclient.utils import InferenceServerException

        x = grpcclient.InferInput("X", [1], "INT32")
        x.set_data_from_numpy(np.zeros(1, np.int32))
        for model, want in (("echo_ensemble", ["A", "B"]), ("echo", ["B"])):
            with pytest.raises(InferenceServerException) as info:
                client.infer(model, [x], outputs=[grpcclient.InferRequestedOutput("B")],
                             parameters={spec.OUTPUTS_PARAMETER: "MASK"})
            told = json.loads(info.value.message()[info.value.message().index("{"):])
            assert told["requested"] == want, model
            assert told["parameters"][spec.OUTPUTS_PARAMETER] == "MASK", model
    finally:
        client.close()
        server.stop()


# --- which ensemble an array goes to (review 1820 #3, #4) ------------------------------------------
COPY_MODEL = "banet_copy"


@pytest.fixture(scope="module")
def explicit_server(model_repository, tmp_path_factory):
    """The session's repository plus ``banet_copy`` (the ``banet`` ensemble under another name), served with
    explicit model control so that a test can unload and load ``banet_raw`` as a server restarted on another
    repository, or one still loading, would show it to the client."""
    import shutil

    from triton_helpers import start_server

    repo = tmp_path_factory.mktemp("explicit") / "model_repository"
    shutil.copytree(model_repository, repo)
    shutil.copytree(repo / spec.ENSEMBLE_MODEL, repo / COPY_MODEL)
    config = repo / COPY_MODEL / "config.pbtxt"
    text = config.read_text()
    assert text.count(f'name: "{spec.ENSEMBLE_MODEL}"') == 1
    config.write_text(text.replace(f'name: "{spec.ENSEMBLE_MODEL}"', f'name: "{COPY_MODEL}"'))
    server = start_server(repo, extra_args=("--model-control-mode=explicit", "--load-model=*"))
    yield server
    server.stop()


def _answered(client, models) -> dict[str, int]:
    """Successful requests per ensemble so far (Triton's statistics; 0 for one not loaded)."""
    from tritonclient.utils import InferenceServerException

    counts = {}
    for model in models:
        try:
            stats = client.get_inference_statistics(model, as_json=True)["model_stats"]
        except InferenceServerException:
            stats = []
        counts[model] = sum(int(s["inference_stats"]["success"].get("count", 0)) for s in stats)
    return counts


def _answered_since(client, models, before: dict[str, int], total: int, timeout_s: float = 10.0) -> dict[str, int]:
    """Successful requests per ensemble since ``before``, once ``total`` of them are counted (or ``timeout_s``
    passed): Triton counts an ensemble request when the request is released, which can come after the client
    has its response (a CI run saw 5 of 6 counted at once)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        now = _answered(client, models)
        if sum(now[m] - before[m] for m in models) >= total or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # a request answered twice (by two ensembles) is counted late too: read once more
    now = _answered(client, models)
    return {m: now[m] - before[m] for m in models}


ENSEMBLES = (spec.ENSEMBLE_MODEL, spec.RAW_ENSEMBLE_MODEL, COPY_MODEL)


def test_arrays_go_to_the_model_the_client_was_given(explicit_server):
    """``model="banet_copy"``: an array goes as a PNG to banet_copy, not as pixels to the default repository's
    banet_raw (which would answer for another network); ``raw_model`` names a raw ensemble explicitly."""
    from banet.client import TritonSegmenter

    image = np.random.default_rng(7).integers(0, 256, (48, 64, 3), np.uint8)
    admin = TritonSegmenter(explicit_server.grpc_url, timeout_s=120)
    other = TritonSegmenter(explicit_server.grpc_url, model=COPY_MODEL, timeout_s=120)
    named = TritonSegmenter(explicit_server.grpc_url, model=COPY_MODEL, raw_model=spec.RAW_ENSEMBLE_MODEL,
                            timeout_s=120)
    try:
        before = _answered(admin.client, ENSEMBLES)
        assert other.predict(image).mask.shape == (48, 64)
        assert _answered_since(admin.client, ENSEMBLES, before, 1) == {
            spec.ENSEMBLE_MODEL: 0, spec.RAW_ENSEMBLE_MODEL: 0, COPY_MODEL: 1}
        after = _answered(admin.client, ENSEMBLES)
        assert named.predict(image).mask.shape == (48, 64)
        assert _answered_since(admin.client, ENSEMBLES, after, 1) == {
            spec.ENSEMBLE_MODEL: 0, spec.RAW_ENSEMBLE_MODEL: 1, COPY_MODEL: 0}
        assert other.raw_model is None and named.raw_model == admin.raw_model == spec.RAW_ENSEMBLE_MODEL
    finally:
        for seg in (admin, other, named):
            seg.close()


def test_raw_model_gone_or_back_is_noticed_by_a_shared_segmenter(explicit_server):
    """One segmenter shared by 6 threads (the video pool, segment_files): banet_raw unloaded after it was seen
    ready (a restart on a repository without it) costs no request, they are resent as PNGs to banet; once it is
    loaded again (a model that was still loading), arrays go back to banet_raw after ``raw_reprobe_s``."""
    from banet.client import TritonSegmenter

    images = [np.random.default_rng(i).integers(0, 256, (40 + i, 56, 3), np.uint8) for i in range(6)]
    admin = TritonSegmenter(explicit_server.grpc_url, timeout_s=120)
    seg = TritonSegmenter(explicit_server.grpc_url, timeout_s=120, retries=1, backoff_s=0.1)
    seg.raw_reprobe_s = 0.5  # an attribute, so that the code before the fix runs this test too (default 5 s)

    def predict_all() -> list:
        with ThreadPoolExecutor(max_workers=6) as pool:
            return list(pool.map(seg.predict, images))

    def routed(work) -> dict[str, int]:
        before = _answered(admin.client, ENSEMBLES[:2])
        results = work()
        for image, pred in zip(images, results):
            assert pred.mask.shape == image.shape[:2]
        return _answered_since(admin.client, ENSEMBLES[:2], before, len(images))

    try:
        start = _answered(admin.client, ENSEMBLES[:2])
        reference = [seg.predict(image).mask for image in images]
        _answered_since(admin.client, ENSEMBLES[:2], start, len(images))  # counted before the next window opens
        assert routed(predict_all) == {spec.ENSEMBLE_MODEL: 0, spec.RAW_ENSEMBLE_MODEL: 6}
        admin.client.unload_model(spec.RAW_ENSEMBLE_MODEL)
        assert not admin.client.is_model_ready(spec.RAW_ENSEMBLE_MODEL)
        gone = routed(predict_all)  # every request answered, by banet
        assert gone[spec.ENSEMBLE_MODEL] == 6, gone
        admin.client.load_model(spec.RAW_ENSEMBLE_MODEL)
        import time

        time.sleep(seg.raw_reprobe_s + 0.1)
        assert routed(predict_all) == {spec.ENSEMBLE_MODEL: 0, spec.RAW_ENSEMBLE_MODEL: 6}
        for image, mask in zip(images, reference):
            np.testing.assert_array_equal(seg.predict(image).mask, mask)
    finally:
        if not admin.client.is_model_ready(spec.RAW_ENSEMBLE_MODEL):
            admin.client.load_model(spec.RAW_ENSEMBLE_MODEL)
        seg.close()
        admin.close()


def test_raw_model_not_ready_at_first_is_asked_again(explicit_server):
    """A segmenter whose first probe finds no banet_raw (still loading) sends PNGs for ``raw_reprobe_s`` only,
    then pixels, without being made anew; concurrent first calls share one answer."""
    import time

    from banet.client import TritonSegmenter

    image = np.random.default_rng(9).integers(0, 256, (36, 52, 3), np.uint8)
    admin = TritonSegmenter(explicit_server.grpc_url, timeout_s=120)
    seg = TritonSegmenter(explicit_server.grpc_url, timeout_s=120)
    seg.raw_reprobe_s = 0.5
    try:
        admin.client.unload_model(spec.RAW_ENSEMBLE_MODEL)
        with ThreadPoolExecutor(max_workers=4) as pool:
            assert not any(pool.map(lambda _: seg.raw_available(), range(4)))
        def routed() -> dict[str, int]:  # counted around one request: loading an ensemble may reset its statistics
            before = _answered(admin.client, ENSEMBLES[:2])
            seg.predict(image)
            return _answered_since(admin.client, ENSEMBLES[:2], before, 1)

        assert routed() == {spec.ENSEMBLE_MODEL: 1, spec.RAW_ENSEMBLE_MODEL: 0}
        admin.client.load_model(spec.RAW_ENSEMBLE_MODEL)
        time.sleep(seg.raw_reprobe_s + 0.1)
        assert routed() == {spec.ENSEMBLE_MODEL: 0, spec.RAW_ENSEMBLE_MODEL: 1}
    finally:
        if not admin.client.is_model_ready(spec.RAW_ENSEMBLE_MODEL):
            admin.client.load_model(spec.RAW_ENSEMBLE_MODEL)
        seg.close()
        admin.close()
