"""references/serving/mask_encoding.py: every candidate round-trips, the report and the choice rule (timings not tested)."""

from __future__ import annotations

import numpy as np
import pytest


def test_every_candidate_round_trips_and_the_report_names_a_choice():
    from references.serving.mask_encoding import candidates, choice, markdown, measure

    disc = np.where(np.hypot(*np.mgrid[-50:50, -80:80]) < 30, 255, 0).astype(np.uint8)
    first_fg = disc.copy()
    first_fg[0, 0] = 255
    sets = {"kvasir test split": [disc, first_fg], "1920x1080": [np.zeros((1080, 1920), np.uint8), first_fg]}
    assert any(name.startswith("banet.mask_codec") for name in candidates())
    result = {"command": "pytest", "machine": {"cpu": "cpu", "cores": 2, "date": "today"}, "reps": 1,
              **measure(sets, reps=1)}
    for label, s in result["sets"].items():
        assert s["today_bytes"] == np.mean([2 * m.size for m in sets[label]])
        for name, r in s["candidates"].items():
            assert 0 < r["bytes"] < s["today_bytes"], name
    result["choice"] = choice(result)
    assert "**" in result["choice"]
    assert "| rle uint32 + zlib 1 |" in markdown(result)


def test_a_wrong_decode_is_caught():
    from references.serving.mask_encoding import time_candidate

    broken = (lambda m: m.tobytes(), lambda b: np.zeros((2, 2), np.uint8))
    with pytest.raises(AssertionError, match="differs"):
        time_candidate(broken, [np.full((2, 2), 255, np.uint8)])
