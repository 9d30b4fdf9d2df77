"""``Aligner``: find faces, 68 iBUG landmarks, 5 points and the 224² fitting crop.

Backends (chosen by name, imported only when chosen):
  - ``fan``: face-alignment FAN 2D + SFD detector from local files in weights/ (or the torch hub
    cache); never downloads.
  - ``mediapipe``: the embedded default, MediaPipe FaceLandmarker with the fixed 478 → 68 map.
  - ``auto``: ``fan`` when its files are present, else ``mediapipe``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import NoFaceError, UsageError
from ..io.images import Photo
from .backends import AlignerBackend
from .crop import crop_matrix, warp_crop
from .ibug import five_points, ibug_from_dense
from .observation import Observation


def _as_photo(photo: Photo | np.ndarray) -> Photo:
    if isinstance(photo, Photo):
        return photo
    rgb = np.asarray(photo)
    rgb = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    return Photo(rgb, None, (rgb.shape[1], rgb.shape[0]))


def make_observation(photo: Photo, landmarks: np.ndarray, box: np.ndarray, aligner: str, *,
                     dense: np.ndarray | None = None, head_pose: np.ndarray | None = None,
                     score: float | None = None, notes: tuple[str, ...] = ()) -> Observation:
    """Build an :class:`Observation` from 68 landmarks: 5 points, crop matrix and crop."""
    points5 = five_points(landmarks)
    matrix = crop_matrix(points5)
    return Observation(
        photo=photo, box=np.asarray(box, dtype=np.float32), landmarks=landmarks.astype(np.float32),
        points5=points5, crop_matrix=matrix, crop=warp_crop(photo.rgb, matrix), dense=dense,
        head_pose=head_pose, aligner=aligner, score=score, notes=notes,
    )


class Aligner:
    """Loads one landmark backend once; ``detect`` / ``align`` photos with it.

    Attributes:
        backend: the backend in use ("mediapipe" or "fan").
        notes: why ``auto`` chose it (e.g. "FAN weights missing: MediaPipe default").
    """

    def __init__(self, backend: str | AlignerBackend = "auto", device: Any = "cpu", trust_pickle: bool = False) -> None:
        try:
            choice = AlignerBackend(backend)
        except ValueError as exc:
            raise UsageError(f"unknown aligner {backend!r}; choose auto, mediapipe or fan") from exc
        self.notes: list[str] = []
        if choice is AlignerBackend.auto:
            from .fan_backend import fan_files

            if fan_files() is not None:
                choice = AlignerBackend.fan
            else:
                self.notes.append("FAN weights not found: using the MediaPipe landmarker (embedded default)")
                choice = AlignerBackend.mediapipe
        self.backend = choice.value
        self.device = device
        if choice is AlignerBackend.fan:
            from .fan_backend import FanLandmarker

            self._impl: Any = FanLandmarker(device=device, trust_pickle=trust_pickle)
            self.notes += self._impl.notes
        else:
            from .mediapipe_backend import MediaPipeLandmarker

            self._impl = MediaPipeLandmarker()

    def detect(self, photo: Photo | np.ndarray) -> list[Observation]:
        """All faces in ``photo``, largest box first (``Observation.index`` = rank); [] if none."""
        photo = _as_photo(photo)
        observations = []
        if self.backend == "mediapipe":
            for face in self._impl.detect(photo.rgb):
                landmarks = ibug_from_dense(face.dense[:, :2])
                label = f"mediapipe (retry: {face.how})" if face.how else "mediapipe"
                notes = ((f"face found after retry ({face.how})",) if face.how else ()) + (
                    (face.landmark_pass,) if face.landmark_pass else ())
                observations.append(make_observation(photo, landmarks, face.box, label, dense=face.dense,
                                                     head_pose=face.pose, notes=notes))
        else:
            for landmarks, box, score in self._impl.detect(photo.rgb):
                observations.append(make_observation(photo, landmarks, box, "fan", score=score,
                                                     notes=tuple(self._impl.notes)))
        observations.sort(key=lambda o: -o.box_area)
        return [_with_index(o, i, len(observations)) for i, o in enumerate(observations)]

    def align(self, photo: Photo | np.ndarray, face_index: int = 0) -> Observation:
        """The ``face_index``-th largest face.

        Raises:
            NoFaceError: no face, or ``face_index`` out of range.
        """
        return select_face(self.detect(photo), face_index, _photo_name(photo), self.backend)


def select_face(faces: list[Observation], face_index: int, name: str = "image", backend: str = "") -> Observation:
    """``faces[face_index]`` (faces sorted largest first), or a one-line :class:`NoFaceError`."""
    if not faces:
        raise NoFaceError(f"{name}: no face found ({backend} landmarker, with retries)")
    if not 0 <= face_index < len(faces):
        raise NoFaceError(f"{name}: --face-index {face_index} out of range, found {len(faces)} face(s)")
    return faces[face_index]


def _with_index(observation: Observation, index: int, faces_found: int) -> Observation:
    from dataclasses import replace

    notes = observation.notes
    if faces_found > 1:
        notes += (f"{faces_found} faces found; this is face {index} (0 = largest; choose with --face-index)",)
    return replace(observation, index=index, faces_found=faces_found, notes=notes)


def _photo_name(photo: Photo | np.ndarray) -> str:
    path = getattr(photo, "path", None)
    return str(path.name) if path is not None else "image"
