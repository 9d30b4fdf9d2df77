"""What a fit is fitted to: the crop, face mask and 68 landmarks at the render size (MvInvert §3.1),
and the crop colours the current geometry sees (shared by both fits' appearance estimates).

All image-space quantities live in the render-size copy of the 224×224 fitting crop of the
:class:`~mvinvert_cli.align.observation.Observation`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..align.observation import CROP_SIZE, Observation
from ..errors import NoFaceError
from ..render.camera import Camera, facing
from ..render.rasterize import RasterBackend
from ..render.renderer import Renderer
from ..texture.sample import sample_image, zbuffer_visibility

MIN_FACING = 0.2  # n·d below which a vertex is too oblique to trust its colour


@dataclass(frozen=True)
class FitTarget:
    """The crop and face mask at render size S.

    Attributes:
        crop: (1, S, S, 3) RGB in [0, 1].
        face_mask: (1, S, S) bool, the parser's face region (all True without a mask).
        notes: degraded paths (no face mask).
    """

    crop: torch.Tensor
    face_mask: torch.Tensor
    notes: tuple[str, ...] = ()


def fit_renderer(camera: Camera) -> Renderer:
    """The fits' renderer: perspective-correct, our rasteriser on every device (as fitted so far)."""
    return Renderer(camera=camera, backend=RasterBackend.TORCH)


def target_landmarks(observation: Observation, size: int, device: torch.device) -> torch.Tensor:
    """The 68 crop landmarks (68, 2) scaled to render pixels.

    Raises:
        NoFaceError: the landmarks are not finite.
    """
    landmarks = observation.landmarks_tensor(device, in_crop=True) * (size / CROP_SIZE)
    if not torch.isfinite(landmarks).all():
        raise NoFaceError("the face's landmarks are not finite; cannot fit")
    return landmarks


def fit_target(observation: Observation, size: int, device: torch.device) -> FitTarget:
    """Crop (bilinear) and face mask (nearest) resized to ``size``."""
    notes = []
    crop = observation.crop_tensor(device)  # (1, 3, 224, 224)
    mask = observation.crop_face_mask
    if mask is None:
        mask_t = torch.ones(1, 1, *crop.shape[-2:], device=device)
        notes.append("no face mask: photometric loss over the whole rendered face")
    else:
        mask_t = torch.as_tensor(np.asarray(mask, dtype=np.float32), device=device)[None, None]
    if crop.shape[-1] != size:
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)
        mask_t = F.interpolate(mask_t, size=(size, size), mode="nearest")
    return FitTarget(crop.permute(0, 2, 3, 1), mask_t[:, 0] > 0.5, tuple(notes))


def visible_colors(camera: Camera, triangles: torch.Tensor, world: torch.Tensor, normals: torch.Tensor,
                   target: FitTarget) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop colours at the projected vertices (V, 3) and which vertices saw them (V,) bool: z-buffer
    visible, facing the camera (n·d > 0.2) and inside the face mask.

    Args:
        camera: the render-size camera; world, normals: (1, V, 3) world-space vertices and normals.
    """
    fragments, screen, _ = fit_renderer(camera).rasterize(world, triangles)
    visible = zbuffer_visibility(screen, fragments.zbuf[..., 0])[0]
    toward = facing(normals, world, camera.distance)[0] > MIN_FACING
    xy = screen[0, :, :2].floor().long().clamp(0, camera.size - 1)
    inside = target.face_mask[0, xy[:, 1], xy[:, 0]]
    return sample_image(target.crop.permute(0, 3, 1, 2), screen[..., :2])[0], visible & toward & inside
