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
