"""Deep3DFaceRecon 5-point alignment: POS fit, crop matrix, resampling."""

from __future__ import annotations

import numpy as np
import pytest

from mvinvert_cli.align.crop import LM3D_5, crop_matrix, pos_fit, warp_crop, warp_mask
from mvinvert_cli.align.observation import transform_points


def _project(scale: float, t: tuple[float, float]) -> np.ndarray:
    """Template points seen frontally at ``scale`` px/unit with origin at ``t`` (y down)."""
    return np.stack([scale * LM3D_5[:, 0] + t[0], -scale * LM3D_5[:, 1] + t[1]], axis=1)


def test_pos_recovers_scale_and_translation():
    t, s = pos_fit(_project(300.0, (410.0, 250.0)))
    assert s == pytest.approx(300.0, rel=1e-6)
    np.testing.assert_allclose(t, [410.0, 250.0], atol=1e-6)


def test_crop_matrix_puts_template_at_deep3d_positions():
    points = _project(300.0, (410.0, 250.0))
    m = crop_matrix(points)
    assert m[0, 1] == 0 and m[1, 0] == 0 and m[0, 0] == pytest.approx(102.0 / 300.0)
    in_crop = transform_points(m, points)
    expected = np.stack([102 * LM3D_5[:, 0] + 112, -102 * LM3D_5[:, 1] + 112], axis=1)
    np.testing.assert_allclose(in_crop, expected, atol=1e-3)


def test_crop_matrix_degenerate():
    with pytest.raises(ValueError):
        crop_matrix(np.zeros((5, 2)))


@pytest.mark.parametrize("scale", [300.0, 2000.0])  # 2000: strong down-scale, prefiltered path
def test_warp_crop_follows_matrix(scale):
    size = int(scale * 1.6)
    photo = np.zeros((size, size, 3), dtype=np.float32)
    points = _project(scale, (size / 2, size / 2))
    m = crop_matrix(points)
    # paint a block around the nose tip; it must land on the nose tip's crop position
    nose = points[2]
    r = int(scale * 0.05)
    photo[int(nose[1]) - r:int(nose[1]) + r, int(nose[0]) - r:int(nose[0]) + r] = 1.0
    crop = warp_crop(photo, m)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.float32
    ys, xs = np.nonzero(crop[..., 0] > 0.5)
    centre = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
    np.testing.assert_allclose(centre, transform_points(m, nose[None])[0], atol=1.0)
    mask = warp_mask(photo[..., 0] > 0.5, m)
    assert mask.dtype == bool and abs(int(mask.sum()) - len(xs)) <= 0.25 * len(xs) + 8


def _deep3d_reference_crop(rgb: np.ndarray, points5: np.ndarray) -> np.ndarray:
    """Slow reference: Deep3DFaceRecon ``align_img`` steps (POS on y-flipped points, s = 102/s,
    PIL bicubic resize of the whole photo to int sizes, integer crop offsets)."""
    from PIL import Image

    h0, w0 = rgb.shape[:2]
    lm = np.stack([points5[:, 0], h0 - 1 - points5[:, 1]], axis=1)  # their landmarks: y up, index based
    n = len(lm)
    a = np.zeros((2 * n, 8))
    a[0::2, 0:3], a[0::2, 3] = LM3D_5, 1
    a[1::2, 4:7], a[1::2, 7] = LM3D_5, 1
    k, *_ = np.linalg.lstsq(a, lm.reshape(-1), rcond=None)
    s = 102.0 / ((np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2)
    t = np.array([k[3], k[7]])
    w, h = int(w0 * s), int(h0 * s)
    left = int(w / 2 - 112 + (t[0] - w0 / 2) * s)
    up = int(h / 2 - 112 + (h0 / 2 - t[1]) * s)
    image = Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return np.asarray(image.crop((left, up, left + 224, up + 224)), dtype=np.float32) / 255.0


def test_crop_matches_deep3dfacerecon_reference(examples_dir):
    """Our one-matrix crop equals the original resize-then-crop up to its integer rounding (≤ 1.5 px)."""
    from mvinvert_cli.io.images import load_image

    rgb = load_image(examples_dir / "skimage_astronaut.png").rgb
    points5 = np.array([[202.8, 101.8], [246.8, 103.5], [223.0, 126.75], [203.8, 140.5], [243.4, 141.75]])
    ours = warp_crop(rgb, crop_matrix(points5))
    reference = _deep3d_reference_crop(rgb, points5 - 0.5)  # their pixel indices = our centres − 0.5
    best = min(
        (float(np.abs(np.roll(ours, (dy, dx), axis=(0, 1))[8:-8, 8:-8] - reference[8:-8, 8:-8]).mean()), dy, dx)
        for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    )
    assert best[0] < 0.02, best  # mean abs difference (of [0, 1] values) at the best ≤ 1 px shift
    unshifted = float(np.abs(ours[8:-8, 8:-8] - reference[8:-8, 8:-8]).mean())
    assert unshifted < 0.04, unshifted
