"""Checkpoints that rebuild their model: weights + constructor arguments + what made them.

Files are written atomically (temporary file, fsync, rename), so a killed process never leaves a
half-written file under a checkpoint's name, and read with ``torch.load(weights_only=True)``:
a checkpoint holds only tensors and plain Python values, never pickled objects.

Format 3 records the network's architecture (``arch``, a name of :data:`banet.model.ARCHITECTURES`)
beside its ``model_config``; format 2 predates the other architectures, so its checkpoints are BA-Net
and still load. Format 1 is refused with the reason (:data:`RETIRED_FORMATS`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from banet.model.registry import ARCHITECTURES, DEFAULT_ARCH, arch_of, build, config_from_dict, config_to_dict

FORMAT = "banet-checkpoint/3"
READABLE_FORMATS = {
    FORMAT: None,
    "banet-checkpoint/2": DEFAULT_ARCH,  # written before issue 15 added the comparison networks: BA-Net
}
"""Formats this code loads, with the architecture implied by those that do not record one."""
RETIRED_FORMATS = {
    "banet-checkpoint/1": "it was written before the attention gates moved before the ReLU (issue 14): "
                          "its weights load into today's model without an error but compute a different "
                          "function, so it is refused; retrain (banet-train) to get a current checkpoint",
}
"""Formats this code knows but will not load, with the reason (never a silently different model)."""


class CheckpointError(ValueError):
    """A file is missing, unreadable, or not a checkpoint of this project."""


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, overwrite: bool = False, **extra: Any) -> Path:
    """Save ``model``'s architecture, config and weights with ``extra`` entries (train config, history, ...).

    ``model`` is any network of :data:`banet.model.ARCHITECTURES` (DistributedDataParallel is
    unwrapped). Refuses to replace an existing file unless ``overwrite`` is True.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it")
    reserved = sorted({"format", "arch", "model_config", "state_dict"} & set(extra))
    if reserved:  # they would silently replace the checkpoint's own entries
        raise ValueError(f"extra entries may not be named {reserved}")
    net = getattr(model, "module", model)  # unwrap DistributedDataParallel
    try:
        arch = arch_of(net)
    except TypeError:
        raise TypeError(f"expected a network of banet.model.ARCHITECTURES, got {type(net).__name__}") from None
    payload = {"format": FORMAT, "arch": arch, "model_config": config_to_dict(net.config),
               "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}, **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict (``weights_only=True``), raising :class:`CheckpointError` clearly.

    The returned dict always has ``arch`` (for a format-2 file, the BA-Net it was written for).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle refused by weights_only, ...
        raise CheckpointError(f"{path} is not a readable checkpoint: {err}") from None
    found = payload.get("format") if isinstance(payload, dict) else None
    if found in RETIRED_FORMATS:
        raise CheckpointError(f"{path} has the retired format {found!r}: {RETIRED_FORMATS[found]}")
    if found not in READABLE_FORMATS:
        if isinstance(found, str) and found.startswith("banet-checkpoint/"):
            raise CheckpointError(f"{path} has the format {found!r}, which this version does not know "
                                  f"(it reads {sorted(READABLE_FORMATS)}); it was written by a newer banet")
        raise CheckpointError(f"{path} is not a BA-Net checkpoint (expected format {FORMAT!r})")
    implied = READABLE_FORMATS[found]
    if implied is not None:
        payload.setdefault("arch", implied)
    elif not isinstance(payload.get("arch"), str):
        raise CheckpointError(f"{path} has format {found!r} but no architecture name ('arch')")
    return payload


def model_from_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the network a checkpoint describes (any architecture), with its weights, in eval mode."""
    payload = load_checkpoint(path)
    arch = payload["arch"]
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{path} holds a {arch!r} network, which this version does not know "
                              f"(it builds {sorted(ARCHITECTURES)})")
    try:
        config = config_from_dict(arch, payload["model_config"])
        model = build(arch, config)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, ValueError, TypeError, RuntimeError) as err:
        raise CheckpointError(f"{path}: weights do not match the stored model config ({arch}): {err}") from None
    return model.eval(), payload


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file (used to tie artifacts to the checkpoint they came from)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
