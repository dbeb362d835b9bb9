"""ONNX Runtime as a :data:`banet.inference.Runner` (the export gate and the bench both use it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from banet.inference import Runner
from banet.spec import network_tensors


def available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def ort_session(path: str | Path, providers: list[str] | None = None, threads: int | None = None,
                *, spinning: bool | None = None):
    """An ``onnxruntime.InferenceSession`` on ``path`` (CPU provider unless ``providers`` says).

    ``spinning``: whether idle intra-op threads spin (None keeps ORT's default, which spins).
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # keep ORT's own warnings (e.g. unused initializers) off the terminal
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


def ort_runner(path: str | Path, providers: list[str] | None = None, threads: int | None = None,
               *, io: str = "float32") -> Runner:
    """Run an exported model: ``(B, 3, S, S)`` float32 -> ``(B, 1, S, S)`` float32 logits, or for its
    serving variant (``io="uint8"``) ``(B, S, S, 3)`` uint8 -> ``(B, 1, S, S)`` float16 probabilities."""
    session = ort_session(path, providers, threads)
    tensor_in, tensor_out = network_tensors(io)

    def run(batch: np.ndarray) -> np.ndarray:
        feed = {tensor_in.name: np.ascontiguousarray(batch, dtype=tensor_in.dtype)}
        (out,) = session.run([tensor_out.name], feed)
        return np.asarray(out, dtype=tensor_out.dtype)

    return run
