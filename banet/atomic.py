"""Atomic file writes: a reader (or a crash) never sees half a file under the final name."""

from __future__ import annotations

from pathlib import Path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to a hidden temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


class Staged:
    """A file written under a hidden temporary name beside ``path`` and renamed into place by :meth:`commit`.

    For writers that need a path rather than a string (a video encoder, a CSV written row by row). The
    temporary name keeps ``path``'s suffix, which some writers read the format from. ``force=False``
    refuses (``FileExistsError``) when ``path`` exists, at construction and again at commit, so a
    finished file is never replaced without being asked; :meth:`discard` removes the temporary file.
    """

    def __init__(self, path: str | Path, *, force: bool = False) -> None:
        self.path, self.force = Path(path), force
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp{self.path.suffix}")
        self._check()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _check(self) -> None:
        if not self.force and self.path.exists():
            raise FileExistsError(f"{self.path} exists; pass --force to replace it")

    def commit(self) -> Path:
        self._check()
        self.tmp.replace(self.path)
        return self.path

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)
