"""Mirror symmetry of MediaPipe's 478 dense points: ``DENSE_MIRROR[i]`` = the point on the other
side of the face (subject's right ↔ left), from the canonical face mesh.

The 468 mesh points are paired by nearest neighbour of the mirrored canonical mesh (x → −x); the
pairing is an involution with 28 midline points fixed. The 10 iris points follow MediaPipe's
layout: centre, then +x, −y, −x, +y offsets for each iris (468–472 and 473–477), so the mirror
swaps the centres and the ±x offsets and keeps ±y.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

from ..morphable.default import canonical_points

IRIS_MIRROR = (473, 476, 475, 474, 477, 468, 471, 470, 469, 472)  # for points 468…477


@lru_cache(maxsize=1)
def dense_mirror() -> np.ndarray:
    """(478,) int64 mirror ids (see the module docstring).

    Raises:
        WeightsError: no ``face_landmarker.task`` (the canonical mesh lives in it).
    """
    canonical = canonical_points().astype(np.float64)
    _, ids = cKDTree(canonical).query(canonical * np.array([-1.0, 1.0, 1.0]))
    mirror = np.concatenate([ids, IRIS_MIRROR]).astype(np.int64)
    if not (mirror[mirror] == np.arange(len(mirror))).all():
        raise ValueError("the canonical mesh's mirror pairing is not an involution")
    return mirror


def unmirror_points(dense: np.ndarray, width: float) -> np.ndarray:
    """Points found on the horizontally mirrored photo (``width`` px wide) → the original photo:
    x ↦ width − x, and each point renamed to its mirror partner."""
    out = np.array(dense, dtype=np.float32, copy=True)
    out[:, 0] = width - out[:, 0]
    return out[dense_mirror()]
