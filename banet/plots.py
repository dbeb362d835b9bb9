"""Training-curve plot (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_history(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """PNG of training loss and validation JA/DI per epoch, from ``fit``'s history records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["loss"].get("total", float("nan")) for r in history], marker="o", label="total")
    if history and "main" in history[0]["loss"]:
        ax_loss.plot(epochs, [r["loss"]["main"] for r in history], marker=".", label="main BCE")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.legend()
    scored = [r for r in history if "val" in r]
    for key in ("JA", "DI"):
        ax_val.plot([r["epoch"] for r in scored], [r["val"]["mean"][key] for r in scored], marker="o", label=key)
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("validation (mean over images)")
    ax_val.set_ylim(0, 1)
    ax_val.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
