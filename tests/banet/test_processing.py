"""Decode / resize / normalize / threshold: the one numpy+pillow path every backend uses."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from banet import processing
from banet.processing import ImageDecodeError
from banet.spec import IMAGE_SIZE, MASK_FOREGROUND_VALUE

RNG = np.random.default_rng(0)


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _rgb(h: int = 20, w: int = 30) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# --- decoding -----------------------------------------------------------------------------------
def test_png_decodes_exactly():
    image = _rgb()
    out = processing.decode_image(_encode(Image.fromarray(image), "PNG"))
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    assert np.array_equal(out, image)


def test_jpeg_decodes_close_to_the_source():
    image = np.zeros((32, 48, 3), np.uint8)
    image[:, :24] = (200, 40, 90)
    out = processing.decode_image(_encode(Image.fromarray(image), "JPEG", quality=95))
    assert out.shape == (32, 48, 3)
    assert np.abs(out.astype(int) - image).mean() < 3


def test_grayscale_becomes_three_equal_channels():
    gray = RNG.integers(0, 256, size=(10, 12), dtype=np.uint8)
    out = processing.decode_image(_encode(Image.fromarray(gray, mode="L"), "PNG"))
    assert out.shape == (10, 12, 3)
    assert all(np.array_equal(out[..., c], gray) for c in range(3))


def test_rgba_drops_alpha():
    rgba = np.dstack([_rgb(8, 9), np.zeros((8, 9), np.uint8)])
    out = processing.decode_image(_encode(Image.fromarray(rgba, mode="RGBA"), "PNG"))
    assert np.array_equal(out, rgba[..., :3])


@pytest.mark.parametrize("transparency", [False, True])
def test_palette_images_use_their_palette(transparency):
    pal = Image.new("P", (4, 3))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6))
    pal.putdata([0, 1, 1, 0] * 3)
    kwargs = {"transparency": 0} if transparency else {}
    out = processing.decode_image(_encode(pal, "PNG", **kwargs))
    assert out.shape == (3, 4, 3)
    assert out[0, 0].tolist() == [10, 20, 30] and out[0, 1].tolist() == [200, 100, 50]


def test_16_bit_png_is_scaled_by_its_full_range():
    values = np.array([[0, 257, 257 * 128], [65535, 257 * 255, 257 * 7]], dtype=np.uint16)
    data = _encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = processing.decode_image(data)
    assert out.shape == (2, 3, 3)
    assert out[..., 0].tolist() == [[0, 1, 128], [255, 255, 7]]


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (16, 8), (255, 0, 0, 0))  # pure cyan ink
    data = _encode(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = processing.decode_image(data)
    assert out.shape == (8, 16, 3)
    r, g, b = out.reshape(-1, 3).mean(axis=0)
    assert r < 30 and g > 225 and b > 225


@pytest.mark.parametrize("orientation, shape, red_at", [
    (1, (20, 40, 3), (10, 5)),    # as stored: red on the left
    (6, (40, 20, 3), (5, 10)),    # rotate 90 clockwise to show: the left half becomes the top
    (3, (20, 40, 3), (10, 35)),   # rotate 180: red on the right
])
def test_exif_orientation_is_honoured(orientation, shape, red_at):
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = processing.decode_image(_encode(Image.fromarray(image), "JPEG", quality=95, exif=exif.tobytes()))
    assert out.shape == shape
    assert out[red_at][0] > 200 and out[red_at][1] < 60


@pytest.mark.parametrize("data, match", [
    (b"", "empty payload"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "corrupt or truncated|not a recognised"),
    (bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), "not a recognised image format"),
    (b"hello, this is a text file\n" * 20, "not a recognised image format"),
])
def test_undecodable_bytes_raise_image_decode_error(data, match):
    with pytest.raises(ImageDecodeError, match=f"upload.bin: ({match})"):
        processing.decode_image(data, name="upload.bin")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_images_raise_image_decode_error(fmt):
    data = _encode(Image.fromarray(_rgb(64, 64)), fmt)
    with pytest.raises(ImageDecodeError, match="cut: corrupt or truncated image"):
        processing.decode_image(data[: len(data) // 2], name="cut")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` but whose pixel data is a few bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_pixel_limit_is_checked_from_the_header_before_decoding():
    # 9000 x 9000 = 81 M pixels: over the project's limit, under Pillow's own bomb threshold; the
    # pixel data is missing, so any attempt to decode would fail with "truncated" instead
    with pytest.raises(ImageDecodeError, match="huge.png: 9000x9000 = 81000000 pixels exceeds the limit of 64000000"):
        processing.decode_image(_png_header_only(9000, 9000), name="huge.png")
    with pytest.raises(ImageDecodeError, match="exceeds the limit of 599"):
        processing.decode_image(_encode(Image.fromarray(_rgb()), "PNG"), max_pixels=599)
    assert processing.decode_image(_encode(Image.fromarray(_rgb()), "PNG"), max_pixels=600).shape == (20, 30, 3)


def test_load_image_names_the_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="absent.png: cannot read"):
        processing.load_image(tmp_path / "absent.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageDecodeError, match="notes.png: not a recognised image format"):
        processing.load_image(tmp_path / "notes.png")


def test_load_mask_thresholds_at_127(tmp_path):
    values = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    Image.fromarray(np.dstack([values] * 3)).save(tmp_path / "m.png")
    assert processing.load_mask(tmp_path / "m.png").tolist() == [[False, False, True, True]]


@pytest.mark.needs_data
def test_real_kvasir_pair_decodes(kvasir_test_pairs):
    image_path, mask_path = kvasir_test_pairs[0]
    image = processing.load_image(image_path)
    mask = processing.load_mask(mask_path)
    assert image.ndim == 3 and image.shape[2] == 3 and image.shape[:2] == mask.shape
    assert 0 < mask.mean() < 1  # a polyp and background
    x = processing.preprocess(image)
    assert x.shape == (3, IMAGE_SIZE, IMAGE_SIZE) and x.dtype == np.float32


# --- network input ------------------------------------------------------------------------------
def test_normalize_round_trip_and_constants():
    image = _rgb(17, 23)
    chw = processing.normalize(image)
    assert chw.shape == (3, 17, 23) and chw.dtype == np.float32
    assert np.array_equal(processing.denormalize(chw), image)
    grey = np.full((1, 1, 3), 124, np.uint8)  # ~ImageNet mean in red: about 0 after normalization
    assert abs(processing.normalize(grey)[0, 0, 0]) < 0.01


def test_preprocess_resizes_and_normalizes():
    image = _rgb(50, 70)
    x = processing.preprocess(image, size=64)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    assert np.allclose(x, processing.normalize(processing.resize_image(image, 64)))
    assert processing.denormalize(x).shape == (64, 64, 3)
    assert processing.preprocess(image).shape == (3, IMAGE_SIZE, IMAGE_SIZE)


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8),
                                 np.zeros((8, 8, 3), np.float32)])
def test_preprocess_rejects_non_rgb_uint8(bad):
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 image"):
        processing.preprocess(bad)


def test_resize_mask_keeps_labels():
    mask = np.zeros((10, 10), bool)
    mask[2:8, 3:6] = True
    out = processing.resize_mask(mask, (20, 30))
    assert out.dtype == bool and out.shape == (20, 30)
    assert out.sum() == mask.sum() * 6


# --- network output -----------------------------------------------------------------------------
def test_postprocess_shape_and_threshold():
    logits = np.zeros((1, 8, 8), np.float32)
    logits[0, :4] = 3.0  # top half: p = 0.95; bottom half: p = 0.5 exactly
    mask = processing.postprocess(logits, (16, 10))
    assert mask.shape == (16, 10) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, MASK_FOREGROUND_VALUE}
    assert mask[:6].all() and not mask[10:].any()          # p > 0.5 strictly
    assert processing.postprocess(logits, (16, 10), threshold=0.4).all()
    assert not processing.postprocess(logits, (8, 8), threshold=1.0).any()
    assert processing.postprocess(logits[0], (8, 8)).shape == (8, 8)


@pytest.mark.parametrize("threshold", [-0.01, 1.5, float("nan"), float("inf")])
def test_postprocess_rejects_bad_thresholds(threshold):
    with pytest.raises(ValueError, match="threshold must be within"):
        processing.postprocess(np.zeros((1, 4, 4)), (4, 4), threshold)


@pytest.mark.parametrize("shape", [(1, 1, 4, 4), (2, 4, 4), (4,)])
def test_postprocess_rejects_bad_logit_shapes(shape):
    with pytest.raises(ValueError, match="expected logits of shape"):
        processing.postprocess(np.zeros(shape, np.float32), (4, 4))


def test_sigmoid_is_stable_at_extremes():
    p = processing.sigmoid(np.array([-1e4, 0.0, 1e4]))
    assert p.dtype == np.float32 and p.tolist() == [0.0, 0.5, 1.0]


def test_boundary_by_hand():
    mask = np.zeros((5, 5), np.uint8)
    mask[1:4, 1:4] = 255
    edge = processing.boundary(mask)
    want = np.zeros((5, 5), np.uint8)
    want[1:4, 1:4] = MASK_FOREGROUND_VALUE
    want[2, 2] = 0  # the only pixel whose four neighbours are all foreground
    assert np.array_equal(edge, want)
    full = processing.boundary(np.ones((4, 4), bool))
    assert processing.mask_area(full) == 12  # image-border pixels count as boundary
    assert not processing.boundary(np.zeros((4, 4))).any()
    assert processing.mask_area(mask) == 9


# --- the serving hot path: reduced decode, uint8 probability -> mask ------------------------------
DECODERS = ["pillow"] + (["simplejpeg"] if processing.simplejpeg_available() else [])


def _reference_network_image(data: bytes, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    image = processing.decode_image(data)
    return processing.resize_image(image, size), image.shape[:2]


def _smooth_rgb(h: int, w: int) -> np.ndarray:
    """A photograph-like image (smooth gradients and a disc): DCT scaling is meant for these."""
    yy, xx = np.mgrid[0:h, 0:w]
    disc = ((yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 4) ** 2) * 90
    return np.dstack([xx * 200 // w + disc // 2, yy * 200 // h, 255 - disc - xx * 100 // w]).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("fmt, mode, kwargs", [
    ("JPEG", "RGB", {"quality": 92}), ("JPEG", "L", {"quality": 92}), ("JPEG", "CMYK", {"quality": 92}),
    ("PNG", "RGB", {}), ("PNG", "RGBA", {}), ("PNG", "I;16", {}), ("WEBP", "RGB", {"quality": 90}),
    ("BMP", "RGB", {}), ("TIFF", "RGB", {}), ("GIF", "P", {}),
])
def test_network_image_of_every_encoding_is_the_reference_image(decoder, fmt, mode, kwargs):
    """Large enough for the reduced decode (>= 2x the network size); JPEGs at most a little off
    (DCT scaling replaces the bilinear filter's averaging), the other formats exactly equal."""
    rgb = _smooth_rgb(300, 420)
    if mode == "I;16":
        img = Image.fromarray(rgb[..., 1].astype(np.uint16) * 257)
    elif mode == "P":
        img = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        img = Image.fromarray(rgb).convert(mode)
    data = _encode(img, fmt, **kwargs)
    fast, original = processing.network_image(data, 128, decoder=decoder, oversample=1.0)
    want, want_size = _reference_network_image(data, 128)
    assert fast.shape == (128, 128, 3) and fast.dtype == np.uint8
    assert original == want_size == (300, 420)
    diff = np.abs(fast.astype(int) - want)
    if fmt == "JPEG":
        assert diff.mean() < 1.5 and diff.max() < 40
    else:
        assert diff.max() == 0


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_reduced_decode_honours_every_exif_orientation(decoder, orientation):
    rgb = _smooth_rgb(260, 600)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(Image.fromarray(rgb), "JPEG", quality=92, exif=exif.tobytes())
    image, original = processing.decode_reduced(data, 128, decoder=decoder, oversample=1.0)
    full = processing.decode_image(data)
    assert original == full.shape[:2] == ((600, 260) if orientation >= 5 else (260, 600))
    assert image.shape[:2] == (full.shape[0] // 2, full.shape[1] // 2)  # 1/2 DCT scale, upright
    want = processing.resize_image(full, image.shape[:2])
    assert np.abs(image.astype(int) - want).mean() < 2


def test_reduced_decode_only_reduces_jpegs_at_least_twice_the_oversampled_size():
    data = _encode(Image.fromarray(_smooth_rgb(300, 420)), "JPEG", quality=92)
    assert processing.decode_reduced(data, 50)[0].shape == (150, 210, 3)   # 300 = 2 x 3 x 50: halved
    assert processing.decode_reduced(data, 51)[0].shape == (300, 420, 3)   # under: full size
    assert processing.decode_reduced(data, 150, oversample=1.0)[0].shape == (150, 210, 3)
    assert processing.decode_reduced(data, 64, oversample=1.0)[0].shape[0] >= 64
    png = _encode(Image.fromarray(_smooth_rgb(300, 420)), "PNG")
    assert processing.decode_reduced(png, 32, oversample=1.0)[0].shape == (300, 420, 3)  # only JPEGs


@pytest.mark.parametrize("decoder", DECODERS)
def test_reduced_decode_refuses_what_decode_image_refuses(decoder):
    data = _encode(Image.fromarray(_smooth_rgb(300, 420)), "JPEG", quality=92)
    with pytest.raises(ImageDecodeError, match="cut: corrupt or truncated image"):
        processing.network_image(data[: len(data) // 2], 64, name="cut", decoder=decoder)
    with pytest.raises(ImageDecodeError, match="exceeds the limit of 1000"):
        processing.network_image(data, 64, max_pixels=1000, decoder=decoder)
    with pytest.raises(ImageDecodeError, match="huge.png: 9000x9000"):
        processing.network_image(_png_header_only(9000, 9000), 64, name="huge.png", decoder=decoder)
    for bad, match in ((b"", "empty payload"), (b"GIF89a" + b"\0" * 40, "corrupt|not a recognised")):
        with pytest.raises(ImageDecodeError, match=match):
            processing.network_image(bad, 64, decoder=decoder)


@pytest.mark.needs_data
@pytest.mark.parametrize("decoder, oversample", [(d, o) for d in DECODERS for o in (1.0, processing.REDUCED_DECODE_OVERSAMPLE)])
def test_reduced_decode_of_real_kvasir_images_stays_close(kvasir_test_pairs, decoder, oversample):
    """The Kvasir-SEG test split at its own sizes (332x... up to 1920x1072): the uint8 network input of
    the hot path differs from the reference by about two grey levels on average at the most aggressive
    reduction (1x, here 128 px), and by much less at the default."""
    means = []
    pairs = kvasir_test_pairs if decoder == "simplejpeg" else kvasir_test_pairs[::4]  # the default decoder: all
    for image_path, _ in pairs:
        data = image_path.read_bytes()
        fast, original = processing.network_image(data, 128, decoder=decoder, oversample=oversample)
        want, want_size = _reference_network_image(data, 128)
        assert original == want_size
        means.append(np.abs(fast.astype(int) - want).mean())
    assert len(means) == len(pairs) >= 25
    limit = 3.0 if oversample == 1.0 else 0.5  # (a swapped channel order or orientation: 30+ levels)
    assert np.mean(means) < limit and max(means) < 2.0 * limit


def _reference_boundary(mask: np.ndarray) -> np.ndarray:
    """The definition, spelled out with padding: foreground with a background (or outside) 4-neighbour."""
    fg = np.pad(np.asarray(mask) > 0, 1)
    inner = fg[:-2, 1:-1] & fg[2:, 1:-1] & fg[1:-1, :-2] & fg[1:-1, 2:]
    return np.where(fg[1:-1, 1:-1] & ~inner, MASK_FOREGROUND_VALUE, 0).astype(np.uint8)


def test_boundary_equals_its_definition_on_random_masks():
    rng = np.random.default_rng(3)
    for _ in range(100):
        h, w = rng.integers(1, 30, 2)
        mask = rng.random((h, w)) < rng.random()
        assert np.array_equal(processing.boundary(mask), _reference_boundary(mask))
    blob = np.zeros((40, 50), bool)
    blob[10:30, 5:20] = True
    assert np.array_equal(processing.boundary(blob), _reference_boundary(blob))


def test_probability_to_uint8_rounds_and_clips():
    out = processing.probability_to_uint8(np.array([0.0, 0.5, 1 / 255 * 0.49, 1 / 255 * 0.51, 1.0, 1.2, -0.1]))
    assert out.dtype == np.uint8 and out.tolist() == [0, 128, 0, 1, 255, 255, 0]


@pytest.mark.parametrize("dtype", ["float16", "float32", "uint8"])
@pytest.mark.parametrize("threshold", [0.5, 0.2, 0.8, 0.0, 1.0, 0.37])
def test_mask_from_probability_equals_the_thresholded_float_resize(threshold, dtype):
    """Same meaning as postprocess: Pillow's float bilinear resize of the probability, then > threshold;
    upsampling, shrinking and mixed axes, odd sizes; float16 (served), float32 and uint8 levels."""
    rng = np.random.default_rng(4)
    for _ in range(30):
        s = int(rng.integers(2, 40))
        h, w = int(rng.integers(1, 160)), int(rng.integers(1, 160))
        smooth = Image.fromarray((rng.normal(size=(4, 4)) * 6).astype(np.float32), "F").resize((s, s), Image.BILINEAR)
        prob = processing.sigmoid(np.asarray(smooth))
        prob = processing.probability_to_uint8(prob) if dtype == "uint8" else prob.astype(dtype)
        scale = 255.0 if dtype == "uint8" else 1.0
        want = np.asarray(Image.fromarray(prob.astype(np.float32) / np.float32(scale), "F").resize((w, h), Image.BILINEAR))
        want = np.where(want > threshold, MASK_FOREGROUND_VALUE, 0)
        got = processing.mask_from_probability(prob[None], (h, w), threshold)
        assert got.shape == (h, w) and got.dtype == np.uint8
        # float rounding of the resize may flip a pixel sitting exactly on the threshold (1.0: p = 1 exactly)
        assert np.count_nonzero(got != want) <= got.size // 2000


def test_mask_from_probability_keeps_what_postprocess_keeps_on_a_sharp_map():
    logits = np.zeros((1, 8, 8), np.float32)
    logits[0, :4] = 3.0  # top half: p = 0.95; bottom half: p = 0.5 exactly
    prob = processing.sigmoid(logits).astype(np.float16)
    assert np.array_equal(processing.mask_from_probability(prob, (16, 10)), processing.postprocess(logits, (16, 10)))
    assert not processing.mask_from_probability(prob, (16, 10), threshold=1.0).any()
    assert processing.mask_from_probability(prob, (16, 10), threshold=0.4).all()


def test_mask_from_probability_refuses_bad_input():
    with pytest.raises(ValueError, match="expected uint8, float16 or float32 probabilities"):
        processing.mask_from_probability(np.zeros((1, 4, 4), np.float64), (8, 8))
    with pytest.raises(ValueError, match="expected uint8, float16 or float32 probabilities"):
        processing.mask_from_probability(np.zeros((2, 4, 4), np.float16), (8, 8))
    with pytest.raises(ValueError, match="threshold must be within"):
        processing.mask_from_probability(np.zeros((4, 4), np.float16), (8, 8), float("nan"))


def test_normalization_affine_is_normalize():
    scale, bias = processing.normalization_affine()
    image = _rgb(6, 7)
    affine = image.astype(np.float32).transpose(2, 0, 1) * scale[:, None, None] + bias[:, None, None]
    assert np.allclose(affine, processing.normalize(image), atol=1e-6)


def _overlay_whole_frame(image, mask, ground_truth=None, *, alpha=0.35, thickness=2):
    """The overlay drawn over the whole frame in float (the formula before the bounding-box version)."""
    out = image.astype(np.float32).copy()
    pred = np.asarray(mask) > 0
    out[pred] = (1 - alpha) * out[pred] + alpha * np.asarray(processing.PREDICTION_COLOUR, dtype=np.float32)
    for region, rgb in ((pred, processing.PREDICTION_COLOUR), (ground_truth, processing.GROUND_TRUTH_COLOUR)):
        if region is not None:
            edge = np.asarray(region) > 0
            edge = processing.boundary(edge) > 0
            for _ in range(max(thickness - 1, 0)):
                grown = edge.copy()
                grown[1:] |= edge[:-1]
                grown[:-1] |= edge[1:]
                grown[:, 1:] |= edge[:, :-1]
                grown[:, :-1] |= edge[:, 1:]
                edge = grown
            out[edge] = rgb
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def test_overlay_draws_only_the_masks_box_with_the_whole_frame_result():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    blob = np.zeros((40, 56), bool)
    blob[10:25, 20:38] = True
    corner = np.zeros((40, 56), bool)
    corner[:6, 50:] = True  # touches two image borders: the border is contour there
    cases = [blob, corner, rng.random((40, 56)) > 0.7, np.zeros((40, 56), bool), np.ones((40, 56), bool)]
    for mask in cases:
        for truth in (None, corner, blob):
            for thickness in (1, 2, 3):
                got = processing.overlay(image, mask.astype(np.uint8) * 255, truth, thickness=thickness)
                np.testing.assert_array_equal(got, _overlay_whole_frame(image, mask, truth, thickness=thickness))
    assert processing.overlay(image, np.zeros((40, 56), np.uint8)) is not image  # a copy, never the input
