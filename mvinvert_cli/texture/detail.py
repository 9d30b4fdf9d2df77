"""Bake per-vertex colours into the UV texture and add texel-level photo detail where the photo sees.

A per-vertex texture has the mesh's resolution; the photo has more. Where the photo sees the surface,
the texel-level residual (photo texel − baked T_uv) is added to the baked colours with weight
clamp(:data:`DETAIL_GAIN` · interpolated score, 0, 1), so the texture keeps the photo's detail. The
residual depends only on the photo and the fit: :func:`photo_detail` computes it once per run and
:func:`bake_with_detail` applies it to any per-vertex colours (T_coarse, T_refine). Both work on the
layout's inside texels a chunk at a time (memory bounded at any texture size) and pad once at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..render.bake import UVLayout
from .sample import sample_image

DETAIL_GAIN = 2.0  # texel detail weight = clamp(gain · interpolated photo score, 0, 1)


@dataclass(frozen=True)
class PhotoDetail:
    """Texel-level photo detail: ``residual`` (K, 3) = weight · (photo texel − interpolated T_uv) at
    the layout's K inside texels (``UVLayout`` order), zero where the photo does not see the face."""

    residual: torch.Tensor


def photo_detail(image: torch.Tensor, photo_screen: torch.Tensor, t_uv: torch.Tensor, scores: torch.Tensor,
                 faces: torch.Tensor, layout: UVLayout) -> PhotoDetail:
    """The detail residual of one photo (computed ``CHUNK_TEXELS`` texels at a time).

    Args:
        image: (1, 3, H, W) photo; photo_screen: (1, V, 3) vertices in photo pixels;
        t_uv: (V, 3) per-vertex photo colours; scores: (V,) visibility (0 = unseen);
        faces: (F, 3) long; layout: the UV layout of the output texture.
    """
    t_uv = torch.nan_to_num(t_uv, nan=0.0, posinf=0.0, neginf=0.0)  # as render.bake.bake
    attributes = torch.cat([t_uv, photo_screen[0, :, :2].to(t_uv), scores[:, None].to(t_uv)], dim=-1)  # (V, 6)
    residual = t_uv.new_empty((layout.n_inside, 3))
    for start, stop in layout.chunks():
        per_texel = layout.interpolate(attributes, faces, start, stop)  # T_uv, photo x, y, score
        texels = sample_image(image, per_texel[None, :, 3:5])[0]
        weight = (per_texel[:, 5:6] * DETAIL_GAIN).clamp(0, 1)
        residual[start:stop] = weight * (texels - per_texel[:, :3])
    return PhotoDetail(residual=residual)


def bake_with_detail(colors: torch.Tensor, faces: torch.Tensor, layout: UVLayout,
                     detail: PhotoDetail) -> tuple[np.ndarray, np.ndarray]:
    """Bake (V, 3) colours to UV, add the photo detail, pad past island borders; return the (S, S, 3)
    texture and the (S, S) island mask as numpy."""
    colors = torch.nan_to_num(colors, nan=0.0, posinf=0.0, neginf=0.0)
    values = colors.new_empty((layout.n_inside, colors.shape[-1]))
    for start, stop in layout.chunks():
        values[start:stop] = (layout.interpolate(colors, faces, start, stop) + detail.residual[start:stop]).clamp(0, 1)
    return layout.pad(values).cpu().numpy(), layout.mask.cpu().numpy()
