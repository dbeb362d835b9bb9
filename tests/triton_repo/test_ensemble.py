"""The ``banet`` ensemble on a real tritonserver, over real gRPC, against in-process PyTorch."""

from __future__ import annotations

import io
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from banet import processing, spec
from banet.metrics import jaccard
from triton_helpers import KVASIR_LARGE, SERVING_SIZE

pytestmark = [pytest.mark.needs_triton]

MIN_AGREEMENT = 0.999
"""Share of pixels on which a served mask must equal the in-process PyTorch mask (the float32 route:
full decode, float pre-processing, float32 probability) when the image is decoded in full on both
sides. The served hot path returns a float16 probability and runs the graph in ONNX Runtime, which can
flip a pixel whose probability sits on the threshold."""

REDUCED_DECODE_AGREEMENT = 0.995
"""The same for a JPEG that the hot path decodes at a reduced size (DCT scaling, at least
``processing.REDUCED_DECODE_OVERSAMPLE`` decoded pixels per network pixel): the network input differs
from the full decode's by resampling, which moves the contour by a fraction of a network pixel (worst
image 0.993 Jaccard on the Kvasir-SEG test split, bench/results/hotpath_*). That the Triton models run
exactly the in-process hot path is tested without this allowance
(``test_served_masks_are_the_in_process_hot_path``)."""

FLOAT16_RESOLVED = (0.02, 0.98)
"""Probabilities where the served float16 probability resolves a threshold as finely as float32 does
(steps of 2**-11 or finer): a threshold at 0.99997 would compare float16's 1.0 with float32's
0.99995, which only says that float16 has 11 bits (docs/serving.md)."""


def _assert_masks_equal(served: np.ndarray, expected: np.ndarray, what: str,
                        min_agreement: float = MIN_AGREEMENT) -> None:
    """Served equals PyTorch: same shape, a reference with real boundaries (two empty masks agree
    perfectly and prove nothing), and ``min_agreement`` of the pixels equal."""
    assert served.shape == expected.shape, what
    area = processing.mask_area(expected)
    assert 0 < area < expected.size, f"{what}: the in-process mask is {'empty' if area == 0 else 'full'}"
    agreement = float(np.mean((served > 0) == (expected > 0)))
    assert agreement >= min_agreement, f"{what}: only {agreement:.5f} of the pixels agree"


def _thresholds(probability: np.ndarray) -> tuple[float, float]:
    """Two thresholds at which the in-process mask has real boundaries, whatever the random-weight
    model makes of the image: the 30 % and 70 % quantiles of the probabilities within
    :data:`FLOAT16_RESOLVED` (noise images drive most pixels to 0.9999+); for a 1x1 image, just below
    and just above its one probability."""
    if probability.size == 1:
        p = float(probability.flat[0])  # within [0, 1] however close p is to 0 or 1
        return max(p - 0.01, p / 2), min(p + 0.01, (1 + p) / 2)
    resolved = probability[(probability > FLOAT16_RESOLVED[0]) & (probability < FLOAT16_RESOLVED[1])]
    assert resolved.size >= 20, f"only {resolved.size} pixels have a probability in {FLOAT16_RESOLVED}"
    low, high = np.quantile(resolved, [0.3, 0.7])
    return float(low), float(high)


def _decoded_reduced(data: bytes) -> bool:
    """True when the hot path decodes these bytes at a reduced size (a large JPEG)."""
    image, original = processing.decode_reduced(data, SERVING_SIZE)
    return image.shape[:2] != tuple(original)


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _real_images(data_root, kvasir_test_pairs) -> list:
    isic = sorted((data_root / "isic2017" / "images").glob("test_*.jpg"))[:2]
    large = data_root / "kvasir-seg" / "images" / f"{KVASIR_LARGE}.jpg"
    return [p for p, _ in kvasir_test_pairs[:2]] + [large] + isic


@pytest.mark.needs_data
def test_real_images_match_pytorch(segmenter, torch_reference, data_root, kvasir_test_pairs):
    for path in _real_images(data_root, kvasir_test_pairs):
        image = processing.load_image(path)
        pred = segmenter.predict(path)
        expected = torch_reference(image)
        assert pred.mask.dtype == np.uint8 and set(np.unique(pred.mask)) <= {0, spec.MASK_FOREGROUND_VALUE}
        reduced = _decoded_reduced(path.read_bytes())
        # at the image's own size, 1920x1072 included (decoded at a reduced size by the hot path)
        _assert_masks_equal(pred.mask, expected, f"{path.name} (reduced decode: {reduced})",
                            REDUCED_DECODE_AGREEMENT if reduced else MIN_AGREEMENT)
        assert pred.mask.shape == image.shape[:2], path
        assert pred.area == processing.mask_area(pred.mask)
        np.testing.assert_array_equal(pred.boundary, processing.boundary(pred.mask))


