"""Per-vertex colours → S×S UV texture, with seam-safe padding.

The UV layout is rasterised once per topology and size by the renderer (``render.renderer.
uv_fragments``: u right, v up, texel column u·S, row (1 − v)·S) into a :class:`UVLayout`; each texel inside a UV island interpolates its triangle's
vertex colours. Texels outside the islands take the colour of the nearest island texel (a full
Euclidean dilation, precomputed as an index map), so bilinear filtering and every mipmap level only
ever average island colours: no dark seams in viewers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy import ndimage

from .rasterize import Fragments, interpolate
from .renderer import uv_fragments

DEFAULT_TEXTURE_SIZE = 1024


@dataclass(frozen=True)
class UVLayout:
    """The rasterised UV layout of one topology at one size.

    Attributes:
        fragments: rasterisation of the UV triangles, batch 1, (1, S, S, 1) layout.
        mask: (S, S) bool, texel centres inside a UV triangle (the completeness check's domain).
        nearest: (S, S) long flat index (row·S + col) of the nearest texel inside ``mask`` (itself
            inside; all zeros when ``mask`` is empty).
    """

    fragments: Fragments
    mask: torch.Tensor
    nearest: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.mask.shape[-1])


@dataclass(frozen=True)
class Baked:
    """A UV texture.

    Attributes:
        texture: (S, S, C) float, row 0 at the top (v = 1), padded past the islands.
        mask: (S, S) bool, texels inside the UV islands.
    """

    texture: torch.Tensor
    mask: torch.Tensor


def nearest_inside(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) long flat index of the nearest True texel of ``mask`` (Euclidean; identity inside)."""
    height, width = mask.shape
    if not bool(mask.any()):
        return torch.zeros((height, width), dtype=torch.long, device=mask.device)
    _, (rows, cols) = ndimage.distance_transform_edt(~mask.cpu().numpy(), return_indices=True)
    return torch.from_numpy(rows * width + cols).long().to(mask.device)


def uv_layout(uvs: torch.Tensor, faces: torch.Tensor, size: int = DEFAULT_TEXTURE_SIZE) -> UVLayout:
    """Rasterise the UV layout at S×S (once per topology and size).

    Args:
        uvs: (V, 2) per-vertex UVs in [0, 1], v up.
        faces: (F, 3) long.
        size: S.
    """
    fragments = uv_fragments(uvs, faces, size)  # the renderer's UV-space rasterisation
    mask = fragments.mask[0]
    return UVLayout(fragments, mask, nearest_inside(mask))


def pad_islands(texture: torch.Tensor, nearest: torch.Tensor) -> torch.Tensor:
    """Give every texel the value of its nearest island texel (seam-safe padding).

    Args:
        texture: (..., H, W, C).
        nearest: (H, W) long flat indices from :func:`nearest_inside`.

    Returns:
        (..., H, W, C), differentiable w.r.t. ``texture``.
    """
    height, width, channels = texture.shape[-3:]
    flat = texture.reshape(*texture.shape[:-3], height * width, channels)
    return flat[..., nearest.reshape(-1), :].reshape(texture.shape)


def bake(colors: torch.Tensor, faces: torch.Tensor, layout: UVLayout) -> Baked:
    """Bake per-vertex colours into a seam-padded UV texture.

    Args:
        colors: (V, C) per-vertex colours (T_coarse / T_refine); non-finite values bake as 0.
        faces: (F, 3) long, the faces the layout was rasterised with.
        layout: :func:`uv_layout` of the topology.

    Returns:
        :class:`Baked` on ``colors``' device.
    """
    colors = torch.nan_to_num(colors, nan=0.0, posinf=0.0, neginf=0.0)
    texture = interpolate(layout.fragments, faces, colors[None])[0]  # (S, S, C)
    if not bool(layout.mask.any()):
        return Baked(texture, layout.mask)
    return Baked(pad_islands(texture, layout.nearest.to(texture.device)), layout.mask)
