"""Occlusion hold-out: hide what a turned head would self-occlude, refill it, score it against the photo.

MvInvert's point is the part of the face the photo does not show (§3.2), which re-rendering metrics
cannot see. For a near-frontal photo the hidden part is known: turn the fitted head by a yaw θ
(default 45°); the vertices that are visible in the photo but self-occluded (z-buffer) in the turned
view form the hidden set H. A method then recovers the texture from the remaining visible vertices
only (``keep`` = photo-visible ∖ H), and its colours on H are rendered back at the photo's pose and
compared with the photo's own pixels there (PSNR/SSIM/L1 of :mod:`mvinvert_cli.metrics`).

Everything here is a pure function over tensors; the baselines that need no model are here too:

- statistical fill: the model's prediction (lit PCA albedo, or the default model's statistical fill)
  on every vertex outside ``keep``;
- mirror fill: each vertex outside ``keep`` takes the colour of its mirror vertex across the model's
  x = 0 plane when that one is kept, else the statistical fill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..render.rasterize import Fragments, interpolate, rasterize
from ..texture.sample import zbuffer_visibility

DEFAULT_YAW = 45.0


@dataclass(frozen=True)
class HoldoutSplit:
    """Which vertices and pixels a hold-out hides.

    Attributes:
        yaw_deg: the turn θ (degrees, added to the fitted yaw) that defines the hidden set.
        hidden: bool (V,) H: visible in the photo, self-occluded after the turn.
        keep: bool (V,) photo-visible vertices a method may use (photo-visible ∖ H).
        region: bool (H, W) crop pixels scored: the nearest triangle at the photo's pose has all three
            vertices in H, and the pixel is in the face mask.
    """

    yaw_deg: float
    hidden: torch.Tensor
    keep: torch.Tensor
    region: torch.Tensor

    @property
    def region_pixels(self) -> int:
        return int(self.region.sum())


def zbuffer_visible(verts_screen: torch.Tensor, faces: torch.Tensor, image_size: tuple[int, int],
                    fragments: Fragments | None = None) -> torch.Tensor:
    """bool (V,) z-buffer visibility of screen vertices (V, 3) in one view.

    The texture stage's test (:func:`mvinvert_cli.texture.sample.zbuffer_visibility`: depth within
    its tolerance of the farthest covered surface at the pixel centres around the projection), so the
    hold-out hides exactly what the pipeline would consider unseen from the turned view.
    """
    if fragments is None:
        fragments = rasterize(verts_screen[None], faces, image_size)
    return zbuffer_visibility(verts_screen[None], fragments.zbuf[..., 0])[0]


def turned_angles(angles: torch.Tensor, yaw_deg: float) -> torch.Tensor:
    """Pose angles (3,) (x, y, z radians) with θ added to the yaw (y) — the turned view of the head."""
    return angles + angles.new_tensor([0.0, math.radians(yaw_deg), 0.0])


def hidden_region(fragments: Fragments, faces: torch.Tensor, hidden: torch.Tensor,
                  face_mask: torch.Tensor | None) -> torch.Tensor:
    """bool (H, W): pixels whose nearest triangle (photo pose) has all vertices hidden, ∩ face mask."""
    pix_to_face = fragments.pix_to_face[0, ..., 0]  # (H, W)
    hidden_faces = hidden[faces].all(dim=1)  # (F,)
    region = (pix_to_face >= 0) & hidden_faces[pix_to_face.clamp(min=0)]
    return region if face_mask is None else region & face_mask.to(region.device)


def split(verts_photo: torch.Tensor, verts_turned: torch.Tensor, faces: torch.Tensor, visible: torch.Tensor,
          image_size: tuple[int, int], yaw_deg: float = DEFAULT_YAW, face_mask: torch.Tensor | None = None,
          fragments: Fragments | None = None) -> HoldoutSplit:
    """The hold-out of one photo.

    Args:
        verts_photo: (V, 3) screen vertices at the photo's fitted pose (crop pixels).
        verts_turned: (V, 3) screen vertices with the yaw turned by θ (same camera).
        faces: (F, 3) long.
        visible: bool (V,) the pipeline's photo visibility (what a recovery normally uses).
        image_size: (H, W) crop size the region is defined on.
        face_mask: bool (H, W) face region of the crop, or None.
        fragments: an existing rasterisation of ``verts_photo`` at ``image_size`` (else made here).
    """
    visible_turned = zbuffer_visible(verts_turned, faces, image_size)
    hidden = visible & ~visible_turned
    if fragments is None:
        fragments = rasterize(verts_photo[None], faces, image_size)
    region = hidden_region(fragments, faces, hidden, face_mask)
    return HoldoutSplit(yaw_deg=yaw_deg, hidden=hidden, keep=visible & ~hidden, region=region)


def hidden_pixels(verts_screen: torch.Tensor, faces: torch.Tensor, hidden: torch.Tensor,
                  image_size: tuple[int, int], margin: int = 2, fragments: Fragments | None = None) -> torch.Tensor:
    """bool (H, W): pixels where any hidden vertex contributes (interpolated indicator > 0), grown by
    ``margin`` px — what a method must not see (wider than :func:`hidden_region`, which is scored)."""
    if fragments is None:
        fragments = rasterize(verts_screen[None], faces, image_size)
    touched = interpolate(fragments, faces, hidden.to(verts_screen.dtype)[None, :, None])[0, ..., 0] > 0
    size = 2 * margin + 1
    return torch.nn.functional.max_pool2d(touched[None, None].float(), size, stride=1, padding=margin)[0, 0] > 0


# ----------------------------------------------------------------------------- model-free baselines

def statistical_fill(colours: torch.Tensor, keep: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """(V, 3): the observed ``colours`` where ``keep``, the model's ``prior`` colours elsewhere."""
    return torch.where(keep[:, None], colours, prior)


def mirror_fill(colours: torch.Tensor, keep: torch.Tensor, mirror_ids: torch.Tensor,
                prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric fill: vertex v ∉ keep takes colours[mirror(v)] if mirror(v) ∈ keep, else prior[v].

    Returns:
        (V, 3) colours, and bool (V,) the vertices that took a mirrored colour (the other filled ones
        fell back to the prior — callers report the fraction, it is never hidden).
    """
    mirrored = keep[mirror_ids] & ~keep
    out = torch.where(keep[:, None], colours, prior)
    return torch.where(mirrored[:, None], colours[mirror_ids], out), mirrored


# ----------------------------------------------------------------------------- scoring in image space

def render_colours(verts_screen: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor,
                   image_size: tuple[int, int], fragments: Fragments | None = None) -> torch.Tensor:
    """Per-vertex colours (V, 3) rendered unlit at screen vertices (V, 3) → (3, H, W), 0 on background."""
    if fragments is None:
        fragments = rasterize(verts_screen[None], faces, image_size)
    return interpolate(fragments, faces, colours[None])[0].permute(2, 0, 1)


def composite(photo: torch.Tensor, render: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(3, H, W): the render inside ``region`` (H, W), the photo elsewhere (SSIM windows see real context)."""
    return torch.where(region[None], render, photo)
