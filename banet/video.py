"""Live video through Triton: read frames, send them at the source rate, never queue without bound.

    from banet.client import TritonSegmenter
    from banet.video import stream_video
    summary = stream_video(TritonSegmenter(url), "clip.mp4", "out/clip_overlay.mp4", "out/clip_frames.csv")

The live semantics: a pacing clock releases frame ``i`` at its presentation time (a file is played at
its own rate, ``speed`` times faster if asked; a camera paces itself); at most ``max_in_flight``
requests are outstanding, and a frame whose turn comes while all slots are busy is **dropped** and
counted, never queued. Every frame (sent, dropped or failed) goes to the overlay video, in order: the
mask tinted with its contour over the frame for answered frames, the plain frame otherwise; one CSV row
per frame says which. A per-frame error does not end the stream; failures with no answered frame
between them for ``give_up_s`` (a server gone: UNAVAILABLE; a server hung: DEADLINE_EXCEEDED; or one
refusing every frame) do, with that reason in the summary. Outputs are written under temporary names and
renamed into place at the end (:class:`banet.atomic.Staged`), also after Ctrl-C or a decode error, so
the frames handled so far are kept; an existing output is replaced only with ``force``. The CSV is kept
first and apart from the overlay: a frame whose size differs from the first (a stream that changes
resolution) is scaled to the overlay's size, and an overlay that cannot be written (a full disk) ends
there, with the reason in the summary, while the CSV goes on.

Decoding and encoding use PyAV (FFmpeg's libraries in one wheel, the ``video`` extra), chosen over
OpenCV by measurement (``references/serving/video_decoders.py``, docs/serving.md "Live video"). The
overlay is H.264 (libx264, in the PyAV wheel). ``av`` is imported when a video is opened, so
``import banet`` stays light. Only :meth:`banet.client.TritonSegmenter.predict` is used.
"""

from __future__ import annotations

import csv
import logging
import math
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".h264", ".264")
"""File names ``banet-client`` treats as a video (anything else is an image)."""

CSV_COLUMNS = ("frame", "pts_s", "sent_s", "status", "latency_ms", "area", "attempts", "error")
STATUSES = ("ok", "dropped", "error")
"""``ok``: sent and answered; ``dropped``: all ``max_in_flight`` slots were busy at its turn; ``error``: sent, failed."""

UNAVAILABLE = "StatusCode.UNAVAILABLE"


class VideoError(RuntimeError):
    """The source cannot be opened or read as a video (missing, not a video, unreadable)."""


def is_camera(source: str | int | Path) -> bool:
    """A camera index (``0``, ``"1"``) rather than a file: an int, or a digit string that names no existing path
    (a DICOM export's ``00000001`` or a folder ``2024`` in the current directory is a file or folder)."""
    if isinstance(source, int):
        return True
    return isinstance(source, str) and source.isdigit() and not Path(source).exists()


def is_video_source(source: str | Path) -> bool:
    """What ``banet-client`` streams as video: a camera index or a file with a video suffix."""
    return is_camera(str(source)) or Path(str(source)).suffix.lower() in VIDEO_SUFFIXES


def _av():
    try:
        import av
    except ImportError as err:  # pragma: no cover - the video extra is part of make install
        raise VideoError("video needs PyAV: pip install 'banet-deploy[video]' (or pip install av)") from err
    return av


# --- reading ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index in the stream, presentation time in seconds, ``(H, W, 3)`` uint8 RGB."""

    index: int
    time_s: float
    image: np.ndarray


def _camera_device(index: int) -> tuple[str, str]:
    """FFmpeg's capture device for a camera index: V4L2 on Linux, AVFoundation on macOS."""
    if sys.platform.startswith("linux"):
        return f"/dev/video{index}", "v4l2"
    if sys.platform == "darwin":
        return str(index), "avfoundation"
    # DirectShow names devices ("video=Integrated Camera"), not indices
    raise VideoError(f"camera {index}: camera indices are supported on Linux (V4L2) and macOS (AVFoundation) only")


