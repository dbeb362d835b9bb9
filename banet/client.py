"""gRPC client for the ``banet`` ensembles: an image in, the mask, its boundary and area out.

    from banet.client import TritonSegmenter
    seg = TritonSegmenter("127.0.0.1:8001")
    pred = seg.predict("polyp.jpg")          # path, encoded bytes or an (H, W, 3) uint8 array
    pred.mask, pred.boundary, pred.area

By default (``outputs="compact"``) the server computes and sends only the compact mask (``MASK_ENCODED``,
:mod:`banet.mask_codec`, about 1 kB for a 1920x1080 frame) and the area; the client decodes it and derives the
boundary from it with the server's own :func:`banet.processing.boundary` when it is first read (so both are what
``outputs="full"``, the uncompressed ``MASK`` and ``BOUNDARY`` tensors, gives). A decoded array goes to the
raw-pixel ensemble (``banet_raw`` beside the default ``banet``) as pixels, no PNG encode here and no decode
there, when the server has it; otherwise, and for any other ``model`` unless its ``raw_model`` is named, as a PNG.

UNAVAILABLE (server down or restarting) is retried with exponential backoff; every call has a
deadline; gRPC message-size limits are raised to carry :data:`banet.spec.MAX_REQUEST_BYTES`.
``tritonclient`` is imported when a client is made, so ``import banet`` stays light.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from banet import spec

log = logging.getLogger(__name__)

OUTPUT_MODES = {"compact": spec.COMPACT_OUTPUTS, "full": spec.FULL_OUTPUTS}
"""``TritonSegmenter(outputs=...)``: the outputs each mode asks the server to compute and send."""

RETRY_CODES = ("StatusCode.UNAVAILABLE",)
"""gRPC statuses worth retrying: the server is down, starting or restarting."""

AUTO = "auto"
"""``TritonSegmenter(raw_model=AUTO)`` (the default): :data:`banet.spec.RAW_ENSEMBLE_MODEL` when ``model`` is
:data:`banet.spec.ENSEMBLE_MODEL` (the pair the exported repository holds), else None (arrays go as PNG to
``model``: another repository's raw ensemble is unknown, and the default one would answer for the wrong network)."""

RAW_REPROBE_S = 5.0
"""Seconds before a raw model that was not ready (still loading, or absent) is asked for again."""


def _raw_model_missing(err: "InferenceError") -> bool:
    """The raw model is not on the server (NOT_FOUND: "Request for unknown model: 'banet_raw' is not found",
    seen on tritonserver 2.x here) or has no loaded version (UNAVAILABLE "unknown model ... no available versions")."""
    return err.status == "StatusCode.NOT_FOUND" or "unknown model" in str(err).lower()


class InferenceError(RuntimeError):
    """The server answered this request with an error (bad image, bad threshold, ...) or never answered."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class Prediction:
    """One image's result: ``mask`` ``(H, W)`` uint8 0/255, ``area`` in pixels, ``boundary`` ``(H, W)`` uint8 0/255.

    ``boundary`` is the server's when it sent one (``outputs="full"``), else derived from the mask with the same
    :func:`banet.processing.boundary` on first access (then kept).
    """

    __slots__ = ("mask", "area", "latency_s", "attempts", "_boundary")

    def __init__(self, mask: np.ndarray, boundary: np.ndarray | None, area: int, latency_s: float = float("nan"),
                 attempts: int = 1) -> None:
        self.mask, self._boundary, self.area = mask, boundary, int(area)
        self.latency_s, self.attempts = latency_s, attempts

    @property
    def boundary(self) -> np.ndarray:
        if self._boundary is None:
            from banet import processing

            self._boundary = processing.boundary(self.mask)
        return self._boundary

    def __repr__(self) -> str:
        return (f"Prediction(mask={self.mask.shape}, area={self.area}, latency_s={self.latency_s:.4f}, "
                f"attempts={self.attempts})")


def encode_image(image: str | Path | bytes | np.ndarray, *, name: str | None = None) -> bytes:
    """Bytes to send: a file's bytes as they are, bytes as given, an array encoded as PNG.

    Refuses payloads over :data:`banet.spec.MAX_REQUEST_BYTES` (a file's size is checked before it is read).
    """
    if isinstance(image, (str, Path)):
        path = Path(image)
        try:
            size = path.stat().st_size
        except OSError as err:
            raise ValueError(f"{path}: cannot read ({err.strerror or err})") from None
        if not path.is_file():
            raise ValueError(f"{path}: not a file")
        if size > spec.MAX_REQUEST_BYTES:
            raise ValueError(f"{path}: {size} bytes exceeds the limit of {spec.MAX_REQUEST_BYTES} bytes")
        return path.read_bytes()
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    elif isinstance(image, np.ndarray):
        from PIL import Image

        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"{name or 'array'}: expected an (H, W) or (H, W, 3) uint8 array, got {image.shape} {image.dtype}")
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        data = buffer.getvalue()
    else:
        raise TypeError(f"image must be a path, bytes or a numpy array, got {type(image).__name__}")
    if len(data) > spec.MAX_REQUEST_BYTES:
        raise ValueError(f"{name or 'image'}: {len(data)} bytes exceeds the limit of {spec.MAX_REQUEST_BYTES} bytes")
    return data


class TritonSegmenter:
    """Segment images with the ``banet`` ensembles on a Triton server over gRPC. Thread-safe.

    ``outputs``: ``"compact"`` (default: the encoded mask and the area travel, the boundary is derived here) or
    ``"full"`` (the ``MASK`` and ``BOUNDARY`` tensors as the server computed them). ``raw_model``: the ensemble
    that takes decoded pixels and runs the same network as ``model``, used for numpy arrays when the server has
    it; :data:`AUTO` (default) names ``banet_raw`` for the default ``banet`` and nothing for another ``model``;
    None sends arrays as PNG to ``model``. A ready raw model is remembered; a not-ready one is asked for again
    after ``raw_reprobe_s`` (PNGs meanwhile), and one that the server does not know (NOT_FOUND, e.g. after a
    restart on another repository) is forgotten and that request resent as a PNG. ``retries`` extra attempts on
    UNAVAILABLE, sleeping ``backoff_s * 2**k`` (capped at ``max_backoff_s``) between them; ``timeout_s`` is each
    attempt's deadline.
    """

    def __init__(self, url: str = f"{spec.DEFAULT_HOST}:{spec.GRPC_PORT}", *, model: str = spec.ENSEMBLE_MODEL,
                 timeout_s: float = 60.0, retries: int = 5, backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 outputs: str = "compact", raw_model: str | None = AUTO, raw_reprobe_s: float = RAW_REPROBE_S) -> None:
        if outputs not in OUTPUT_MODES:
            raise ValueError(f"outputs must be one of {', '.join(OUTPUT_MODES)}, got {outputs!r}")
        if raw_model == AUTO:
            raw_model = spec.RAW_ENSEMBLE_MODEL if model == spec.ENSEMBLE_MODEL else None
        self.url, self.model, self.outputs, self.raw_model = url, model, outputs, raw_model
        self.timeout_s, self.retries = timeout_s, retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self._local = threading.local()
        self._clients: list = []  # every thread's client, so that close() closes them all
        self._clients_lock = threading.Lock()
        self.raw_reprobe_s = raw_reprobe_s
        self._raw_lock = threading.Lock()
        self._raw_ready = False  # only a positive answer is kept
        self._raw_next_probe = 0.0  # time.monotonic() before which a negative answer stands

    @property
    def client(self):
        """One ``tritonclient.grpc.InferenceServerClient`` per thread, with raised message limits."""
        client = getattr(self._local, "client", None)
        if client is None:
            import tritonclient.grpc as grpcclient

            limit = spec.MAX_REQUEST_BYTES + 1024 * 1024  # headroom for the request's own framing
            # outputs="full": uint8 masks at the original size, MAX_IMAGE_PIXELS bytes each, two of them
            receive = 2 * spec.MAX_IMAGE_PIXELS + 1024 * 1024
            # gRPC's own reconnect backoff grows to minutes after failed connects; cap it at ours so
            # that a channel that met a stopped server reconnects as soon as the server is back
            reconnect_ms = int(self.max_backoff_s * 1000)
            client = grpcclient.InferenceServerClient(self.url, channel_args=[
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", receive),
                ("grpc.initial_reconnect_backoff_ms", min(100, reconnect_ms)),
                ("grpc.min_reconnect_backoff_ms", min(100, reconnect_ms)),
                ("grpc.max_reconnect_backoff_ms", max(reconnect_ms, 100)),
                # a new segmenter starts with fresh connections, not with the backoff state that
                # gRPC's process-wide subchannel pool kept from an earlier failure
                ("grpc.use_local_subchannel_pool", 1),
            ])
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def is_ready(self) -> bool:
        try:
            return bool(self.client.is_server_ready(client_timeout=self.timeout_s)
                        and self.client.is_model_ready(self.model, client_timeout=self.timeout_s))
        except Exception:  # noqa: BLE001 - not reachable means not ready
            return False

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise InferenceError(f"{self.url}: model {self.model!r} not ready after {timeout_s:.0f} s",
                                     "StatusCode.UNAVAILABLE")
            time.sleep(0.25)

    def raw_available(self) -> bool:
        """True when the server serves ``raw_model`` ready. A yes is kept (until :meth:`forget_raw`); a no, or no
        answer, stands for ``raw_reprobe_s`` and is then asked again. Thread-safe: concurrent first calls wait
        for one probe."""
        if self.raw_model is None:
            return False
        with self._raw_lock:
            if self._raw_ready:
                return True
            now = time.monotonic()
            if now < self._raw_next_probe:
                return False
            try:
                ready = bool(self.client.is_model_ready(self.raw_model, client_timeout=self.timeout_s))
            except Exception:  # noqa: BLE001 - not reachable is not ready; asked again later
                ready = False
            self._raw_ready = ready
            if not ready:
                self._raw_next_probe = time.monotonic() + self.raw_reprobe_s
                log.info("%s: model %r not ready; arrays go as PNG to %r (asked again in %g s)", self.url,
                         self.raw_model, self.model, self.raw_reprobe_s)
            return ready

    def forget_raw(self) -> None:
        """Drop a kept "ready" (the server answered that it does not know ``raw_model``): ask again later."""
        with self._raw_lock:
            self._raw_ready = False
            self._raw_next_probe = time.monotonic() + self.raw_reprobe_s

    @staticmethod
    def _encoded_input(payloads: list[bytes]):
        import tritonclient.grpc as grpcclient

        items = np.empty((len(payloads), 1), dtype=object)
        for index, data in enumerate(payloads):
            items[index, 0] = data
        image = grpcclient.InferInput(spec.ENCODED_IMAGE.name, list(items.shape), "BYTES")
        image.set_data_from_numpy(items)
        return image

    @staticmethod
    def _pixels_input(pixels: np.ndarray):
        import tritonclient.grpc as grpcclient

        image = grpcclient.InferInput(spec.IMAGE_PIXELS.name, list(pixels.shape), "UINT8")
        image.set_data_from_numpy(pixels)
        return image

    def infer(self, payloads: list[bytes] | np.ndarray, threshold: float | None = None, *, name: str = "request",
              model: str | None = None):
        """Send one request: ``payloads`` encoded files (same image size when more than one), or ``(B, H, W, 3)``
        uint8 pixels (to ``raw_model``); returns ``(result, attempts)``. Retries UNAVAILABLE; raises
        :class:`InferenceError` otherwise."""
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        if isinstance(payloads, np.ndarray):
            if model is None and self.raw_model is None:
                raise ValueError(f"{name}: pixels need a raw-pixel model, and this segmenter has none (raw_model=None)")
            image, model, count = self._pixels_input(payloads), model or self.raw_model, len(payloads)
        else:
            image, model, count = self._encoded_input(payloads), model or self.model, len(payloads)
        inputs = [image]
        if threshold is not None:
            value = np.full((count, 1), threshold, dtype=spec.THRESHOLD.dtype)
            given = grpcclient.InferInput(spec.THRESHOLD.name, list(value.shape), "FP32")
            given.set_data_from_numpy(value)
            inputs.append(given)
        wanted = OUTPUT_MODES[self.outputs]
        outputs = [grpcclient.InferRequestedOutput(n) for n in wanted]
        # the ensemble asks its post-processing step for every output; this parameter says which to compute
        parameters = {spec.OUTPUTS_PARAMETER: ",".join(wanted)}
        attempt = 0
        while True:
            attempt += 1
            try:
                result = self.client.infer(model, inputs, outputs=outputs, parameters=parameters,
                                           client_timeout=self.timeout_s)
                return result, attempt
            except InferenceServerException as err:
                status = str(err.status())
                if status in RETRY_CODES and attempt <= self.retries:
                    delay = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
                    log.info("%s: %s, retry %d/%d in %.1f s", name, status, attempt, self.retries, delay)
                    time.sleep(delay)
                    continue
                raise InferenceError(f"{name}: {err.message() or err} ({status}, {attempt} attempt(s))", status) from None

    def _predictions(self, result, count: int, latency: float, attempts: int, name: str) -> list[Prediction]:
        """The response's masks, boundaries (None: derived on access) and areas, checked against each other."""
        from banet import mask_codec

        def output(tensor: str) -> np.ndarray:
            value = result.as_numpy(tensor)
            if value is None:
                raise InferenceError(f"{name}: the server sent no {tensor} (a repository older than this client? "
                                     f"try outputs='full' / --outputs full)")
            return value

        areas = output(spec.AREA.name).reshape(-1)
        if self.outputs == "full":
            masks, bounds = output(spec.MASK.name), output(spec.BOUNDARY.name)
        else:
            try:
                masks = [mask_codec.decode_mask(item) for item in output(spec.MASK_ENCODED.name).reshape(-1)]
            except mask_codec.MaskCodecError as err:
                raise InferenceError(f"{name}: {spec.MASK_ENCODED.name}: {err}") from None
            bounds = [None] * len(masks)
        if len(masks) != count or len(areas) != count:
            raise InferenceError(f"{name}: {len(masks)} masks and {len(areas)} areas for {count} images")
        predictions = [Prediction(masks[i], bounds[i], int(areas[i]), latency, attempts) for i in range(count)]
        for index, pred in enumerate(predictions):
            if int(np.count_nonzero(pred.mask)) != pred.area:  # the mask arrived as the server computed it
                raise InferenceError(f"{name}: image {index}: mask has {np.count_nonzero(pred.mask)} foreground "
                                     f"pixels, the server's AREA says {pred.area}")
        return predictions

    def _pixels(self, image: np.ndarray, name: str) -> np.ndarray | None:
        """``(H, W, 3)`` uint8 pixels to send as they are (grey ``(H, W)`` repeated to RGB, as the decoder
        does), or None where the array goes as PNG (no ``raw_model``, or over the request size limit)."""
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            return None  # encode_image names the problem
        if image.size * (3 if image.ndim == 2 else 1) > spec.MAX_REQUEST_BYTES or not self.raw_available():
            return None
        return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else np.ascontiguousarray(image)

    def _send(self, pixels: np.ndarray | None, images: list, threshold: float | None, name: str):
        """``(result, attempts, latency_s)``: ``pixels`` ``(B, H, W, 3)`` to ``raw_model`` when given, else (and
        when the server does not know ``raw_model`` any more) ``images`` encoded to ``model``."""
        if pixels is not None:
            started = time.perf_counter()
            try:
                result, attempts = self.infer(pixels, threshold, name=name)
                return result, attempts, time.perf_counter() - started
            except InferenceError as err:
                if not _raw_model_missing(err):
                    raise
                log.warning("%s: %s; sending PNGs to %r until it is back", self.url, err, self.model)
                self.forget_raw()
        data = [encode_image(image, name=name) for image in images]
        started = time.perf_counter()
        result, attempts = self.infer(data, threshold, name=name)
        return result, attempts, time.perf_counter() - started

    def predict(self, image: str | Path | bytes | np.ndarray, *, threshold: float | None = None) -> Prediction:
        """Segment one image (a path, encoded bytes or an ``(H, W, 3)`` / ``(H, W)`` uint8 array)."""
        name = str(image) if isinstance(image, (str, Path)) else "image"
        pixels = self._pixels(image, name) if isinstance(image, np.ndarray) else None
        result, attempts, latency = self._send(None if pixels is None else pixels[None], [image], threshold, name)
        return self._predictions(result, 1, latency, attempts, name)[0]

    def predict_batch(self, images: list, *, threshold: float | None = None) -> list[Prediction]:
        """Segment same-size images in ONE request (the server batches them together)."""
        name = f"batch of {len(images)}"
        pixels = ([self._pixels(img, name) for img in images]
                  if images and all(isinstance(img, np.ndarray) for img in images) else [None])
        same = all(p is not None for p in pixels) and len({p.shape for p in pixels}) == 1
        result, attempts, latency = self._send(np.stack(pixels) if same else None, images, threshold, name)
        return self._predictions(result, len(images), latency, attempts, name)

    def close(self) -> None:
        """Close the gRPC channels of every thread that used this segmenter."""
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        self._local = threading.local()


# --- many files: the engine behind banet-client --------------------------------------------------
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CSV_COLUMNS = ("run_started", "image", "status", "latency_ms", "area", "height", "width", "attempts",
               "mask", "overlay", "error")


@dataclass(frozen=True)
class FileResult:
    """What happened to one input file (one CSV row). ``status``: ok, exists (skipped) or error."""

    image: str
    status: str
    latency_ms: float = float("nan")
    area: int | None = None
    height: int | None = None
    width: int | None = None
    attempts: int = 0
    mask: str = ""
    overlay: str = ""
    error: str = ""


def collect_images(sources: list[str | Path]) -> list[Path]:
    """Files as given, folders expanded (sorted: image suffixes, and DICOM files by suffix or by their ``DICM``
    marker, :func:`banet.dicom.is_dicom_file`); missing paths raise ValueError."""
    from banet.dicom import is_dicom_file

    found: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found.extend(sorted(p for p in source.iterdir() if p.is_file() and (
                p.suffix.lower() in IMAGE_SUFFIXES or is_dicom_file(p))))
        elif source.exists():
            found.append(source)
        else:
            raise ValueError(f"{source}: no such file or folder")
    return list(dict.fromkeys(found))


def output_paths(out_dir: Path, image: Path) -> tuple[Path, Path]:
    return out_dir / "masks" / f"{image.stem}.png", out_dir / "overlays" / f"{image.stem}.png"


def output_names(image: Path) -> list[str]:
    """The outputs ``image`` claims, relative to the output folder (overlays mirror the masks): ``masks/<stem>.png``,
    or a DICOM file's own (:func:`banet.dicom_seg.output_names`: one mask per frame and its SEG)."""
    from banet.dicom import is_dicom_file

    if is_dicom_file(image):
        from banet.dicom_seg import output_names as dicom_output_names

        return dicom_output_names(image)
    return [f"masks/{image.stem}.png"]


def segment_file(segmenter: TritonSegmenter, image: Path, out_dir: Path, *, force: bool = False,
                 threshold: float | None = None, dicom=None) -> FileResult:
    """Segment one file and write its mask and overlay PNGs atomically; never raises for a bad file.

    A DICOM file (:func:`banet.dicom.is_dicom_file`) goes to :func:`banet.dicom_seg.segment_dicom_file` (one
    mask per frame and ``seg/<stem>.dcm``; ``dicom``: its :class:`banet.dicom_seg.SegOptions`)."""
    from banet import processing
    from banet.dicom import is_dicom_file

    if is_dicom_file(image):
        from banet.dicom_seg import segment_dicom_file

        return segment_dicom_file(segmenter, image, out_dir, force=force, threshold=threshold, options=dicom)

    mask_path, overlay_path = output_paths(out_dir, image)
    if not force and mask_path.exists() and overlay_path.exists():
        return FileResult(str(image), "exists", mask=str(mask_path), overlay=str(overlay_path),
                          error="outputs exist (pass --force to replace)")
    try:
        pred = segmenter.predict(image, threshold=threshold)
        pixels = processing.load_image(image)
        if pixels.shape[:2] != pred.mask.shape:
            raise InferenceError(f"{image}: server mask {pred.mask.shape} != image {pixels.shape[:2]}")
        # without force, only what is missing is written (a run interrupted between the two files)
        if force or not mask_path.exists():
            processing.save_png(pred.mask, mask_path)
        if force or not overlay_path.exists():
            processing.save_png(processing.overlay(pixels, pred.mask), overlay_path)
    except (InferenceError, ValueError, TypeError, OSError) as err:
        return FileResult(str(image), "error", error=str(err))
    return FileResult(str(image), "ok", latency_ms=pred.latency_s * 1000.0, area=pred.area,
                      height=int(pred.mask.shape[0]), width=int(pred.mask.shape[1]), attempts=pred.attempts,
                      mask=str(mask_path), overlay=str(overlay_path))


def segment_files(segmenter: TritonSegmenter, images: list[Path], out_dir: str | Path, *, concurrency: int = 4,
                  force: bool = False, threshold: float | None = None, on_result=None, dicom=None) -> list[FileResult]:
    """Segment ``images`` with ``concurrency`` requests in flight; results in input order.

    Two inputs that would write the same output name are a per-file error for the later one, never an overwrite:
    the names each really writes, a multi-frame DICOM file's per-frame ``masks/<stem>_frame0001.png`` ... and
    ``seg/<stem>.dcm`` included (:func:`output_names`). ``on_result(FileResult)`` is called as each one finishes.
    """
    from concurrent.futures import ThreadPoolExecutor

    out_dir = Path(out_dir)
    results: list[FileResult | None] = [None] * len(images)
    seen: dict[str, Path] = {}
    todo = []
    for index, image in enumerate(images):
        names = output_names(image)
        clash = next((n for n in names if seen.get(n, image) != image), None)
        if clash is not None:
            results[index] = FileResult(str(image), "error",
                                        error=f"{image}: output name {clash} already used by {seen[clash]}")
            if on_result:
                on_result(results[index])
        else:
            seen.update(dict.fromkeys(names, image))
            todo.append(index)

    def work(index: int) -> None:
        results[index] = segment_file(segmenter, images[index], out_dir, force=force, threshold=threshold, dicom=dicom)
        if on_result:
            on_result(results[index])

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(work, todo))
    return [r for r in results if r is not None]


def append_csv(path: str | Path, results: list[FileResult], run_started: str) -> None:
    """Append one row per result to ``path`` (header once): a log of every run, nothing overwritten."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(CSV_COLUMNS)
        for r in results:
            latency = "" if r.latency_ms != r.latency_ms else f"{r.latency_ms:.2f}"
            writer.writerow([run_started, r.image, r.status, latency, "" if r.area is None else r.area,
                             r.height or "", r.width or "", r.attempts, r.mask, r.overlay, r.error])
