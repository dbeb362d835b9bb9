"""The paper's tables from banet-compare records: seeds grouped into rows, the seed spread, the comparison with
BA-Net, and the curves plot (records made by hand, so every expected number is known)."""

from __future__ import annotations

import pytest

from references.training.paper_tables import ABLATION_ROWS, NETWORK_ROWS, plot_curves, rows_of, seed_spread, table_markdown, versus_reference


def _record(row, arch, ablation, seed, ja, *, epochs=10):
    label = row if seed == 0 else f"{row}-seed{seed}"
    metrics = {"AC": 0.9, "DI": ja + 0.1, "JA": ja, "SE": 0.8, "SP": 0.95}
    return {"label": label, "row": row, "seed": seed, "arch": arch, "ablation": ablation,
            "metrics_paper": metrics, "metrics": {**metrics, "JA": ja - 0.01},
            "training": {"epochs": epochs, "stopped_early": epochs < 50,
                         "val_history": [{"epoch": e, "JA": ja * e / epochs} for e in range(1, epochs + 1)]}}


RECORDS = [_record("banet", "banet", "full", 0, 0.70), _record("banet", "banet", "full", 1, 0.74),
           _record("banet", "banet", "full", 2, 0.72), _record("unet", "unet", "full", 0, 0.60),
           _record("banet-baseline", "banet", "baseline", 0, 0.71, epochs=50)]


def test_seeds_become_one_row_with_mean_and_range():
    rows = rows_of(RECORDS)
    assert set(rows) == {"banet", "unet", "banet-baseline"}
    ja = rows["banet"].paper["JA"]
    assert (ja.mean, ja.min, ja.max, ja.n) == (pytest.approx(0.72), 0.70, 0.74, 3)
    assert rows["banet"].seeds == (0, 1, 2) and rows["banet"].original["JA"].mean == pytest.approx(0.71)
    assert seed_spread(rows) == pytest.approx(0.04)  # BA-Net's three seeds: 0.70 .. 0.74


def test_difference_from_banet_against_the_seed_spread():
    rows = rows_of(RECORDS)
    spread = seed_spread(rows)
    assert versus_reference(rows["unet"], rows["banet"], spread) == "-12.0 (exceeds the seed spread 4.0)"
    assert versus_reference(rows["banet-baseline"], rows["banet"], spread) == "-1.0 (within the seed spread 4.0)"
    assert versus_reference(rows["banet"], rows["banet"], spread) == "-"
    one_seed = rows_of([r for r in RECORDS if r["seed"] == 0])
    assert seed_spread(one_seed) is None
    assert "no seed spread" in versus_reference(one_seed["unet"], one_seed["banet"], None)


def test_how_each_run_ended():
    from references.training.paper_tables import run_end

    hist = [{"epoch": e, "JA": j} for e, j in enumerate([0.5, 0.6, 0.70, 0.69, 0.70, 0.704, 0.70, 0.706], start=1)]
    capped = {"key": {"patience": 4}, "training": {"epochs": 8, "stopped_early": False, "val_history": hist}}
    assert run_end(capped) == "8/8 cap +0.6"  # best of epochs 1-4: 0.70; best overall 0.706
    stopped = {"key": {"patience": 4}, "training": {"epochs": 8, "stopped_early": True, "val_history": hist[:6]}}
    assert run_end(stopped) == "8/6 patience"
    assert run_end({"training": {"epochs": 3, "stopped_early": False, "val_history": []}}) == "3/- cap"
    short = {"key": {"patience": 4, "epochs": 50}, "training": {"epochs": 8, "stopped_early": False,
                                                                "val_history": hist}}
    assert run_end(short) == "8/8 end"  # a step limit, not the cap
    assert run_end({**capped, "key": {"patience": 4, "epochs": 8}}) == "8/8 cap +0.6"


def test_tables_follow_the_papers_layout(tmp_path):
    lines = "\n".join(table_markdown(RECORDS, size=128, data_name="kvasir-seg"))
    assert "Table I" in lines and "Table IV" in lines
    table1 = lines.split("### Table IV")[0]
    assert table1.index("| unet |") < table1.index("| banet |")  # the paper's order, BA-Net last
    assert "| banet | 3 | 90.0 (90.0-90.0) | 82.0 (80.0-84.0) | 72.0 (70.0-74.0) |" in table1
    assert "91.1 / 86.1" in table1  # the paper's published BA-Net numbers on Kvasir-SEG
    assert "| banet-baseline | 1 |" in lines
    assert "| 50/50 cap | - |" in lines.split("### Table IV")[1]  # no patience in these records: no window
    assert "| 10/10 patience, 10/10 patience, 10/10 patience |" in table1
    assert NETWORK_ROWS[-1] == ABLATION_ROWS[-1] == "banet"
    png = plot_curves(RECORDS, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