class VideoReader:
    """Frames of a video file or camera (PyAV). ``with VideoReader("clip.mp4") as video: for f in video: ...``

    ``fps``: the stream's average rate; ``frame_count``: what the container declares (None when it does
    not, e.g. a camera); ``width`` / ``height``. Raises :class:`VideoError` with the reason for a missing
    file, a file that is not a video and a stream that cannot be decoded.
    """

    def __init__(self, source: str | int | Path, *, camera_fps: float | None = None) -> None:
        av = _av()
        self.source = str(source)
        self.camera = is_camera(self.source)
        try:
            if self.camera:
                device, fmt = _camera_device(int(self.source))
                options = {"framerate": f"{camera_fps:g}"} if camera_fps else {}
                self.container = av.open(device, format=fmt, options=options)
            else:
                path = Path(self.source)
                if not path.exists():
                    raise VideoError(f"{path}: no such file")
                if not path.is_file():
                    raise VideoError(f"{path}: not a file")
                self.container = av.open(str(path))
        except av.error.FFmpegError as err:
            what = "camera" if self.camera else "video"
            raise VideoError(f"{self.source}: cannot open as a {what} ({err.strerror or err})") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(f"{self.source}: no video stream in this file")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"  # FFmpeg's frame + slice threads: decode keeps up at 1080p
        rate = self.stream.average_rate or self.stream.guessed_rate or (camera_fps and Fraction(camera_fps))
        if not rate or rate <= 0:
            self.container.close()
            raise VideoError(f"{self.source}: the stream declares no frame rate")
        self.rate = Fraction(rate)
        self.fps = float(self.rate)
        self.width, self.height = self.stream.codec_context.width, self.stream.codec_context.height
        self.frame_count = int(self.stream.frames) or None
        self.frames_read = 0

    def __iter__(self) -> Iterator[Frame]:
        av = _av()
        first = None
        try:
            for frame in self.container.decode(self.stream):
                stamp = frame.time if frame.time is not None else self.frames_read / self.fps
                first = stamp if first is None else first
                image = frame.to_ndarray(format="rgb24")
                yield Frame(self.frames_read, float(stamp - first), image)
                self.frames_read += 1
        except av.error.FFmpegError as err:
            raise VideoError(f"{self.source}: decoding failed after {self.frames_read} frame(s) "
                             f"({err.strerror or err})") from None

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- writing ------------------------------------------------------------------------------------
class VideoWriter:
    """H.264 (libx264) writer of ``(H, W, 3)`` uint8 RGB frames at a constant ``fps``.

    4:2:0 chroma (what every player shows) when both sides are even; 4:4:4 otherwise, so that the
    output keeps the input's exact size. ``crf``/``preset`` are libx264's; ``veryfast`` leaves the
    cores to the server. Writes ``path`` directly: wrap it in :class:`banet.atomic.Staged` for atomicity.
    """

    def __init__(self, path: str | Path, *, fps: float | Fraction, width: int, height: int,
                 crf: int = 20, preset: str = "veryfast", faststart: bool = True) -> None:
        av = _av()
        options = {"movflags": "+faststart"} if faststart and Path(path).suffix.lower() in (".mp4", ".m4v", ".mov") else {}
        self.container = av.open(str(path), mode="w", options=options)
        rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream("libx264", rate=rate)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        self.stream.options = {"crf": str(crf), "preset": preset}
        self.size = (height, width)
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        av = _av()
        if image.shape[:2] != self.size or image.dtype != np.uint8:
            raise ValueError(f"frame {self.frames}: expected {self.size} uint8 RGB, got {image.shape} {image.dtype}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames  # time base 1/fps: constant rate
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode(None):  # flush the encoder's delayed frames
            self.container.mux(packet)
        self.container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(frames, path: str | Path, *, fps: float, force: bool = False, **options) -> Path:
    """Write an iterable of same-size ``(H, W, 3)`` uint8 frames as an H.264 video, atomically."""
    from banet.atomic import Staged

    staged = Staged(path, force=force)
    writer = None
    try:
        for image in frames:
            if writer is None:
                writer = VideoWriter(staged.tmp, fps=fps, width=image.shape[1], height=image.shape[0], **options)
            writer.write(image)
        if writer is None:
            raise ValueError(f"{path}: no frames to write")
        writer.close()
        return staged.commit()
    except BaseException:
        staged.discard()
        raise


# --- streaming ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameResult:
    """One CSV row: what happened to frame ``frame`` (``status`` in :data:`STATUSES`)."""

    frame: int
    pts_s: float
    status: str
    sent_s: float = float("nan")
    """When it was sent, seconds after the stream started (the pacing clock's zero)."""
    latency_ms: float = float("nan")
    """Sent -> answered, client side: the request's encoding, the gRPC round trip and the server."""
    area: int | None = None
    attempts: int = 0
    error: str = ""

    def row(self) -> list:
        def num(v, fmt):
            return "" if v != v else format(v, fmt)

        return [self.frame, f"{self.pts_s:.4f}", num(self.sent_s, ".4f"), self.status, num(self.latency_ms, ".2f"),
                "" if self.area is None else self.area, self.attempts, self.error]


@dataclass
class StreamSummary:
    """The stream's counts and timings (``banet-client VIDEO`` prints it; the video goal's results file holds it)."""

    source: str
    source_fps: float
    speed: float
    send: str
    width: int
    height: int
    max_in_flight: int
    warmup_frames: int
    frames_read: int = 0
    sent: int = 0
    ok: int = 0
    errors: int = 0
    dropped: int = 0
    dropped_steady: int = 0
    """Dropped after the first ``warmup_frames`` frames (connection set-up and first-call costs excluded)."""
    latency_p50_ms: float = float("nan")
    latency_p99_ms: float = float("nan")
    latency_max_ms: float = float("nan")
    duration_s: float = float("nan")
    """From the pacing clock's start to the last answer."""
    achieved_fps: float = float("nan")
    """Answered frames per second of ``duration_s``."""
    max_lag_ms: float = 0.0
    """How far reading fell behind the pacing clock at worst (decoding or a full writer queue)."""
    max_in_flight_seen: int = 0
    client_cpu_ms_per_frame: float = float("nan")
    """This process's CPU time (every thread: decoding, encoding requests, overlay, writing) per frame read."""
    frames_declared: int | None = None
    overlay_scaled: int = 0
    """Frames whose size differed from the first (the stream changed resolution): scaled to the overlay's size
    there; their masks and CSV rows are at their own size."""
    overlay_error: str = ""
    """Why the overlay ended before the stream did (a write error); the CSV went on."""
    stopped: str = ""
    """Why the stream ended early (server unavailable, interrupted, decode error); empty when it ran to its end."""
    overlay: str = ""
    csv: str = ""
    error_examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


class PacingClock:
    """Wall-clock release times of frames: ``wait(pts_s)`` sleeps until ``start + pts_s / speed``.

    Returns how late the call came (seconds, 0 when on time). ``speed=math.inf`` never waits.
    """

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self.start = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.start

    def wait(self, pts_s: float) -> float:
        if math.isinf(self.speed):
            return 0.0
        ahead = pts_s / self.speed - self.now()
        if ahead > 0:
            time.sleep(ahead)
            return 0.0
        return -ahead


@dataclass
class _Pending:
    frame: Frame
    sent_s: float = float("nan")
    future: object = None  # concurrent.futures.Future of (Prediction | None, latency_s, error)


SENDS = ("array", "jpeg")
"""How a frame travels: ``array`` hands the ``(H, W, 3)`` array to ``TritonSegmenter.predict`` (lossless; it
chooses the wire form), ``jpeg`` encodes it here as a JPEG of :data:`JPEG_QUALITY` and sends those bytes
(a frame of a lossy video, re-encoded: a few ms at 720p where a PNG takes over a hundred, docs/serving.md)."""
JPEG_QUALITY = 90


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """``(H, W, 3)`` uint8 RGB as JPEG bytes (libjpeg-turbo through simplejpeg when installed, else Pillow)."""
    from banet import processing

    if processing.simplejpeg_available():
        import simplejpeg

        return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=quality, colorspace="RGB")
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def frame_payload(image: np.ndarray, send: str) -> np.ndarray | bytes:
    """What :meth:`TritonSegmenter.predict` is given for a frame (see :data:`SENDS`)."""
    if send == "array":
        return image
    if send == "jpeg":
        return encode_jpeg(image)
    raise ValueError(f"send must be one of {', '.join(SENDS)}, got {send!r}")


