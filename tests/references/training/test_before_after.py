"""references.training.before_after: its results go through the one results writer (dated name or --name, JSON +
Markdown + the curves plot, command and machine), and an existing result is never replaced without --force.
The two training runs are stood in for by recorded curves (the runs are ``banet-train`` / ``banet-eval``
processes of two commits, minutes each)."""

from __future__ import annotations

import json
import shlex

import pytest

import references.training.before_after as before_after

CURVE = [{"epoch": 1, "train_loss": 0.9, "val_JA_train_res": 0.2, "val_JA": 0.21, "val_DI": 0.3, "test_JA": 0.22,
          "test_DI": 0.31, "train_seconds": 10.0},
         {"epoch": 2, "train_loss": 0.7, "val_JA_train_res": 0.4, "val_JA": 0.41, "val_DI": 0.5, "test_JA": 0.42,
          "test_DI": 0.51, "train_seconds": 10.0}]


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    calls = []

    def run_version(name, source, data, work, epochs, log_dir):
        calls.append((name, epochs))
        return [dict(r, test_JA=r["test_JA"] + (0.01 if name == "after" else 0.0)) for r in CURVE[:epochs]]

    monkeypatch.setattr(before_after, "run_version", run_version)
    monkeypatch.setattr(before_after, "extract", lambda commit, dest: dest)
    (tmp_path / "data").mkdir()
    return calls


def test_writes_json_markdown_and_plot_and_refuses_to_overwrite(recorded, tmp_path, capsys):
    argv = ["--data", str(tmp_path / "data"), "--before", "HEAD", "--epochs", "2", "--work", str(tmp_path / "work"),
            "--out", str(tmp_path / "results"), "--name", "ba", "--title", "a title"]
    assert before_after.main(argv) == 0
    assert sorted(recorded) == [("after", 2), ("before", 2)]
    result = json.loads((tmp_path / "results" / "ba.json").read_text())
    assert result["command"] == "python -m references.training.before_after " + shlex.join(argv)
    assert result["machine"]["cores"] >= 1 and len(result["loadavg_start"]) == 3
    assert [r["test_JA"] for r in result["versions"]["after"]["curve"]] == pytest.approx([0.23, 0.43])
    md = (tmp_path / "results" / "ba.md").read_text()
    assert "# a title" in md and "| 2 | 0.7000 | 0.4100 | 0.4200 | 0.7000 | 0.4100 | 0.4300 |" in md
    assert (tmp_path / "results" / "ba_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert result["plots"]["curves"].endswith("ba_curves.png")
    capsys.readouterr()
    before = (tmp_path / "results" / "ba.json").read_bytes()
    assert before_after.main(argv) == 2 and "pass --force" in capsys.readouterr().err
    assert (tmp_path / "results" / "ba.json").read_bytes() == before
    assert before_after.main(argv + ["--force"]) == 0


def test_dated_name_by_default(recorded, tmp_path):
    argv = ["--data", str(tmp_path / "data"), "--before", "HEAD", "--epochs", "1", "--work", str(tmp_path / "work"),
            "--out", str(tmp_path / "results"), "--tag", "gate"]
    assert before_after.main(argv) == 0
    (written,) = (tmp_path / "results").glob("*.json")
    assert written.name.startswith("before_after_20") and written.stem.endswith("_gate")
