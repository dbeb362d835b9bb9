"""The published layouts of CVC-ColonDB, SZ-CXR (Shenzhen) and RIM-ONE, on small copies written here.

Only Kvasir-SEG and ISIC-2017 are in ../shared/data, so each layout is generated with its real file
and folder names, formats (TIFF, BMP, grayscale PNG, 0/1 label masks, stereo JPEGs) and quirks
(images without masks, cup masks beside disc masks, several experts that disagree).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from banet.data import layouts
from banet.data.annotations import combine, read_pair
from banet.data.dataset import SegmentationDataset, load_split
from banet.data.pairs import DatasetError, find_pairs
from banet.data.splits import main as splits_main
from banet.data.splits import seeded_split

W, H = 48, 40


def _image(path, *, mode="RGB", size=(W, H), seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)


def _mask(path, box, *, size=(W, H), value=255, mode="L"):
    """A mask with foreground ``value`` in ``box`` = (x0, y0, x1, y1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = value
    Image.fromarray(m).convert(mode).save(path)


BOX = (10, 8, 30, 24)


def _foreground(box, size=(W, H)):
    m = np.zeros((size[1], size[0]), bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


# --- CVC-ColonDB -------------------------------------------------------------------------------
def test_cvc_colondb_numbered_tiff_images_and_masks(tmp_path):
    root = tmp_path / "CVC-ColonDB"
    for i in range(1, 21):
        _image(root / "images" / f"{i}.tiff", seed=i)
        _mask(root / "masks" / f"{i}.tiff", BOX)
    assert layouts.scan(root).layout == "two-folders"
    pairs = find_pairs(root)
    assert len(pairs) == 20 and {p.name for p in pairs} == {str(i) for i in range(1, 21)}
    image, mask = read_pair(pairs[0])
    assert image.shape == (H, W, 3) and np.array_equal(mask, _foreground(BOX))
    # no official split: a seeded 80/10/10 split, the same every time, disjoint and complete
    parts = {s: [p.name for p in find_pairs(root, s)] for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [16, 2, 2]
    assert sorted(sum(parts.values(), [])) == sorted(p.name for p in pairs)
    assert parts == {s: [p.name for p in find_pairs(root, s)] for s in ("train", "val", "test")}
    assert [p.name for p in find_pairs(root, "test", split_seed=1)] != parts["test"] or \
        [p.name for p in find_pairs(root, "val", split_seed=1)] != parts["val"]


def test_cvc_colondb_as_first_published_pN_masks_in_one_folder(tmp_path):
    root = tmp_path / "CVC-ColonDB"
    for i in (1, 2, 3):
        _image(root / f"{i}.bmp", seed=i)
        _mask(root / f"p{i}.bmp", BOX)  # polyp mask
        _mask(root / f"s{i}.bmp", (0, 0, 4, 4))  # non-informative region: not the ground truth
        _mask(root / f"c{i}.bmp", (10, 8, 11, 24))  # contour
    assert layouts.scan(root).layout == "prefixed"
    pairs = find_pairs(root)
    assert [p.name for p in pairs] == ["1", "2", "3"] and pairs[0].mask.name == "p1.bmp"
    assert np.array_equal(read_pair(pairs[1])[1], _foreground(BOX))
    (root / "p3.bmp").unlink()
    with pytest.raises(DatasetError, match=r"3\.bmp.*--skip-unpaired"):
        find_pairs(root)


def test_cvc_clinicdb_original_and_ground_truth_folders(tmp_path):
    root = tmp_path / "CVC-ClinicDB"
    for i in (1, 2):
        _image(root / "Original" / f"{i}.tif", seed=i)
        _mask(root / "Ground Truth" / f"{i}.tif", BOX, mode="1")  # bilevel TIFF
    pairs = find_pairs(root)
    assert [p.name for p in pairs] == ["1", "2"]
    assert np.array_equal(read_pair(pairs[0])[1], _foreground(BOX))


# --- SZ-CXR (Shenzhen chest X-rays, lung masks) ------------------------------------------------
def _shenzhen(root, count=10, *, without_mask=()):
    for i in range(1, count + 1):
        name = f"CHNCXR_{i:04d}_{i % 2}"
        _image(root / "CXR_png" / f"{name}.png", mode="L", seed=i)  # grayscale X-rays
        if i not in without_mask:
            _mask(root / "masks" / f"{name}_mask.png", BOX)
    return root


def test_shenzhen_grayscale_images_and_mask_suffix(tmp_path):
    root = _shenzhen(tmp_path / "shenzhen")
    pairs = find_pairs(root)
    assert len(pairs) == 10 and pairs[0].name == "CHNCXR_0001_1" and pairs[0].mask.name == "CHNCXR_0001_1_mask.png"
    ds = SegmentationDataset(pairs, 32, workers=1)
    assert ds.images.shape == (10, 3, 32, 32)  # grayscale expanded to the three channels the models read
    assert (ds.images[:, 0] == ds.images[:, 1]).all() and (ds.images[:, 1] == ds.images[:, 2]).all()
    assert ds.masks.sum() > 0


def test_shenzhen_images_without_masks_are_named_or_skipped(tmp_path):
    # the published masks cover 566 of the 662 images: the others must be named, or skipped on request
    root = _shenzhen(tmp_path / "shenzhen", without_mask=(3, 7))
    with pytest.raises(DatasetError, match=r"2 unpaired.*CHNCXR_0003_1\.png.*CHNCXR_0007_1\.png.*--skip-unpaired"):
        find_pairs(root)
    with pytest.raises(DatasetError, match="CHNCXR_0003_1"):
        find_pairs(root, "train")  # a seeded split refuses them too
    assert len(find_pairs(root, skip_unpaired=True)) == 8
    # the seeded split is over the paired images, so skipping the unpaired ones leaves it well defined
    split = {s: [p.name for p in find_pairs(root, s, skip_unpaired=True)] for s in ("train", "val", "test")}
    assert sorted(sum(split.values(), [])) == sorted(p.name for p in find_pairs(root, skip_unpaired=True))


def test_mask_without_image_is_named(tmp_path):
    root = _shenzhen(tmp_path / "shenzhen", count=2)
    _mask(root / "masks" / "CHNCXR_0099_0_mask.png", BOX)
    with pytest.raises(DatasetError, match=r"CHNCXR_0099_0_mask\.png"):
        find_pairs(root)


# --- RIM-ONE (optic disc, several experts) ----------------------------------------------------
EXPERT_BOXES = [(10, 8, 30, 24), (12, 8, 30, 24), (10, 10, 30, 24), (10, 8, 26, 24), (20, 20, 40, 36)]


def _rim_one_r1(root, categories=("Normal", "Deep"), count=3):
    for category in categories:
        for i in range(1, count + 1):
            _image(root / category / f"Im{i:03d}.bmp", seed=i)
            for e, box in enumerate(EXPERT_BOXES, start=1):
                _mask(root / category / f"Expert{e}_masks" / f"Im{i:03d}-exp{e}.bmp", box)
    return root


def test_rim_one_r1_five_experts_majority_vote_and_choices(tmp_path):
    root = _rim_one_r1(tmp_path / "RIM-ONE r1")
    assert layouts.scan(root).layout == "expert-tree"
    pairs = find_pairs(root)
    # Im001 exists in two category folders: every name carries its folder
    assert [p.name for p in pairs][:3] == ["Deep_Im001", "Deep_Im002", "Deep_Im003"] and len(pairs) == 6
    assert len(pairs[0].annotations) == 5 and pairs[0].experts == "majority"
    experts = [_foreground(b) for b in EXPERT_BOXES]
    expected = np.sum(experts, axis=0) >= 3  # 3 of 5
    _, mask = read_pair(pairs[0])
    assert np.array_equal(mask, expected)
    assert expected.sum() not in (experts[0].sum(), 0)  # the vote is not one expert's mask
    for rule, want in (("union", np.any(experts, axis=0)), ("intersection", np.all(experts, axis=0)),
                       ("exp5", experts[4])):
        assert np.array_equal(read_pair(find_pairs(root, experts=rule)[0])[1], want), rule
    with pytest.raises(DatasetError, match=r"no exp6 mask"):
        find_pairs(root, experts="exp6")
    with pytest.raises(ValueError, match="experts must be"):
        find_pairs(root, experts="mean")


def test_combine_rules_on_an_even_number_of_experts():
    a, b = np.array([[1, 1, 0, 0]], bool), np.array([[1, 0, 1, 0]], bool)
    assert combine([a, b], "majority").tolist() == [[True, False, False, False]]  # more than half: both
    assert combine([a, b], "union").tolist() == [[True, True, True, False]]


def test_rim_one_r3_stereo_images_disc_masks_cup_masks_ignored(tmp_path):
    root = tmp_path / "RIM-ONE r3"
    for category, names in (("Healthy", ("N-1-L", "N-2-R")), ("Glaucoma and suspects", ("G-1-L", "S-1-L"))):
        for seed, name in enumerate(names):
            # a stereo pair: left half annotated, right half another view
            left = np.full((H, W, 3), 40 + seed, np.uint8)
            stereo = np.concatenate([left, np.full((H, W, 3), 220, np.uint8)], axis=1)
            (root / category / "Stereo Images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(stereo).save(root / category / "Stereo Images" / f"{name}.jpg", quality=95)
            for e in (1, 2):
                _mask(root / category / f"Expert{e}_masks" / f"{name}-1-Disc-exp{e}.png", EXPERT_BOXES[e - 1])
                _mask(root / category / f"Expert{e}_masks" / f"{name}-1-Cup-exp{e}.png", (0, 0, 5, 5))
            _mask(root / category / "Average_masks" / f"{name}-Disc-Avg.png", BOX)
            _mask(root / category / "Average_masks" / f"{name}-Cup-Avg.png", (0, 0, 5, 5))
    pairs = find_pairs(root)
    assert [p.name for p in pairs] == ["G-1-L", "N-1-L", "N-2-R", "S-1-L"]  # unique names stay as published
    assert all(p.stereo and len(p.annotations) == 2 for p in pairs)
    image, mask = read_pair(pairs[1])
    assert image.shape == (H, W, 3) and image.mean() < 100  # the left half only
    # majority of two experts = both agree; the average mask is not a vote
    assert np.array_equal(mask, _foreground(EXPERT_BOXES[0]) & _foreground(EXPERT_BOXES[1]))
    avg = find_pairs(root, experts="avg")
    assert avg[0].mask.name == "G-1-L-Disc-Avg.png" and np.array_equal(read_pair(avg[0])[1], _foreground(BOX))
    ds = load_split(root, "train", 24, workers=1, experts="exp2")  # 4 images: 10 % of 4 rounds to 0 val / 0 test
    assert len(ds) == 4 and ds.images.shape == (4, 3, 24, 24)
    with pytest.raises(DatasetError, match="leaves 'val' empty"):
        find_pairs(root, "val")


def test_rim_one_expert_mask_without_image_is_named(tmp_path):
    root = _rim_one_r1(tmp_path / "r1", categories=("Normal",), count=2)
    (root / "Normal" / "Im002.bmp").unlink()
    with pytest.raises(DatasetError, match=r"Im002-exp1\.bmp"):
        find_pairs(root)


# --- masks in other encodings ----------------------------------------------------------------
def test_label_masks_0_1_png_and_jpeg_masks(tmp_path):
    root = tmp_path / "d"
    _image(root / "images" / "a.png")
    _mask(root / "masks" / "a.png", BOX, value=1)  # a 0/1 label image: 1 is foreground
    _image(root / "images" / "b.png")
    _mask(root / "masks" / "b.jpg", BOX)  # JPEG: near-binary, thresholded
    a, b = find_pairs(root)
    assert np.array_equal(read_pair(a)[1], _foreground(BOX))
    assert np.array_equal(read_pair(b)[1], _foreground(BOX))


def test_two_masks_for_one_image_are_named(tmp_path):
    root = _shenzhen(tmp_path / "s", count=1)
    _mask(root / "masks" / "CHNCXR_0001_1.png", BOX)
    with pytest.raises(DatasetError, match=r"two masks for image 'CHNCXR_0001_1'.*CHNCXR_0001_1(_mask)?\.png"):
        find_pairs(root)


# --- the split helper -------------------------------------------------------------------------
def test_seeded_split_is_deterministic_and_exact():
    names = [str(i) for i in range(380)]  # CVC-ColonDB's 380 images
    a = seeded_split(names, seed=0)
    assert a == seeded_split(list(reversed(names)), seed=0)  # order of the input does not matter
    counts = {s: sum(1 for v in a.values() if v == s) for s in ("train", "val", "test")}
    assert counts == {"train": 304, "val": 38, "test": 38}
    assert a != seeded_split(names, seed=1)
    with pytest.raises(ValueError, match="sum"):
        seeded_split(names, fractions=(0.8, 0.3, 0.1))


def test_split_csv_written_by_the_helper_pins_the_split(tmp_path, capsys):
    root = _shenzhen(tmp_path / "shenzhen", count=10)
    out = tmp_path / "splits.csv"
    assert splits_main([str(root), "--out", str(out), "--seed", "3"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 10 and {r["split"] for r in rows} == {"train", "val", "test"}
    assert splits_main([str(root), "--out", str(out)]) == 2  # never replaced without --force
    assert "exists" in capsys.readouterr().err
    test = [p.name for p in find_pairs(root, "test", split_file=out)]
    assert test == sorted(r["name"] for r in rows if r["split"] == "test")
    assert test == [p.name for p in find_pairs(root, "test", split_seed=3)]


# --- the commands read these folders ------------------------------------------------------------
def test_train_and_eval_commands_read_a_rim_one_copy(tmp_path, capsys):
    from banet.cli.evaluate import main as eval_main
    from banet.cli.train import main as train_main

    root = _rim_one_r1(tmp_path / "RIM-ONE r1", categories=("Normal", "Deep", "Early"), count=4)  # 12 images
    run = tmp_path / "run"
    assert train_main(["--data", str(root), "--out", str(run), "--preset", "tiny", "--size", "32", "--epochs", "1",
                       "--batch-size", "4", "--workers", "1", "--experts", "exp1", "--device", "cpu"]) == 0
    assert json.loads((run / "train_config.json").read_text())["experts"] == "exp1"
    report = tmp_path / "eval.json"
    assert eval_main([str(run / "best.pt"), "--data", str(root), "--split", "test", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["experts"] == "exp1" and len(result["per_image"]) == 1  # the checkpoint's choice; 10 % of 12
    assert eval_main([str(run / "last.pt"), "--data", str(root), "--split", "test", "--experts", "bogus"]) == 2
    assert "experts must be" in capsys.readouterr().err
