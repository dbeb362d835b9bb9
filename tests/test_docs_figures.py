"""Every figure in the README and docs/ cites a results file that exists, and the README's figure table shows
numbers its cited files hold.

- Every ``bench/results/...`` path named in README.md or docs/*.md (a link, or a path in the text: ``STEM.{json,md}``,
  ``STEM.*``, a stem) must exist; a pattern (``*``, ``NAME``, ``<...>``) is a description, not a citation.
- Each row of the README's table "Measured so far" must cite at least one results file (under bench/results/, or a
  model card written by banet-release under models/), and every decimal number in its result cell (``75.1``,
  ``0.9998``, ``1.61x``, ``+57.4 %``, ``1,844``) must be a number of a cited file at the precision shown (or that
  fraction in per cent): a figure typed by hand, or one whose file was replaced, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TABLE = "## Measured so far"
CITED = re.compile(r"(?:\.\./)?((?:bench/results|models)/[A-Za-z0-9_.:+{},*<>/-]+)")
NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?![\d.])|(?<![\w.])\d+\.\d+")
FILE_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def cited_paths(text: str) -> list[str]:
    """The concrete results paths a document names (patterns such as ``hotpath_*`` or ``NAME.json`` left out)."""
    out = []
    for raw in CITED.findall(text):
        path = raw.rstrip(".,:;)`'\"")
        if not path.startswith("bench/results/") or any(c in path for c in "*<>") or "NAME" in path or "STEM" in path:
            continue
        out.append(path)
    return out


def resolve(path: str) -> list[Path]:
    """The files a cited path stands for: ``X.{json,md}`` -> both; ``X`` (a stem or a folder) -> what exists."""
    braces = re.fullmatch(r"(.*)\.\{([^}]*)\}", path)
    if braces:
        return [ROOT / f"{braces[1]}.{ext}" for ext in braces[2].split(",")]
    p = ROOT / path
    if p.exists():
        return [p]
    found = [q for q in (p.with_name(p.name + ".json"), p.with_name(p.name + ".md")) if q.exists()]
    return found or [p]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_cited_results_file_exists(doc):
    text = doc.read_text()
    missing = [f"{path} -> {f.relative_to(ROOT)}" for path in cited_paths(text) for f in resolve(path) if not f.exists()]
    assert not missing, f"{doc.name} cites results files that do not exist: {missing}"


def table_rows(readme: str) -> list[str]:
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(TABLE))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("| ") and not line.startswith("| what |"):
            rows.append(line)
        elif rows and not line.startswith("|"):
            break
    return rows


def row_files(row: str) -> list[Path]:
    files = []
    for target in re.findall(r"\]\(((?:bench/results|models)/[^)\s]+)\)", row):
        p = ROOT / target
        if p.is_dir():
            files += sorted(q for q in p.glob("*") if q.suffix in (".md", ".json"))
        else:
            files += [q for q in dict.fromkeys([p, p.with_suffix(".json"), p.with_suffix(".md")]) if q.is_file()]
    return files


def holds(number: str, values: set[float]) -> bool:
    """``number`` as shown (its decimals) is one of ``values`` rounded alike, or such a fraction in per cent."""
    digits = len(number.split(".")[1]) if "." in number else 0
    x = float(number.replace(",", ""))
    tol = 0.5 * 10 ** -digits + 1e-9
    return any(abs(abs(v) - x) <= tol or abs(abs(100 * v) - x) <= tol for v in values)


PROVENANCE_KEYS = ("machine", "command", "libraries")
"""JSON keys whose numbers say where and how a result was made (versions, load, flags), not what it measured."""
NOT_FIGURES = re.compile(r"`[^`\n]*`|\d{4}-\d{2}-\d{2}(?:T[\d:]+(?:Z|[+-]\d{2}:?\d{2})?)?|[\w.+-]+\.(?:png|json|md|pt|onnx|csv)\b")
"""Text whose numbers are not figures: code spans (commands, flags), dates and times, file names."""


def file_values(path: Path) -> set[float]:
    """The numbers a results file holds as results: a JSON's values outside :data:`PROVENANCE_KEYS`, the text of
    either kind with :data:`NOT_FIGURES` taken out."""
    import json

    def numbers(text: str):
        return (float(v) for v in FILE_NUMBER.findall(NOT_FIGURES.sub(" ", text)))

    if path.suffix == ".json":
        def walk(node):
            if isinstance(node, dict):
                for key, value in node.items():
                    if key not in PROVENANCE_KEYS:
                        yield from walk(value)
            elif isinstance(node, list):
                for value in node:
                    yield from walk(value)
            elif isinstance(node, bool):
                return
            elif isinstance(node, (int, float)):
                yield float(node)
            elif isinstance(node, str):
                yield from numbers(node)

        return set(walk(json.loads(path.read_text())))
    return set(numbers(path.read_text()))


def figure_numbers(cell: str) -> list[str]:
    cell = re.sub(r"\]\([^)]*\)", "]", cell)  # not the numbers of link targets (dates in file names)
    cell = re.sub(r"`[^`]*`", "", cell)  # nor those of commands and file names in code spans
    return NUMBER.findall(cell)


def test_readme_figures_are_numbers_of_their_cited_files():
    rows = table_rows((ROOT / "README.md").read_text())
    assert len(rows) >= 10
    problems = []
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split(" | ")]
        files = row_files(row)
        if not files:
            problems.append(f"{cells[0][:50]!r}: cites no results file")
            continue
        values = set().union(*(file_values(f) for f in files))
        absent = [n for n in figure_numbers(cells[1]) if not holds(n, values)]
        if absent:
            problems.append(f"{cells[0][:50]!r}: {absent} not in {[f.name for f in files]}")
    assert not problems, "\n".join(problems)


def test_the_checks_fail_on_a_figure_not_in_its_file(tmp_path):
    """The table check is not vacuous: a number the cited file does not hold is found."""
    row = "| x | test JA 75.1, worst 0.8099 | [f](bench/results/2026-12-02T0725Z_amd-epyc-2c_tiny128-trained-int8cpu-r3.md) |"
    values = set().union(*(file_values(f) for f in row_files(row)))
    assert holds("0.8099", values) and not holds("0.8123", values)
    # the numbers of where and when (date, load average, versions, the command line) are not figures
    assert not holds("2026.0", values) and not holds("3.11", values)
    assert cited_paths("see `bench/results/hotpath_2026-12-02T0310Z.{json,md}` and bench/results/soak_*.") == [
        "bench/results/hotpath_2026-12-02T0310Z.{json,md}"]
    assert not all(f.exists() for f in resolve("bench/results/nothing_2020-01-01.{json,md}"))
