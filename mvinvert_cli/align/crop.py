"""Deep3DFaceRecon 5-point alignment to the 224×224 fitting crop (FORMATS.md §1i).

Deep3DFaceRecon (``util/preprocess.py:align_img``) fits an affine camera ``x = P X + t`` from the
5 template points of ``similarity_Lm3D_all.mat`` to the photo's 5 points (``POS``), takes the mean
row norm ``s`` of P as the scale, and resizes the photo by ``102 / s`` about ``t`` into a
224×224 crop. No rotation: the crop is an isotropic scale plus a translation. We express it as one
(2, 3) matrix ``A`` (photo px → crop px, pixel centres at +0.5) and resample with it, without the
integer rounding of the original crop offsets (at most one pixel of shift).
"""

from __future__ import annotations

import cv2
import numpy as np

from .observation import CROP_SIZE

RESCALE_FACTOR = 102.0
# The 5 template points (x, y up, z) of Deep3DFaceRecon ``load_lm3d``: iBUG 31, mean(37,40),
# mean(43,46), 49, 55 (1-based) of similarity_Lm3D_all.mat, reordered to [eyeL, eyeR, nose, mouthL, mouthR].
LM3D_5 = np.array([
    [-0.31148657, 0.29036078, 0.13377953],
    [0.30979887, 0.28972036, 0.13179526],
    [0.0032535, -0.04617932, 0.55244243],
    [-0.25216928, -0.38133916, 0.22405732],
    [0.2484662, -0.38128236, 0.22235769],
], dtype=np.float64)


def pos_fit(points5: np.ndarray, template: np.ndarray = LM3D_5) -> tuple[np.ndarray, float]:
    """Least-squares affine camera from 3D template to 2D points (Deep3DFaceRecon ``POS``).

    Solves ``[x, y] = [p1·X + tx, p2·X + ty]`` for p1, p2 (3,) and t (2,). Image y is flipped to
    point up, as in Deep3DFaceRecon, so the template's y-up frame matches.

    Args:
        points5: (5, 2) photo pixels, y down.
        template: (5, 3) template points.

    Returns:
        t: (2,) photo pixels (y down) of the template origin; s: mean norm of p1 and p2 (px/unit).
    """
    pts = np.asarray(points5, dtype=np.float64)
    n = len(pts)
    a = np.zeros((2 * n, 8))
    a[0::2, 0:3] = template
    a[0::2, 3] = 1.0
    a[1::2, 4:7] = template
    a[1::2, 7] = 1.0
    b = np.stack([pts[:, 0], -pts[:, 1]], axis=1).reshape(-1)  # y up
    k, *_ = np.linalg.lstsq(a, b, rcond=None)
    s = 0.5 * (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7]))
    return np.array([k[3], -k[7]]), float(s)


def crop_matrix(points5: np.ndarray, size: int = CROP_SIZE, rescale: float = RESCALE_FACTOR) -> np.ndarray:
    """(2, 3) similarity photo px → crop px: ``crop = (rescale / s)·(p − t) + size/2``.

    Raises:
        ValueError: degenerate points (all coincident).
    """
    t, s = pos_fit(points5)
    if not np.isfinite(s) or s <= 1e-6:
        raise ValueError("degenerate 5-point set")
    k = rescale / s
    return np.array([[k, 0.0, size / 2 - k * t[0]], [0.0, k, size / 2 - k * t[1]]], dtype=np.float32)


def opencv_affine(matrix: np.ndarray) -> np.ndarray:
    """Affine in pixel-centre coordinates (centre of pixel j at j+0.5) → OpenCV's index coordinates.

    idx' + 0.5 = A (idx + 0.5) + c, so idx' = A idx + (A·[0.5, 0.5] + c − 0.5).
    """
    m = np.asarray(matrix, dtype=np.float64).copy()
    m[:, 2] = m[:, 2] + m[:, :2].sum(axis=1) * 0.5 - 0.5
    return m


def warp_crop(rgb: np.ndarray, matrix: np.ndarray, size: int = CROP_SIZE, cubic: bool = True) -> np.ndarray:
    """Resample ``rgb`` (H, W, C) or (H, W) float32 through ``matrix`` into (size, size[, C]).

    Bicubic (Deep3DFaceRecon resizes with PIL bicubic) or bilinear. Only the photo region that
    the crop sees is touched; strong down-scales are prefiltered (area resize of that region) so
    the crop does not alias. Outside the photo the crop is black (zero), as in Deep3DFaceRecon's
    padded crop.
    """
    m = np.asarray(matrix, dtype=np.float64).copy()
    h, w = rgb.shape[:2]
    # photo-space bounds of the crop square (+ 4 px for the interpolation kernel)
    inverse = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    seen = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.clip(np.floor(seen.min(axis=0)).astype(int) - 4, 0, [w, h])
    x1, y1 = np.clip(np.ceil(seen.max(axis=0)).astype(int) + 4, 0, [w, h])
    if x1 - x0 < 1 or y1 - y0 < 1:  # the crop lies entirely outside the photo
        return np.zeros((size, size) + rgb.shape[2:], dtype=np.float32)
    src = rgb[y0:y1, x0:x1]
    m[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float64)  # region px → crop px
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:  # prefilter: shrink the region by `pre`, fold it into the matrix
        pre = min(1.0, 2.0 * scale)
        rh, rw = src.shape[:2]
        new_w, new_h = max(1, round(rw * pre)), max(1, round(rh * pre))
        src = cv2.resize(src, (new_w, new_h), interpolation=cv2.INTER_AREA)
        m[:, :2] = m[:, :2] @ np.diag([rw / new_w, rh / new_h])
    m_idx = opencv_affine(m)
    flags = cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR
    out = cv2.warpAffine(src, m_idx, (size, size), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out = out.reshape((size, size) + rgb.shape[2:])
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def warp_mask(mask: np.ndarray, matrix: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Warp a bool (H, W) mask into the (size, size) crop (area-weighted, threshold 0.5)."""
    soft = warp_crop(mask.astype(np.float32), matrix, size, cubic=False)
    return soft >= 0.5
