"""Records of a multi-photo recovery (several photos of one person → one mesh, one texture).

:class:`MultiRecovery` wraps the :class:`~mvinvert_cli.records.Recovery` of the reference photo (whose
texture is the blended multi-photo one, so every single-photo writer, eval and viewer path works on
it unchanged) and adds one :class:`PhotoInput` per input, used or left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io.images import Photo
from .records import Recovery

USED, EXCLUDED = "used", "excluded"


@dataclass(frozen=True)
class PhotoInput:
    """One input photo of a multi-photo recovery.

    Attributes:
        path: the file; status: :data:`USED` or :data:`EXCLUDED`; reason: why it was left out ("" if used).
        angles_deg: fitted (pitch, yaw, roll) in degrees, or None when no fit was made.
        landmark_px: mean landmark reprojection error of its joint fit (render px), NaN if unused.
        shape_distance: landmark-shape distance to the reference (fraction of face radius), NaN if none.
        identity_cosine: identity-embedding cosine with the reference, NaN without an identity backend.
        gain: per-channel gain of its albedo to the reference's, applied before the blend (1 for the reference), or None.
        triangle_share: share of the final texture's triangles taken from this photo.
        notes: per-photo remarks (fit notes, gain estimate).
    """

    path: Path
    status: str
    reason: str = ""
    angles_deg: tuple[float, float, float] | None = None
    landmark_px: float = math.nan
    shape_distance: float = math.nan
    identity_cosine: float = math.nan
    gain: tuple[float, float, float] | None = None
    triangle_share: float = 0.0
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        def number(x: float, digits: int = 4) -> float | None:
            return None if math.isnan(x) else round(x, digits)

        pose = None if self.angles_deg is None else dict(zip(("pitch", "yaw", "roll"), self.angles_deg, strict=True))
        return {"path": str(self.path), "status": self.status, "reason": self.reason, "pose_deg": pose,
                "landmark_px": number(self.landmark_px, 3), "shape_distance": number(self.shape_distance),
                "identity_cosine": number(self.identity_cosine), "gain": self.gain,
                "triangle_share": self.triangle_share, "notes": list(self.notes)}


@dataclass(frozen=True)
class MultiRecovery:
    """Everything a multi-photo run produced.

    Attributes:
        recovery: the reference photo's :class:`Recovery` carrying the blended texture and the shared
            identity mesh (its ``fit`` is the reference's joint fit).
        albedo: (V, 3) the blended per-vertex albedo (before re-lighting by the reference's light).
        inputs: one :class:`PhotoInput` per input, in input order.
        photos: the used photos, in input order (the first is the reference).
        source_map: (S, S, 3) float UV map coloured by source photo (the preview's contribution panel).
        fill_share: share of triangles no photo sees (filled by T_pca or GAN-inverted views).
        notes: joint-fit and stitch remarks.
    """

    recovery: Recovery
    albedo: torch.Tensor
    inputs: tuple[PhotoInput, ...]
    photos: tuple[Photo, ...]
    source_map: np.ndarray
    fill_share: float
    notes: tuple[str, ...]

    @property
    def used(self) -> tuple[PhotoInput, ...]:
        return tuple(p for p in self.inputs if p.status == USED)