@pytest.mark.needs_data
def test_batched_and_concurrent_equal_single(segmenter, data_root, torch_probability):
    paths = sorted((data_root / "isic2017" / "images").glob("test_*.jpg"))[2:8]
    # at the median in-process probability of the six, their masks have real boundaries: equal
    # empty masks would prove nothing
    threshold = float(np.median([torch_probability(processing.load_image(p)) for p in paths]))
    singles = [segmenter.predict(p, threshold=threshold) for p in paths]
    batched = segmenter.predict_batch(paths, threshold=threshold)  # one request of 6 same-size images
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(lambda p: segmenter.predict(p, threshold=threshold), paths))
    assert all(0 < one.area < one.mask.size for one in singles), [one.area for one in singles]
    for one, many, conc in zip(singles, batched, concurrent):
        np.testing.assert_array_equal(one.mask, many.mask)
        np.testing.assert_array_equal(one.mask, conc.mask)
        assert one.area == many.area == conc.area


def test_health_endpoints(triton_server, segmenter):
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{spec.ENSEMBLE_MODEL}/ready"):
        with urllib.request.urlopen(triton_server.http_url + path, timeout=10) as resp:
            assert resp.status == 200, path
    assert segmenter.client.is_server_live() and segmenter.is_ready()
    assert not segmenter.client.is_model_ready("no_such_model")


def _variants(rng) -> dict[str, tuple[bytes, tuple[int, int]]]:
    rgb = rng.integers(0, 256, size=(70, 90, 3), dtype=np.uint8)
    gray16 = (rng.integers(0, 65536, size=(50, 40))).astype(np.uint16)
    out = {
        "grayscale": (_png(rgb[..., 0]), (70, 90)),
        "rgba": (_png(np.dstack([rgb, np.full((70, 90), 128, np.uint8)])), (70, 90)),
        "16-bit": (_png(gray16), (50, 40)),
        "1x1": (_png(rgb[:1, :1]), (1, 1)),
    }
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE).save(buf, format="PNG")
    out["palette"] = (buf.getvalue(), (70, 90))
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, format="JPEG")
    out["cmyk"] = (buf.getvalue(), (70, 90))
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(buf, format="JPEG", exif=exif)
    out["exif-rotated"] = (buf.getvalue(), (90, 70))
    return out


def test_image_variants_match_in_process(segmenter, torch_reference, torch_probability):
    for name, (data, shape) in _variants(np.random.default_rng(3)).items():
        image = processing.decode_image(data)
        assert image.shape[:2] == shape, name
        expected_masks = []
        for threshold in _thresholds(torch_probability(image)):
            pred = segmenter.predict(data, threshold=threshold)
            expected = torch_reference(image, threshold)
            what = f"{name} at threshold {threshold:.4f}"
            if shape == (1, 1):  # one pixel: it must be the same pixel
                np.testing.assert_array_equal(pred.mask, expected, err_msg=what)
            else:
                _assert_masks_equal(pred.mask, expected, what)
            expected_masks.append(expected)
        assert not np.array_equal(*expected_masks), name  # the thresholds really moved the mask


