"""Landmark accuracy: normalised mean error (NME) of 68 predicted points against ground truth.

Two normalisations, as the literature reports them:
  - ``"box"``: mean point error / sqrt(w·h) of the ground truth's bounding box (AFLW2000-3D papers,
    e.g. 3DDFA; ../shared/faces/PROVENANCE.md);
  - ``"iod"``: mean point error / outer inter-ocular distance, iBUG 36–45 (300-W).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ANNOTATIONS = ("pts68", "pts68_reannotated")  # AFLW2000-3D fit landmarks, 3DDFA re-annotation


def normaliser(truth: np.ndarray, norm: str = "box") -> float:
    """The length an NME divides by, from (N, 2) ground-truth points in iBUG order (see module doc)."""
    truth = np.asarray(truth, dtype=np.float64)
    if norm == "box":
        w, h = truth.max(axis=0) - truth.min(axis=0)
        return float(np.sqrt(w * h))
    if norm == "iod":
        return float(np.linalg.norm(truth[36] - truth[45]))
    raise ValueError(f"unknown NME normalisation {norm!r}")


def point_errors(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N,) Euclidean distances between (N, 2) predicted and ground-truth points."""
    return np.linalg.norm(np.asarray(predicted, np.float64) - np.asarray(truth, np.float64), axis=1)


def nme(predicted: np.ndarray, truth: np.ndarray, norm: str = "box", scale_from: np.ndarray | None = None) -> float:
    """Mean point error / :func:`normaliser` (of ``scale_from`` if given: the full 68 points when
    ``truth`` is a subset)."""
    return float(point_errors(predicted, truth).mean() / normaliser(truth if scale_from is None else scale_from, norm))


@dataclass(frozen=True)
class GroundTruth:
    """One photo's 68-point annotations (``pts68.json`` in ../shared/faces).

    Attributes:
        image: photo file name (next to the json).
        points: annotation name → float64 (68, 2) x, y in image pixels, iBUG order.
        yaw_deg: the dataset's yaw (positive: turned toward the image's left).
    """

    image: Path
    points: dict[str, np.ndarray]
    yaw_deg: float


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read an ``aflw2000_*.pts68.json`` file (every annotation in :data:`ANNOTATIONS` it holds)."""
    path = Path(path)
    data = json.loads(path.read_text())
    points = {k: np.asarray(data[k], dtype=np.float64) for k in ANNOTATIONS if k in data}
    return GroundTruth(path.with_name(data["image"]), points, float(data.get("yaw_deg", float("nan"))))
