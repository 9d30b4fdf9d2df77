"""The fixed MediaPipe-478 → iBUG-68 landmark map and the Deep3DFaceRecon 5-point subset.

MediaPipe has no official iBUG correspondence (FORMATS.md §8). Each iBUG point here is one dense
point or the mean of two neighbours, chosen on the canonical mesh so that the map is mirror
symmetric (iBUG i ↔ its mirror uses MediaPipe's mirrored vertices). tests/align/test_ibug.py
checks the symmetry and the anatomical order; tests/align/test_accuracy.py measures the NME of the
result against hand-placed points.
"""

from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 68
NUM_DENSE = 478

# iBUG index → MediaPipe vertex ids (averaged). "Right" = the subject's right (image left).
IBUG_FROM_MEDIAPIPE: tuple[tuple[int, ...], ...] = (
    # jaw 0–16, from the right ear along the chin to the left ear
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (288, 397), (361, 288), (323,), (454,), (356,),
    # right brow 17–21 (outer → inner), left brow 22–26 (inner → outer)
    (70,), (63,), (105,), (66,), (107,),
    (336,), (296,), (334,), (293,), (300,),
    # nose bridge 27–30 (top → tip), nostril base 31–35 (right → left)
    (168, 6), (197, 195), (5,), (4,),
    (98,), (97,), (2,), (326,), (327,),
    # right eye 36–41: outer corner, upper lid ×2, inner corner, lower lid ×2
    (130,), (160,), (158,), (133,), (153,), (144,),
    # left eye 42–47: inner corner, upper lid ×2, outer corner, lower lid ×2
    (362,), (385,), (387,), (359,), (373,), (380,),
    # outer lip 48–59: right corner, upper lip to the left corner, lower lip back
    (61,), (40,), (37,), (0,), (267,), (270,), (291,), (321,), (314,), (17,), (84,), (91,),
    # inner lip 60–67
    (78,), (81,), (13,), (311,), (308,), (402,), (14,), (178,),
)

# iBUG index of each point's mirror image (subject's right ↔ left).
IBUG_MIRROR: tuple[int, ...] = (
    tuple(range(16, -1, -1))
    + tuple(range(26, 16, -1))
    + (27, 28, 29, 30, 35, 34, 33, 32, 31)
    + (45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40)
    + (54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55)
    + (64, 63, 62, 61, 60, 67, 66, 65)
)

# Deep3DFaceRecon ``extract_5p``: 0-based iBUG ids of nose tip, eye corners, mouth corners.
FIVE_POINT_SOURCES: tuple[tuple[int, ...], ...] = ((36, 39), (42, 45), (30,), (48,), (54,))


def _weights() -> np.ndarray:
    """(68, 478) row-stochastic matrix W with iBUG = W @ dense."""
    w = np.zeros((NUM_LANDMARKS, NUM_DENSE), dtype=np.float32)
    for i, ids in enumerate(IBUG_FROM_MEDIAPIPE):
        w[i, list(ids)] = 1.0 / len(ids)
    return w


MEDIAPIPE_TO_IBUG = _weights()


def ibug_from_dense(dense: np.ndarray) -> np.ndarray:
    """(478, C) MediaPipe points → (68, C) iBUG landmarks (the fixed linear map above)."""
    if dense.shape[0] != NUM_DENSE:
        raise ValueError(f"expected {NUM_DENSE} dense points, got {dense.shape[0]}")
    return (MEDIAPIPE_TO_IBUG @ dense.astype(np.float32)).astype(np.float32)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG landmarks → (5, 2) [eyeL, eyeR, nose, mouthL, mouthR] (image-left first)."""
    return np.stack([landmarks[list(ids)].mean(axis=0) for ids in FIVE_POINT_SOURCES]).astype(np.float32)
