"""Second landmark pass and flip test for the MediaPipe backend (issue 15), and the choice between
the passes by a measured criterion.

Candidates, each the confidence-weighted mean of a pass on the photo and the same pass on the
mirrored photo (points mapped back through :func:`symmetry.dense_mirror`):

- ``first``: the Tasks landmarker's result (its own detector crop) and the Tasks landmarker on the
  mirrored photo, in the mirrored view of the attempt that found the face (equal weights: both
  passed the same presence threshold);
- ``re-crop``: the landmark network on the crop re-centred, turned and rescaled from the first
  pass's points (:func:`landmark_network.roi_from_points`) and on its mirror image, weighted by
  each run's face-presence probability.

Criterion: the flip disagreement, mean ‖p − p_mirror‖ over the 478 points / the ROI side. A model
that has locked onto the face gives the same points for a photo and its mirror image; where the two
disagree, their mean is an average of guesses. The candidate with the lower disagreement wins; if
neither stays under :data:`MAX_DISAGREEMENT` (measured on the AFLW2000 dev photos, in ROI sides:
0.45–1.5 % where the passes sit on the face, 2.2 % on the near-profile aflw2000_image00181, whose
re-crop pass lands 3 points of NME further off than the first), the first pass is kept as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .landmark_network import LandmarkNetwork, Roi, roi_from_points
from .symmetry import dense_mirror, unmirror_points

MAX_DISAGREEMENT = 0.02  # fraction of the ROI side (1.5 × the points' extent)


@dataclass(frozen=True)
class PassChoice:
    """The chosen points and why: dense (478, 3) photo px; label: "first", "first+flip" or
    "re-crop+flip"; disagreement: per candidate label, the flip disagreement (fraction of the ROI)."""

    dense: np.ndarray
    label: str
    disagreement: dict[str, float]

    @property
    def note(self) -> str:
        scores = ", ".join(f"{k} {100 * v:.2f} %" for k, v in self.disagreement.items())
        return f"landmark pass: {self.label} (flip disagreement {scores or 'n/a'})"


def flip_disagreement(a: np.ndarray, b: np.ndarray, roi: Roi) -> float:
    """Mean 2D distance between two (478, ≥2) point sets, as a fraction of ``roi.size``."""
    return float(np.linalg.norm(a[:, :2] - b[:, :2], axis=1).mean() / roi.size)


def weighted_mean(a: np.ndarray, b: np.ndarray, wa: float, wb: float) -> np.ndarray:
    """(wa·a + wb·b) / (wa + wb); the plain mean when both weights vanish."""
    total = wa + wb
    if total <= 0:
        wa = wb = total = 1.0
    return ((wa * a.astype(np.float64) + wb * b.astype(np.float64)) / total).astype(np.float32)


def choose_pass(rgb8: np.ndarray, first: np.ndarray, mirrored_first: np.ndarray | None,
                network: LandmarkNetwork) -> PassChoice:
    """Run the re-crop pass and pick among the candidates (module docstring).

    Args:
        rgb8: (H, W, 3) uint8 photo.
        first: (478, 3) the Tasks landmarker's points.
        mirrored_first: its points on the mirrored photo, already mapped back
            (:func:`symmetry.unmirror_points`), or None when the mirrored photo gave no such face.
    """
    roi = roi_from_points(first)
    candidates: dict[str, tuple[np.ndarray, float]] = {}
    if mirrored_first is not None:
        candidates["first+flip"] = (weighted_mean(first, mirrored_first, 1.0, 1.0),
                                    flip_disagreement(first, mirrored_first, roi))
    plain, p_plain = network.run(rgb8, roi)
    flipped, p_flipped = network.run(rgb8, roi, mirrored=True)
    flipped = flipped[dense_mirror()]
    candidates["re-crop+flip"] = (weighted_mean(plain, flipped, p_plain, p_flipped),
                                  flip_disagreement(plain, flipped, roi))
    scores = {k: v[1] for k, v in candidates.items()}
    best = min(candidates, key=lambda k: candidates[k][1])
    if candidates[best][1] > MAX_DISAGREEMENT:
        return PassChoice(np.asarray(first, np.float32), "first", scores)
    return PassChoice(candidates[best][0], best, scores)


def match_mirrored(first: np.ndarray, mirrored_faces: list[np.ndarray], width: float,
                   iou: Callable[[np.ndarray, np.ndarray], float], min_iou: float = 0.5) -> np.ndarray | None:
    """The face among ``mirrored_faces`` (points on the mirrored photo) that is ``first``'s mirror
    image (box IoU ≥ ``min_iou`` after mapping back), mapped back; None if there is none."""
    best, best_iou = None, min_iou
    box = _box(first)
    for dense in mirrored_faces:
        back = unmirror_points(dense, width)
        overlap = iou(box, _box(back))
        if overlap >= best_iou:
            best, best_iou = back, overlap
    return best


def _box(dense: np.ndarray) -> np.ndarray:
    xy = dense[:, :2]
    return np.concatenate([xy.min(axis=0), xy.max(axis=0)])
