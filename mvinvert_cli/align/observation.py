"""``Observation``: what the align and parse stages know about one face in one photo.

All arrays are numpy, on the CPU (the aligners are CPU libraries); stages that need tensors call
:meth:`Observation.crop_tensor` / :meth:`Observation.landmarks_tensor` with their device.

Coordinates follow the shared screen convention: pixels, x to the right, y down, origin at the
top-left corner of the image, pixel (row i, col j) centred at (x=j+0.5, y=i+0.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..io.images import Photo

if TYPE_CHECKING:
    import torch

CROP_SIZE = 224  # Deep3DFaceRecon input side (FORMATS.md §1i)
MASK_KEYS = ("hair", "glasses", "hat", "occluder", "skin", "brows", "eyes", "nose", "lips")


@dataclass(frozen=True)
class Observation:
    """One face found in a photo (after ``Aligner.align``), with masks after ``FaceParser.parse``.

    Attributes:
        photo: the decoded photo; ``photo.rgb`` float32 (H, W, 3) in [0, 1].
        box: float32 (4,) face box x1, y1, x2, y2 in photo pixels (extent of the landmarks for the
            MediaPipe backend, the detector box for FAN).
        landmarks: float32 (68, 2) iBUG-68 points (jaw 0–16, brows 17–26, nose 27–35, eyes 36–47,
            mouth 48–67) in photo pixels; "right"/"left" are the subject's, so point 36 (outer corner
            of the subject's right eye) lies on the image's left for a frontal face.
        points5: float32 (5, 2) [eyeL, eyeR, nose, mouthL, mouthR] in photo pixels, image-left first:
            eye centres = mean of the eye corners (iBUG 36,39 and 42,45), nose tip 30, mouth corners
            48 and 54 (Deep3DFaceRecon ``extract_5p``).
        dense: float32 (478, 3) MediaPipe points (x, y in photo pixels; z relative depth in the same
            pixel scale, smaller = nearer the camera), or None for backends without dense points.
        crop_matrix: float32 (2, 3) similarity A with crop_px = A @ [x, y, 1] from photo pixels to
            the 224×224 crop (Deep3DFaceRecon 5-point alignment: isotropic scale + translation).
        crop: float32 (224, 224, 3) in [0, 1], the photo resampled through ``crop_matrix``.
        face_mask: bool (H, W) face region in the photo (BiSeNet classes {1,2,3,4,5,10,12,13}:
            skin, brows, eyes, nose, lips), or None before parsing.
        crop_face_mask: bool (224, 224) the same region in the crop, or None before parsing.
        masks: extra bool (H, W) masks by name (:data:`MASK_KEYS`); only those the parser backend
            can produce are present (BiSeNet: hair, glasses, hat, occluder; polygon parser: skin,
            brows, eyes, nose, lips, occluder).
        head_pose: float32 (4, 4) MediaPipe facial transformation matrix (canonical face → camera
            space, centimetres, camera looking down −z), or None.
        aligner: backend that found the face ("mediapipe", "fan"), with the retry used if any,
            e.g. "mediapipe (retry: pad 150 px)".
        parser: backend that made the masks ("bisenet", "polygon"), or None before parsing.
        score: detector confidence in [0, 1], or None when the backend reports none (MediaPipe's
            landmarker does not expose one).
        index: rank of this face among all faces found in the photo (0 = largest box).
        faces_found: how many faces the detector found in the photo (this one included).
        notes: human-readable remarks (degraded paths, retries), for result.json.
    """

    photo: Photo
    box: np.ndarray
    landmarks: np.ndarray
    points5: np.ndarray
    crop_matrix: np.ndarray
    crop: np.ndarray
    dense: np.ndarray | None = None
    face_mask: np.ndarray | None = None
    crop_face_mask: np.ndarray | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    head_pose: np.ndarray | None = None
    aligner: str = ""
    parser: str | None = None
    score: float | None = None
    index: int = 0
    faces_found: int = 1
    notes: tuple[str, ...] = ()

    @property
    def box_area(self) -> float:
        x1, y1, x2, y2 = (float(v) for v in self.box)
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    def crop_tensor(self, device: Any = None) -> torch.Tensor:
        """The crop as a float32 (1, 3, 224, 224) tensor in [0, 1] on ``device``."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.crop.transpose(2, 0, 1)))[None].to(device)

    def landmarks_tensor(self, device: Any = None, in_crop: bool = False) -> torch.Tensor:
        """The 68 landmarks as float32 (68, 2) on ``device``; in crop pixels if ``in_crop``."""
        import torch

        points = transform_points(self.crop_matrix, self.landmarks) if in_crop else self.landmarks
        return torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)).to(device)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no images): box, points, pose, backends."""
        return {
            "index": self.index,
            "faces_found": self.faces_found,
            "box": [round(float(v), 2) for v in self.box],
            "landmarks68": _rounded(self.landmarks, 2),
            "points5": _rounded(self.points5, 2),
            "dense478": None if self.dense is None else _rounded(self.dense, 2),
            "crop_matrix": _rounded(self.crop_matrix, 6),
            "head_pose": None if self.head_pose is None else _rounded(self.head_pose, 6),
            "aligner": self.aligner,
            "parser": self.parser,
            "score": self.score,
            "masks": sorted(self.masks),
            "notes": list(self.notes),
        }


def _rounded(array: np.ndarray, digits: int) -> list:
    return np.round(np.asarray(array, dtype=np.float64), digits).tolist()


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (N, 2) points → (N, 2)."""
    points = np.asarray(points, dtype=np.float64)
    return (points @ np.asarray(matrix, dtype=np.float64)[:, :2].T + matrix[:, 2]).astype(np.float32)
