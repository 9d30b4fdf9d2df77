"""MediaPipe's face landmark network run on a crop we choose (the second landmark pass).

``face_landmarker.task`` bundles the landmark network (``face_landmarks_detector.tflite``: a 256²
RGB crop in [0, 1] → 478 points in crop pixels, z in the same scale, and a face-presence logit).
The Tasks API only runs it on the crop its own detector picks; here OpenCV's DNN module runs it on
any :class:`Roi` — a square of side ``size`` centred at ``centre`` and turned by ``angle`` — of the
photo or of its mirror image, and maps the points back to photo pixels.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import WeightsError
from .crop import opencv_affine

NETWORK_NAME = "face_landmarks_detector.tflite"
INPUT_SIZE = 256
ROI_SCALE = 1.5  # MediaPipe's face ROI: 1.5 × the landmarks' extent


@dataclass(frozen=True)
class Roi:
    """A square crop: centre (x, y) in photo px, side in px, in-plane angle in radians (the crop's
    x axis along the photo direction (cos a, sin a))."""

    centre: tuple[float, float]
    size: float
    angle: float


def roi_from_points(dense: np.ndarray, scale: float = ROI_SCALE) -> Roi:
    """The ROI MediaPipe derives from landmarks: turned so the eye corners (33 → 263) are level,
    centred on the points' extent in that frame, side = ``scale`` × the longer extent."""
    xy = np.asarray(dense[:, :2], dtype=np.float64)
    eye = xy[263] - xy[33]
    angle = float(np.arctan2(eye[1], eye[0]))
    c, s = np.cos(angle), np.sin(angle)
    axes = np.array([[c, s], [-s, c]])  # rows: the crop's x and y axes in the photo
    local = xy @ axes.T
    lo, hi = local.min(axis=0), local.max(axis=0)
    centre = ((lo + hi) / 2.0) @ axes
    return Roi((float(centre[0]), float(centre[1])), float((hi - lo).max() * scale), angle)


def roi_matrix(roi: Roi, mirrored: bool = False) -> np.ndarray:
    """(2, 3) photo px → network-input px; ``mirrored`` flips the crop left–right."""
    k = INPUT_SIZE / roi.size
    c, s = np.cos(roi.angle), np.sin(roi.angle)
    rot = k * np.array([[c, s], [-s, c]])
    shift = np.full(2, INPUT_SIZE / 2.0) - rot @ np.asarray(roi.centre)
    matrix = np.hstack([rot, shift[:, None]])
    if mirrored:
        matrix = np.array([[-1.0, 0.0, INPUT_SIZE], [0.0, 1.0, 0.0]]) @ np.vstack([matrix, [0.0, 0.0, 1.0]])
    return matrix


class LandmarkNetwork:
    """The landmark network of ``face_landmarker.task``, loaded once (CPU, OpenCV DNN)."""

    def __init__(self, task_path: str | Path) -> None:
        try:
            with zipfile.ZipFile(task_path) as archive:
                data = archive.read(NETWORK_NAME)
            self._net = cv2.dnn.readNetFromTFLite(np.frombuffer(data, dtype=np.uint8))
        except (OSError, KeyError, zipfile.BadZipFile, cv2.error) as exc:
            raise WeightsError(f"{task_path}: cannot load {NETWORK_NAME} ({exc})") from exc
        self._outputs = self._net.getUnconnectedOutLayersNames()

    def run(self, rgb8: np.ndarray, roi: Roi, mirrored: bool = False) -> tuple[np.ndarray, float]:
        """Landmarks of the face in ``roi`` of ``rgb8`` (H, W, 3) uint8.

        Returns:
            (478, 3) float32 points in photo px (z scaled like x, y) — for ``mirrored``, the points
            of the mirrored crop mapped back to photo px but still named as the network saw them
            (a left eye point lies on the subject's right: see ``symmetry.dense_mirror``) — and the
            face-presence probability.
        """
        matrix = roi_matrix(roi, mirrored)
        crop = cv2.warpAffine(rgb8, opencv_affine(matrix), (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        blob = (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        self._net.setInput(np.ascontiguousarray(blob))
        points, presence, _ = self._net.forward(self._outputs)
        points = points.reshape(-1, 3).astype(np.float64)
        inverse = cv2.invertAffineTransform(matrix)
        xy = points[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        z = points[:, 2] * roi.size / INPUT_SIZE
        probability = float(1.0 / (1.0 + np.exp(-float(np.ravel(presence)[0]))))
        return np.column_stack([xy, z]).astype(np.float32), probability
