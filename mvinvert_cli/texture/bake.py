"""Per-vertex colours → S×S UV texture, with seam-safe padding.

The UV layout is rasterised once per topology and size (u right, v up: texel column u·S, row
(1 − v)·S); each texel inside a UV island interpolates its triangle's vertex colours. Texels outside
the islands take the colour of the nearest island texel (a full Euclidean dilation), so bilinear
filtering and every mipmap level only ever average island colours: no dark seams in viewers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy import ndimage

from ..render.rasterize import Fragments, interpolate, rasterize

DEFAULT_TEXTURE_SIZE = 1024


@dataclass(frozen=True)
class Baked:
    """A UV texture.

    Attributes:
        texture: (S, S, C) float, row 0 at the top (v = 1), padded past the islands.
        mask: (S, S) bool, texel centres inside a UV triangle (the completeness check's domain).
    """

    texture: torch.Tensor
    mask: torch.Tensor


def uv_fragments(uvs: torch.Tensor, faces: torch.Tensor, size: int = DEFAULT_TEXTURE_SIZE) -> Fragments:
    """Rasterisation of the UV layout at S×S (batch 1; reuse it for every bake of the topology).

    Args:
        uvs: (V, 2) per-vertex UVs in [0, 1], v up.
        faces: (F, 3) long.
        size: S.
    """
    screen = torch.stack([uvs[:, 0] * size, (1.0 - uvs[:, 1]) * size, torch.ones_like(uvs[:, 0])], dim=-1)
    return rasterize(screen[None], faces, (size, size))


def pad_islands(texture: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill every texel outside ``mask`` with the value of the nearest texel inside it.

    Args:
        texture: (S, S, C) (or (H, W, C)).
        mask: (S, S) bool; when empty, the texture is returned unchanged.

    Returns:
        (S, S, C) on ``texture``'s device, differentiable w.r.t. ``texture``.
    """
    if not bool(mask.any()) or bool(mask.all()):
        return texture
    _, nearest = ndimage.distance_transform_edt(~mask.cpu().numpy(), return_indices=True)
    rows = torch.from_numpy(nearest[0]).to(texture.device)
    cols = torch.from_numpy(nearest[1]).to(texture.device)
    return texture[rows, cols]


def bake(colors: torch.Tensor, uvs: torch.Tensor, faces: torch.Tensor, size: int = DEFAULT_TEXTURE_SIZE,
         fragments: Fragments | None = None) -> Baked:
    """Bake per-vertex colours into a seam-padded UV texture.

    Args:
        colors: (V, C) per-vertex colours (T_coarse / T_refine); non-finite values bake as 0.
        uvs: (V, 2) in [0, 1], v up.
        faces: (F, 3) long.
        size: S (ignored when ``fragments`` is given).
        fragments: :func:`uv_fragments` of this layout, to skip re-rasterising.

    Returns:
        :class:`Baked` on ``colors``' device.
    """
    if fragments is None:
        fragments = uv_fragments(uvs.to(colors.device, colors.dtype), faces, size)
    colors = torch.nan_to_num(colors, nan=0.0, posinf=0.0, neginf=0.0)
    texture = interpolate(fragments, faces, colors[None])[0]  # (S, S, C)
    mask = fragments.mask[0]
    return Baked(pad_islands(texture, mask), mask)