def _png_header_claiming(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("payload, reason", [
    (b"", "empty payload"),
    (b"hello, this is text and not an image", "not a recognised image format"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, r"banet_preprocess: IMAGE_BYTES\[0\]"),
    (None, "20000x20000 = 400000000 pixels exceeds the limit|decompression bomb"),  # a header claiming 20000x20000
], ids=["zero-bytes", "text", "corrupt-png", "oversized-header"])
def test_bad_images_get_a_clear_error_and_the_server_keeps_serving(segmenter, payload, reason):
    from banet.client import InferenceError

    payload = _png_header_claiming(20000, 20000) if payload is None else payload
    with pytest.raises(InferenceError, match=reason):
        segmenter.predict(payload)
    good = np.random.default_rng(0).integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    assert segmenter.predict(good).mask.shape == (32, 48)


def test_truncated_jpeg_is_refused(segmenter, data_root):
    data = sorted((data_root / "isic2017" / "images").glob("test_*.jpg"))[0].read_bytes()
    from banet.client import InferenceError

    with pytest.raises(InferenceError, match="corrupt or truncated"):
        segmenter.predict(data[: len(data) // 3])


BATCHING_MAX_BATCH = 8
"""``max_batch_size`` of the repository that ``batching_segmenter`` serves: as many requests as
``test_bad_requests_fail_alone_in_a_dynamic_batch`` sends, so the batcher fires the moment the last
one arrives."""
BATCHING_QUEUE_DELAY_US = 20_000_000
"""``banet_preprocess``'s queue delay there: requests wait up to 20 s for each other, far longer than
eight threads of a loaded 2-core box take to send them (the batch fills, so no one waits it out)."""


@pytest.fixture(scope="module")
def batching_segmenter(tiny_onnx, tmp_path_factory):
    """A second tritonserver whose ``banet_preprocess`` holds requests until a batch of
    ``BATCHING_MAX_BATCH`` is full (the session's server does not delay its pre-processing, so
    concurrent requests merge there only by chance). No client retries: a request is sent once; arrays are
    sent as PNG files (not to ``banet_raw``)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from banet.client import TritonSegmenter
    from export.repository import write_repository
    from triton_helpers import start_server

    repo = tmp_path_factory.mktemp("batching") / "model_repository"
    write_repository(repo, onnx_path=tiny_onnx, image_size=SERVING_SIZE, max_batch_size=BATCHING_MAX_BATCH)
    path = repo / spec.PREPROCESS_MODEL / "config.pbtxt"
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    assert config.HasField("dynamic_batching") and config.max_batch_size == BATCHING_MAX_BATCH
    config.dynamic_batching.max_queue_delay_microseconds = BATCHING_QUEUE_DELAY_US
    path.write_text(text_format.MessageToString(config))
    server = start_server(repo)
    # raw_model=None: arrays go as PNG to banet, so all eight requests meet in banet_preprocess
    seg = TritonSegmenter(server.grpc_url, timeout_s=120, retries=0, raw_model=None)
    yield seg
    seg.close()
    server.stop()


def _preprocess_counts(segmenter) -> tuple[int, int, dict[int, int]]:
    """``banet_preprocess``'s (inference_count, execution_count, {batch size: executions}) from Triton's
    statistics extension (each ``execute`` call is one execution of ``batch size`` requests)."""
    stats = segmenter.client.get_inference_statistics(model_name=spec.PREPROCESS_MODEL, as_json=True)
    (model,) = stats["model_stats"]
    batches = {int(b["batch_size"]): int(b["compute_infer"].get("count", 0)) for b in model.get("batch_stats", [])}
    return int(model.get("inference_count", 0)), int(model.get("execution_count", 0)), batches


def test_bad_requests_fail_alone_in_a_dynamic_batch(batching_segmenter, segmenter):
    """Three undecodable images and five good ones go through ``banet_preprocess`` as ONE merged batch
    (Triton's statistics say so); the bad ones fail, the good ones get the masks that the session's
    server (same model, no queue delay) gives each of them sent alone."""
    from banet.client import InferenceError

    rng = np.random.default_rng(1)
    good = [rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8) for _ in range(5)]
    payloads = [good[0], b"junk", good[1], good[2], b"", good[3], b"nope", good[4]]
    assert len(payloads) == BATCHING_MAX_BATCH

    def call(item):
        try:
            return batching_segmenter.predict(item)
        except InferenceError as err:
            return err

    before = _preprocess_counts(batching_segmenter)
    with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
        results = list(pool.map(call, payloads))
    deadline = time.monotonic() + 10  # a step's statistics can be counted after the client has its answer
    after = _preprocess_counts(batching_segmenter)
    while after[0] - before[0] < len(payloads) and time.monotonic() < deadline:
        time.sleep(0.05)
        after = _preprocess_counts(batching_segmenter)
    inferences, executions = after[0] - before[0], after[1] - before[1]
    merged = {size: count - before[2].get(size, 0) for size, count in after[2].items()}
    assert (inferences, executions) == (len(payloads), 1), (
        f"banet_preprocess ran {inferences} requests in {executions} executions (batch stats {merged}): "
        f"the {len(payloads)} requests were not merged into one batch")
    assert merged.get(len(payloads)) == 1, merged
    for item, result in zip(payloads, results):
        if isinstance(item, bytes):
            assert isinstance(result, InferenceError), result
            assert spec.PREPROCESS_MODEL in str(result), result  # failed in the batched step, with its name
        else:
            assert not isinstance(result, Exception), result
            np.testing.assert_array_equal(result.mask, segmenter.predict(item).mask)


def test_threshold(segmenter, torch_reference, torch_probability):
    from banet.client import InferenceError

    image = np.random.default_rng(5).integers(0, 256, size=(64, 80, 3), dtype=np.uint8)
    low, high = _thresholds(torch_probability(image))
    served = {t: segmenter.predict(image, threshold=t) for t in (low, high)}
    for threshold, pred in served.items():
        _assert_masks_equal(pred.mask, torch_reference(image, threshold), f"threshold {threshold:.4f}")
    assert served[low].area > served[high].area
    assert segmenter.predict(image, threshold=1.0).area == 0  # prob > 1 never holds
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(InferenceError, match="THRESHOLD"):
            segmenter.predict(image, threshold=bad)


def test_raw_model_rejects_wrong_dtype_and_shape_and_unknown_model(segmenter):
    """The served network takes uint8 pixels (B, S, S, 3) and returns the float16 probability."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = segmenter.client
    served = (SERVING_SIZE, SERVING_SIZE, 3)
    for array, dtype in ((np.zeros((1, *served), np.float32), "FP32"),
                         (np.zeros((1, 64, 64, 3), np.uint8), "UINT8"),
                         (np.zeros((1, 3, SERVING_SIZE, SERVING_SIZE), np.uint8), "UINT8")):
        tensor = grpcclient.InferInput(spec.SERVING_INPUT.name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        with pytest.raises(InferenceServerException, match="data-type|shape|dims"):
            client.infer(spec.NETWORK_MODEL, [tensor])
    ok = np.zeros((2, *served), np.uint8)
    tensor = grpcclient.InferInput(spec.SERVING_INPUT.name, list(ok.shape), "UINT8")
    tensor.set_data_from_numpy(ok)
    out = client.infer(spec.NETWORK_MODEL, [tensor]).as_numpy(spec.SERVING_OUTPUT.name)
    assert out.shape == (2, 1, SERVING_SIZE, SERVING_SIZE) and out.dtype == np.float16
    assert 0.0 <= float(out.min()) <= float(out.max()) <= 1.0
    with pytest.raises(InferenceServerException, match="no_such_model"):
        client.infer("no_such_model", [tensor])


@pytest.mark.needs_data
def test_served_masks_are_the_in_process_hot_path(segmenter, tiny_onnx, tmp_path, data_root, kvasir_test_pairs):
    """Triton's three models run exactly banet.inference.predict_served_masks (reduced decode, the uint8
    serving graph, the small-map mask): the masks are identical, incl. the 1920x1072 frame."""
    from banet.inference import predict_served_masks
    from export.onnxruntime import ort_runner
    from export.serving_graph import add_uint8_io

    served = add_uint8_io(tiny_onnx, tmp_path / "served.onnx")
    paths = _real_images(data_root, kvasir_test_pairs)
    local = predict_served_masks(ort_runner(served, io="uint8"), [p.read_bytes() for p in paths], size=SERVING_SIZE)
    for path, mask in zip(paths, local):
        remote = segmenter.predict(path)
        assert jaccard(remote.mask, mask) >= 0.9999, path  # same code; ORT threads may round differently
        assert remote.area == processing.mask_area(remote.mask)
    assert any(_decoded_reduced(p.read_bytes()) for p in paths)  # the reduced decode is among them


def test_statistics_extension_reports_each_step(segmenter):
    segmenter.predict(np.zeros((20, 20, 3), np.uint8))
    stats = segmenter.client.get_inference_statistics(as_json=True)
    counts = {m["name"]: int(m.get("inference_count", 0)) for m in stats["model_stats"]}
    for model in (spec.ENSEMBLE_MODEL, spec.PREPROCESS_MODEL, spec.NETWORK_MODEL, spec.POSTPROCESS_MODEL):
        assert counts.get(model, 0) >= 1, (model, counts)


def test_client_cli_reports_the_median_latency_of_its_csv(triton_server, tmp_path, capsys):
    # two images of very different sizes: their latencies differ, so the median (their mean) is
    # neither of them; the summary line must match the latencies the CSV records
    import csv
    import re
    import statistics

    from banet.cli.client import main

    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_small.png").write_bytes(_png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)))
    (folder / "b_large.png").write_bytes(_png(rng.integers(0, 256, (1600, 1600, 3), dtype=np.uint8)))
    out = tmp_path / "out"
    assert main([str(folder), "--url", triton_server.grpc_url, "--out", str(out), "--concurrency", "1"]) == 0
    printed = float(re.search(r"median latency ([0-9.]+) ms", capsys.readouterr().out).group(1))
    with open(out / "results.csv", newline="") as fh:
        latencies = [float(row["latency_ms"]) for row in csv.DictReader(fh)]
    assert len(latencies) == 2 and abs(latencies[0] - latencies[1]) > 1.0
    assert printed == pytest.approx(statistics.median(latencies), abs=0.06)
