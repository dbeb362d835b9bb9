"""A trained checkpoint made fit to ship: weights and the facts a user needs, nothing to resume training with.

:func:`release_checkpoint` keeps the model (architecture, config, weights), the resolved train config, the
validation history and the test scores, and drops the optimizer, scheduler, scaler and RNG states (two thirds
of a training checkpoint's bytes with Adam). :func:`model_card` writes the Markdown card that goes beside it:
data, split, recipe, scores at both scoring sizes, license of the data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from banet.metrics import METRIC_NAMES

TRAINING_ONLY = ("optimizer", "scheduler", "scaler", "generator_states")
"""Checkpoint entries that only a resumed training run reads."""

DATA_LICENSES = {
    "kvasir-seg": "Kvasir-SEG (Jha et al., MMM 2020): for research and educational purposes only; any other use "
                  "needs the data owners' permission (datasets.simula.no/kvasir-seg). The weights learned from it "
                  "carry that restriction.",
    "isic2017": "ISIC 2017 (Codella et al., ISBI 2018): CC BY-NC 4.0 as distributed by the ISIC Archive.",
}


def release_checkpoint(source: str | Path, dest: str | Path, *, scores: dict[str, Any] | None = None,
                       force: bool = False) -> Path:
    """Write ``dest``: ``source`` without its training-only state, with ``scores`` (``banet.evaluate.evaluate``
    results) added as ``release_scores``. Refuses to replace ``dest`` unless ``force``."""
    import torch

    from banet.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

    dest = Path(dest)
    if dest.exists() and not force:
        raise FileExistsError(f"{dest} exists; pass --force to replace it")
    model, payload = model_from_checkpoint(source)
    extra = {k: v for k, v in payload.items()
             if k not in TRAINING_ONLY and k not in ("format", "arch", "model_config", "state_dict")}
    if scores is not None:
        extra["release_scores"] = scores
    save_checkpoint(dest, model, overwrite=True, **extra)
    again = load_checkpoint(dest)  # what a user will load: same weights, no training state
    for key, value in payload["state_dict"].items():
        if not torch.equal(again["state_dict"][key], value):
            raise RuntimeError(f"{dest}: weight {key} differs from {source} after writing")
    return dest


def _row(name: str, result: dict[str, Any]) -> str:
    return f"| {name} | " + " | ".join(f"{100 * result['mean'][m]:.1f}" for m in METRIC_NAMES) + " |"


def model_card(checkpoint: str | Path, evaluations: list[dict[str, Any]], *, data: str | Path,
               command: str, machine: dict[str, Any], run: dict[str, Any] | None = None,
               chosen: str | None = None) -> str:
    """The Markdown model card of a released checkpoint (``evaluations``: one ``evaluate`` result per split)."""
    from banet.checkpoint import file_sha256, load_checkpoint

    payload = load_checkpoint(checkpoint)
    c = payload.get("train_config") or {}
    history = payload.get("history") or []
    best = max((h for h in history if "val" in h), key=lambda h: h["val"]["mean"]["JA"], default=None)
    name = Path(data).resolve().name
    lines = [
        f"# Model card: `{Path(checkpoint).name}`", "",
        f"- network: `{payload['arch']}`, preset `{c.get('preset')}`, ablation `{c.get('ablation', 'full')}`; "
        f"{sum(v.numel() for v in payload['state_dict'].values() if v.is_floating_point()) / 1e6:.2f} M "
        "parameters and buffers; model config in the checkpoint (`banet.checkpoint.model_from_checkpoint` rebuilds it)",
        f"- trained from scratch (no ImageNet weights) on `{name}` split `{c.get('train_split')}`, validated on "
        f"`{c.get('val_split')}`, at {c.get('size')}x{c.get('size')} px; recipe `{c.get('recipe')}` "
        f"({c.get('optimizer')}, lr {c.get('lr')}, {c.get('schedule')} schedule over at most {c.get('epochs')} epochs, "
        f"early stopping patience {c.get('patience')}), batch {c.get('batch_size')}, augmentation `{c.get('augment')}`, "
        f"seed {c.get('seed')}",
        f"- kept: the epoch with the best validation JA: epoch {best['epoch']} (validation JA "
        f"{best['val']['mean']['JA']:.4f} at the training size) of {(run or payload).get('epoch')} epochs run"
        + (", the run stopped early" if (run or {}).get("stopped_early") else "") if best else None,
        f"- chosen: {chosen}" if chosen else None,
        f"- sha256 `{file_sha256(checkpoint)}`",
        f"- card written by `{command}` on {machine.get('cpu')} ({machine.get('cores')} cores), {machine.get('date')}",
        "", "## Scores (mean over images, %)", "",
        "Scored two ways: at 256x256 with the mask resized to that size, as the paper's tables are, and at each "
        "image's original size, as a user of the served model sees the masks.", "",
        "| split, scoring | " + " | ".join(METRIC_NAMES) + " |", "|---|" + "---:|" * len(METRIC_NAMES)]
    for ev in evaluations:
        size = ev.get("paper_score_size", 256)
        lines.append(_row(f"{ev['split']} ({ev['model']['images']} images), {size}x{size}", ev["model_paper"]))
        lines.append(_row(f"{ev['split']} ({ev['model']['images']} images), original size", ev["model"]))
    lines += ["", "## Data and license", "",
              DATA_LICENSES.get(name, f"`{name}`: see the data set's own license."), "",
              "## Limits", "",
              "A small network (a fraction of the paper's ResNet-101 width) trained on a CPU at low resolution: it is "
              "a real model for the demo, the serving path and the accuracy gates, not a clinical tool. The paper's "
              "BA-Net (ImageNet ResNet-101, 200 epochs) reports JA 86.1 on Kvasir-SEG."]
    return "\n".join(line for line in lines if line is not None) + "\n"


def write_release(source: str | Path, out_dir: str | Path, *, data: str | Path, splits: tuple[str, ...] = ("test",),
                  name: str | None = None, command: str = "", force: bool = False,
                  chosen: str | None = None) -> dict[str, Path]:
    """Evaluate ``source`` on ``splits`` of ``data``, then write ``OUT/NAME.pt`` (slim), ``OUT/NAME.md`` (the card)
    and ``OUT/NAME.json`` (the scores). ``chosen``: why this run was released among others (a line of the card and
    a field of the JSON). Nothing is replaced without ``force``."""
    from banet.atomic import write_text
    from banet.evaluate import evaluate, machine_info

    out_dir = Path(out_dir)
    name = name or Path(source).parent.name
    paths = {"checkpoint": out_dir / f"{name}.pt", "card": out_dir / f"{name}.md", "scores": out_dir / f"{name}.json"}
    existing = [p for p in paths.values() if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{existing[0]} exists; pass --force to replace it")
    evaluations = [evaluate(source, data, split) for split in splits]
    summary = {ev["split"]: {"images": ev["model"]["images"], "paper_256": ev["model_paper"]["mean"],
                             "original_size": ev["model"]["mean"]} for ev in evaluations}
    release_checkpoint(source, paths["checkpoint"], scores=summary, force=True)
    machine = machine_info()
    last = Path(source).with_name("last.pt")  # the run's end, beside a banet-train best.pt
    run = None
    if last.is_file() and last.resolve() != Path(source).resolve():
        from banet.checkpoint import load_checkpoint

        state = load_checkpoint(last)
        run = {"epoch": state.get("epoch"), "stopped_early": state.get("stopped_early")}
    write_text(paths["card"], model_card(paths["checkpoint"], evaluations, data=data, command=command, machine=machine,
                                         run=run, chosen=chosen))
    record = {"command": command, "machine": machine, "scores": summary, **({"chosen": chosen} if chosen else {})}
    write_text(paths["scores"], json.dumps(record, indent=2) + "\n")
    return paths