def _predict(segmenter, image: np.ndarray, threshold: float | None, send: str):
    """(prediction, latency_s, error): the worker never raises, a failed frame is one error row."""
    from banet.client import InferenceError

    started = time.perf_counter()
    try:
        pred = segmenter.predict(frame_payload(image, send), threshold=threshold)
        return pred, time.perf_counter() - started, None
    except InferenceError as err:
        return None, time.perf_counter() - started, err
    except Exception as err:  # noqa: BLE001 - one bad frame must not end a live stream
        return None, time.perf_counter() - started, err


def output_paths(out_dir: str | Path, source: str | int | Path) -> tuple[Path, Path]:
    """``DIR/<name>_overlay.mp4`` and ``DIR/<name>_frames.csv`` (``camera<N>`` for a camera)."""
    name = f"camera{source}" if is_camera(str(source)) else Path(str(source)).stem
    return Path(out_dir) / f"{name}_overlay.mp4", Path(out_dir) / f"{name}_frames.csv"


def stream_video(segmenter, source: str | int | Path, overlay_path: str | Path | None, csv_path: str | Path, *,
                 max_in_flight: int = 2, speed: float = 1.0, warmup_frames: int | None = None,
                 max_frames: int | None = None, threshold: float | None = None, force: bool = False,
                 give_up_s: float = 10.0, camera_fps: float | None = None, send: str = "array", drop: bool = True,
                 on_frame: Callable[[FrameResult, np.ndarray, np.ndarray | None], None] | None = None) -> StreamSummary:
    """Stream ``source`` (a video file or camera index) through ``segmenter`` (a :class:`~banet.client.TritonSegmenter`).

    ``speed``: multiple of the source rate for files (``math.inf``: as fast as frames decode); a camera is
    read as it delivers. ``warmup_frames`` (default: one second of frames) are left out of
    ``dropped_steady``. ``drop=False`` waits for a free slot instead of dropping (every frame of a file is
    segmented; the stream then falls behind the source, seen as lag). ``overlay_path`` None writes no overlay video (the CSV only). ``send``: how each frame travels (:data:`SENDS`). ``on_frame(result, image, mask)`` is called in frame order (``mask`` None unless
    ``ok``). Raises :class:`VideoError` when the source cannot be opened and ``FileExistsError`` when an
    output exists (unless ``force``), both before anything is sent.
    """
    from concurrent.futures import ThreadPoolExecutor

    from banet import processing
    from banet.atomic import Staged

    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
    if not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    if send not in SENDS:
        raise ValueError(f"send must be one of {', '.join(SENDS)}, got {send!r}")
    for path in (overlay_path, csv_path):  # refused before the source is opened or a folder made
        if path is not None and not force and Path(path).exists():
            raise FileExistsError(f"{path} exists; pass --force to replace it")
    reader = VideoReader(source, camera_fps=camera_fps)
    try:
        overlay_out = None if overlay_path is None else Staged(overlay_path, force=force)
        csv_out = Staged(csv_path, force=force)
    except BaseException:
        reader.close()
        raise
    if reader.camera:
        speed = math.inf  # a camera delivers frames at its own rate: never wait on top of it
    warmup = int(round(reader.fps)) if warmup_frames is None else warmup_frames
    summary = StreamSummary(source=str(source), source_fps=reader.fps, speed=speed, send=send, width=reader.width,
                            height=reader.height, max_in_flight=max_in_flight, warmup_frames=warmup,
                            frames_declared=reader.frame_count, overlay=str(overlay_path or ""), csv=str(csv_path))
    # the writer thread takes frames in order; its queue is bounded (about 2 s of frames plus the slots):
    # a writer that cannot keep up slows reading (seen as lag), it never fills memory
    pending: queue.Queue[_Pending | None] = queue.Queue(maxsize=max_in_flight + max(8, int(2 * reader.fps)))
    slots = threading.BoundedSemaphore(max_in_flight)
    in_flight = [0]
    in_flight_lock = threading.Lock()
    stop = threading.Event()
    latencies: list[float] = []
    state = {"failing_since": None, "last_answer": 0.0}  # failing_since: (sent_s, frame) of a streak's first failure
    clock = PacingClock(speed)

    def release(_future) -> None:
        with in_flight_lock:
            in_flight[0] -= 1
        slots.release()

    def finish(item: _Pending, video: VideoWriter | None, rows) -> None:
        frame, mask = item.frame, None
        if item.future is None:
            result = FrameResult(frame.index, frame.time_s, "dropped")
            summary.dropped += 1
            summary.dropped_steady += frame.index >= warmup
        else:
            pred, latency_s, err = item.future.result()
            state["last_answer"] = max(state["last_answer"], item.sent_s + latency_s)
            if err is None:
                mask = pred.mask
                if mask.shape != frame.image.shape[:2]:
                    err = ValueError(f"server mask {mask.shape} != frame {frame.image.shape[:2]}")
                    mask = None
            if err is None:
                state["failing_since"] = None
                result = FrameResult(frame.index, frame.time_s, "ok", item.sent_s, 1000 * latency_s, pred.area,
                                     pred.attempts)
                summary.ok += 1
                latencies.append(1000 * latency_s)
            else:
                status = getattr(err, "status", None)
                result = FrameResult(frame.index, frame.time_s, "error", item.sent_s, 1000 * latency_s,
                                     error=str(err) or type(err).__name__)
                summary.errors += 1
                if len(summary.error_examples) < 5:
                    summary.error_examples.append(f"frame {frame.index}: {result.error}")
                # every failure counts, not only UNAVAILABLE: a hung server answers DEADLINE_EXCEEDED forever
                if state["failing_since"] is None:
                    state["failing_since"] = (item.sent_s, frame.index)
                since, first = state["failing_since"]
                gone = item.sent_s + latency_s - since
                if gone >= give_up_s and not stop.is_set():
                    what = "has been unavailable" if status == UNAVAILABLE else "has answered no frame"
                    summary.stopped = (f"the server at {segmenter.url} {what} since frame {first} "
                                       f"({gone:.1f} s, the limit is {give_up_s:g} s): {result.error}")
                    stop.set()
        rows.writerow(result.row())  # before the overlay: the CSV does not depend on it
        if video is not None and not summary.overlay_error:
            shown = processing.overlay(frame.image, mask) if mask is not None else frame.image
            if shown.shape[:2] != video.size:  # the stream changed resolution: the overlay keeps its first size
                if not summary.overlay_scaled:
                    log.warning("%s: frame %d is %dx%d, the overlay %dx%d: scaled there", source, frame.index,
                                shown.shape[1], shown.shape[0], video.size[1], video.size[0])
                summary.overlay_scaled += 1
                shown = processing.resize_image(shown, video.size)
            try:
                video.write(shown)
            except Exception as err:  # noqa: BLE001 - a full disk, an encoder error: the CSV goes on
                summary.overlay_error = f"the overlay ended at frame {frame.index}: {err}"
                log.warning("%s", summary.overlay_error)
        if on_frame is not None:
            on_frame(result, frame.image, mask)

    writer_error: list[BaseException] = []

    def write_all(video: VideoWriter | None, rows) -> None:
        try:
            while (item := pending.get()) is not None:
                finish(item, video, rows)
        except BaseException as err:  # noqa: BLE001 - handed to the reading thread, which raises it
            writer_error.append(err)
            stop.set()
            while pending.get() is not None:  # unblock the reader until its end marker
                pass

    # ultrafast: 13 CPU ms per 720p frame against veryfast's 26 (2-core EPYC, 2026-12-02), at twice the file
    # size; the overlay shares the cores with the server
    video = None if overlay_out is None else VideoWriter(overlay_out.tmp, fps=reader.rate, width=reader.width,
                                                         height=reader.height, preset="ultrafast")
    cpu_start = time.process_time()
    csv_file = open(csv_out.tmp, "w", newline="")
    rows = csv.writer(csv_file)
    rows.writerow(CSV_COLUMNS)
    writer = threading.Thread(target=write_all, args=(video, rows), name="banet-video-writer", daemon=True)
    writer.start()
    pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="banet-video-request")
    committed = csv_kept = False
    try:
        try:
            for frame in reader:
                summary.frames_read += 1
                summary.max_lag_ms = max(summary.max_lag_ms, 1000 * clock.wait(frame.time_s))
                item = _Pending(frame)
                if slots.acquire(blocking=not drop):
                    with in_flight_lock:
                        in_flight[0] += 1
                        summary.max_in_flight_seen = max(summary.max_in_flight_seen, in_flight[0])
                    item.sent_s = clock.now()
                    item.future = pool.submit(_predict, segmenter, frame.image, threshold, send)
                    item.future.add_done_callback(release)
                    summary.sent += 1
                pending.put(item)
                if stop.is_set() or (max_frames is not None and summary.frames_read >= max_frames):
                    break
        except KeyboardInterrupt:  # a camera's normal end; a file's early one
            if not reader.camera:
                summary.stopped = f"interrupted after {summary.frames_read} frame(s)"
        except VideoError as err:
            summary.stopped = str(err)
        finally:
            pending.put(None)
            writer.join()
            pool.shutdown(wait=True)
            reader.close()
        if not summary.stopped and not writer_error and reader.frame_count and not reader.camera \
                and max_frames is None and summary.frames_read < reader.frame_count:
            summary.stopped = (f"{source}: the stream ended after {summary.frames_read} of the "
                               f"{reader.frame_count} frames it declares (truncated?)")
        summary.client_cpu_ms_per_frame = 1000 * (time.process_time() - cpu_start) / max(summary.frames_read, 1)
        if summary.frames_read == 0:
            raise VideoError(f"{source}: no frame could be decoded" + (f" ({summary.stopped})" if summary.stopped else ""))
        # the CSV first: every frame's answer, whatever becomes of the overlay
        csv_file.close()
        csv_out.commit()
        csv_kept = True
        if overlay_out is not None:
            try:
                video.close()  # a partial overlay (ended by a write error) is kept when it can be finished
            except Exception as err:  # noqa: BLE001 - e.g. the disk is still full: no playable file
                finished = f"{overlay_path} could not be finished and was not written ({err})"
                summary.overlay_error = "; ".join(filter(None, (summary.overlay_error, finished)))
                summary.overlay = ""
                overlay_out.discard()
            else:
                overlay_out.commit()
        committed = True
    finally:
        if not committed:
            if not csv_kept:
                csv_file.close()
                csv_out.discard()
            try:
                if video is not None:
                    video.container.close()
            except Exception:  # noqa: BLE001 - already failing; the temporary file is removed next
                pass
            if overlay_out is not None:
                overlay_out.discard()
    if writer_error:  # after the files are kept: the frames handled so far are not lost to it
        raise writer_error[0]
    if latencies:
        summary.latency_p50_ms = float(np.percentile(latencies, 50))
        summary.latency_p99_ms = float(np.percentile(latencies, 99))
        summary.latency_max_ms = float(max(latencies))
    summary.duration_s = state["last_answer"] if summary.sent else clock.now()
    if summary.duration_s > 0:
        summary.achieved_fps = summary.ok / summary.duration_s
    return summary


