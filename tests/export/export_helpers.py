"""Helpers shared by the export tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path


def artifact(exported: dict, name: str) -> tuple[Path, dict]:
    """The file and manifest entry of the artifact ``name`` of an export's manifest."""
    item = next(a for a in exported["artifacts"] if a["name"] == name)
    return Path(exported["directory"]) / item["path"], item
