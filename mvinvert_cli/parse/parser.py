"""``FaceParser``: face / hair / occluder masks for an :class:`~mvinvert_cli.align.Observation`.

Backends: ``bisenet`` (face-parsing.PyTorch ``79999_iter.pth`` in weights/, 19 classes) and
``polygon`` (embedded default: landmark polygons + skin-colour model, needs the dense points of
the MediaPipe aligner). ``auto`` picks ``bisenet`` when its weights are present.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..align.crop import warp_mask
from ..align.observation import Observation
from ..errors import UsageError
from .backends import ParserBackend
from .masks import fill_hull, polygon_face_masks


class FaceParser:
    """Loads one parsing backend once; :meth:`parse` fills an observation's masks.

    Attributes:
        backend: "bisenet" or "polygon".
        notes: why ``auto`` chose it.
    """

    def __init__(self, backend: str | ParserBackend = "auto", device: Any = "cpu",
                 trust_pickle: bool = False) -> None:
        try:
            choice = ParserBackend(backend)
        except ValueError as exc:
            raise UsageError(f"unknown parser {backend!r}; choose auto, bisenet or polygon") from exc
        from ..weights import locate

        self.notes: list[str] = []
        if choice is ParserBackend.auto:
            if locate("bisenet") is not None:
                choice = ParserBackend.bisenet
            else:
                self.notes.append("BiSeNet 79999_iter.pth not found: landmark-polygon masks (no hair class)")
                choice = ParserBackend.polygon
        self.backend = choice.value
        self.device = device
        self._net: Any = None
        if choice is ParserBackend.bisenet:
            from .bisenet import load_bisenet

            self._net = load_bisenet(device=device, trust_pickle=trust_pickle)

    def parse(self, observation: Observation) -> Observation:
        """A copy of ``observation`` with face_mask, crop_face_mask, masks and parser set.

        The polygon backend uses the dense points when the aligner gave them (MediaPipe), else the
        68 landmarks (FAN), with coarser polygons; ``notes`` says which.
        """
        rgb = observation.photo.rgb
        notes = list(observation.notes)
        if self.backend == "bisenet":
            from .bisenet import parse_photo

            oval = _landmark_region(observation, rgb.shape[:2])
            masks = parse_photo(self._net, rgb, observation.box, oval)
        elif observation.dense is not None:
            masks = polygon_face_masks(rgb, observation.dense)
        else:
            masks = polygon_face_masks(rgb, observation.landmarks)
            notes.append("polygon parser on 68 landmarks (no dense points): coarser face polygons")
        face = masks.pop("face")
        return replace(observation, face_mask=face, crop_face_mask=warp_mask(face, observation.crop_matrix),
                       masks=masks, parser=self.backend, notes=tuple(notes))


def _landmark_region(observation: Observation, shape: tuple[int, int]) -> np.ndarray:
    """Where the face should be: hull of the dense points, else of the 68 landmarks (brows raised)."""
    if observation.dense is not None:
        return fill_hull(observation.dense[:468, :2], shape)
    points = observation.landmarks.copy()
    # lift the brows by a third of the brow-to-chin height so the forehead is included
    lift = 0.33 * (points[8, 1] - points[17:27, 1].mean())
    brows = points[17:27] - np.array([0.0, lift], dtype=np.float32)
    return fill_hull(np.concatenate([points, brows]), shape)
