"""Bake per-vertex colours into the UV texture and add texel-level photo detail where the photo sees.

A per-vertex texture has the mesh's resolution; the photo has more. Where the photo sees the surface,
the texel-level residual (photo texel − baked T_uv) is added to the baked colours with weight
clamp(:data:`DETAIL_GAIN` · interpolated score, 0, 1), so the texture keeps the photo's detail. The
residual depends only on the photo and the fit: :func:`photo_detail` computes it once per run and
:func:`bake_with_detail` applies it to any per-vertex colours (T_coarse, T_refine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..render.bake import UVLayout, bake, pad_islands
from .sample import sample_uv_texture

DETAIL_GAIN = 2.0  # texel detail weight = clamp(gain · interpolated photo score, 0, 1)


@dataclass(frozen=True)
class PhotoDetail:
    """Texel-level photo detail: ``residual`` (S, S, 3) = weight · (photo texel − baked T_uv), zero
    outside the islands and where the photo does not see the face."""

    residual: torch.Tensor


def photo_detail(image: torch.Tensor, photo_screen: torch.Tensor, t_uv: torch.Tensor, scores: torch.Tensor,
                 faces: torch.Tensor, layout: UVLayout) -> PhotoDetail:
    """The detail residual of one photo.

    Args:
        image: (1, 3, H, W) photo; photo_screen: (1, V, 3) vertices in photo pixels;
        t_uv: (V, 3) per-vertex photo colours; scores: (V,) visibility (0 = unseen);
        faces: (F, 3) long; layout: the UV layout of the output texture.
    """
    base_uv = bake(t_uv, faces, layout).texture
    texels, weight = sample_uv_texture(image, photo_screen, faces, layout, scores[None])
    weight = (weight[0] * DETAIL_GAIN).clamp(0, 1)[..., None]
    return PhotoDetail(residual=weight * (texels[0] - base_uv))


def bake_with_detail(colors: torch.Tensor, faces: torch.Tensor, layout: UVLayout,
                     detail: PhotoDetail) -> tuple[np.ndarray, np.ndarray]:
    """Bake (V, 3) colours to UV, add the photo detail, pad past island borders; return the (S, S, 3)
    texture and the (S, S) island mask as numpy."""
    base = bake(colors, faces, layout)
    texture = pad_islands((base.texture + detail.residual).clamp(0, 1), layout.nearest)
    return texture.cpu().numpy(), base.mask.cpu().numpy()
