"""banet-synth writes a small dataset in the real layout; its lesions are real shapes."""

from __future__ import annotations

import numpy as np
import pytest

from banet import processing
from banet.cli.synth import main as synth_main
from banet.data.pairs import find_pairs
from banet.data.synthetic import SynthConfig, write_dataset


def test_layout_splits_and_lesions(tmp_path):
    out = write_dataset(tmp_path / "s", SynthConfig(count=10, size=48, seed=3))
    counts = {s: len(find_pairs(out, s)) for s in ("train", "val", "test")}
    assert counts == {"train": 6, "val": 2, "test": 2}
    for pair in find_pairs(out, "train"):
        image, mask = processing.load_image(pair.image), processing.load_mask(pair.mask)
        assert image.shape == (48, 48, 3) and mask.shape == (48, 48)
        assert 0.01 < mask.mean() < 0.6  # one lesion, not the whole image
        # the lesion differs in colour from the background (something to learn)
        assert np.abs(image[mask].mean(0) - image[~mask].mean(0)).max() > 20


def test_seeded_and_refuses_to_overwrite(tmp_path, capsys):
    a = write_dataset(tmp_path / "a", SynthConfig(count=4, size=32, seed=1))
    b = write_dataset(tmp_path / "b", SynthConfig(count=4, size=32, seed=1))
    assert (a / "images" / "synth_0000.png").read_bytes() == (b / "images" / "synth_0000.png").read_bytes()
    with pytest.raises(FileExistsError, match="not empty"):
        write_dataset(a, SynthConfig(count=4, size=32))
    assert synth_main([str(a), "--count", "4", "--size", "32"]) == 2
    assert "--force" in capsys.readouterr().err
    assert synth_main([str(a), "--count", "5", "--size", "32", "--force"]) == 0
    assert len(find_pairs(a)) == 5


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="count"):
        SynthConfig(count=1)
    with pytest.raises(ValueError, match="fraction"):
        SynthConfig(val_fraction=0.6, test_fraction=0.5)


def test_force_over_a_larger_set_leaves_no_stale_pairs(tmp_path):
    out = write_dataset(tmp_path / "s", SynthConfig(count=8, size=32))
    (out / "images" / "notes.txt").write_text("a user's file")  # not the generator's: kept
    write_dataset(out, SynthConfig(count=4, size=32), force=True)
    assert len(find_pairs(out)) == 4  # the whole folder, not only what splits.csv names
    assert (out / "images" / "notes.txt").is_file()


def test_a_config_without_training_images_is_refused():
    with pytest.raises(ValueError, match="no training image"):
        SynthConfig(count=4, val_fraction=0.5, test_fraction=0.45)