def summary_lines(s: StreamSummary) -> list[str]:
    """The end-of-stream report, a few lines for the terminal."""
    def ms(v):
        return "-" if v != v else f"{v:.1f} ms"

    lines = [f"{s.frames_read} frames read ({s.width}x{s.height} at {s.source_fps:.2f} fps"
             + ("" if s.speed == 1 else f", paced at {s.speed:g}x" if not math.isinf(s.speed) else ", unpaced") + "), "
             f"{s.sent} sent as {s.send} ({s.ok} ok, {s.errors} failed), {s.dropped} dropped "
             f"({s.dropped_steady} after the {s.warmup_frames}-frame warm-up) with at most {s.max_in_flight} in flight",
             f"latency p50 {ms(s.latency_p50_ms)}, p99 {ms(s.latency_p99_ms)}; achieved {s.achieved_fps:.2f} fps "
             f"of {s.source_fps * (1 if math.isinf(s.speed) else s.speed):.2f} paced; reading lagged at most {s.max_lag_ms:.0f} ms",
             f"client CPU {s.client_cpu_ms_per_frame:.1f} ms per frame; overlay: {s.overlay or 'not written'}; "
             f"per-frame CSV: {s.csv}"]
    if s.overlay_scaled:
        lines.append(f"{s.overlay_scaled} frame(s) of another size than the first were scaled to the overlay's "
                     f"{s.width}x{s.height} (their masks and CSV rows keep their own size)")
    if s.overlay_error:
        lines.append(f"overlay: {s.overlay_error}")
    if s.stopped:
        lines.append(f"stopped early: {s.stopped}")
    return lines
