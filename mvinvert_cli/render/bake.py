"""Per-vertex colours → S×S UV texture, with seam-safe padding, in bounded memory.

The UV layout is rasterised once per topology and size by the renderer (``render.renderer.
uv_fragments``: u right, v up, texel column u·S, row (1 − v)·S), in bands of at most
``BAND_TEXELS`` texels so the rasteriser's per-pixel buffers stay small at any size. The
:class:`UVLayout` keeps only what a bake needs, per texel inside a UV island (row-major order): its
triangle and barycentrics; and per texel of the whole S×S image: which inside texel it copies. Texels
outside the islands take the colour of the nearest island texel (a full Euclidean dilation), so
bilinear filtering and every mipmap level only ever average island colours: no dark seams in viewers.

A bake interpolates the K inside texels in chunks of ``CHUNK_TEXELS`` (Σ_i bary_i · colour of
corner i, the renderer's ``interpolate`` formula, so the values are the same) and pads with one
gather. Memory: about 21 bytes per texel for the layout, plus the output texture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from .renderer import uv_fragments

DEFAULT_TEXTURE_SIZE = 1024
BAND_TEXELS = 1 << 20  # texels rasterised per band while building a layout
CHUNK_TEXELS = 1 << 19  # inside texels interpolated at once by a bake


@dataclass(frozen=True)
class UVLayout:
    """The rasterised UV layout of one topology at one size.

    Attributes:
        mask: (S, S) bool, texel centres inside a UV triangle (the completeness check's domain).
        texel_faces: (K,) int32 triangle of each inside texel, K = mask.sum(), row-major order.
        texel_bary: (K, 3) affine barycentrics of each inside texel's centre in its triangle.
        source: (S·S,) int32 index into the K inside texels of every texel's nearest inside texel
            (itself when inside; all zeros when K = 0).
    """

    mask: torch.Tensor
    texel_faces: torch.Tensor
    texel_bary: torch.Tensor
    source: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.mask.shape[-1])

    @property
    def n_inside(self) -> int:
        return int(self.texel_faces.shape[0])

    @property
    def device(self) -> torch.device:
        return self.mask.device

    @property
    def nearest(self) -> torch.Tensor:
        """(S, S) long flat index (row·S + col) of every texel's nearest inside texel."""
        inside = torch.nonzero(self.mask.reshape(-1)).squeeze(1)
        if inside.numel() == 0:
            return torch.zeros(self.mask.shape, dtype=torch.long, device=self.device)
        return inside[self.source.long()].reshape(self.mask.shape)

    def to(self, device: torch.device | str) -> UVLayout:
        """The layout on ``device``."""
        return UVLayout(*(t.to(device) for t in (self.mask, self.texel_faces, self.texel_bary, self.source)))

    def interpolate(self, attributes: torch.Tensor, faces: torch.Tensor, start: int = 0,
                    stop: int | None = None) -> torch.Tensor:
        """Per-vertex attributes at inside texels ``start:stop`` (all by default).

        Args:
            attributes: (..., V, C).
            faces: (F, 3) long, the faces the layout was rasterised with.

        Returns:
            (..., stop − start, C), differentiable w.r.t. ``attributes``.
        """
        stop = self.n_inside if stop is None else stop
        corners = faces.to(device=attributes.device, dtype=torch.long).index_select(
            0, self.texel_faces[start:stop].to(attributes.device))  # (k, 3)
        bary = self.texel_bary[start:stop].to(device=attributes.device, dtype=attributes.dtype)
        dim = attributes.ndim - 2
        return sum(bary[:, i: i + 1] * attributes.index_select(dim, corners[:, i]) for i in range(3))

    def chunks(self, size: int = CHUNK_TEXELS) -> list[tuple[int, int]]:
        """(start, stop) ranges of at most ``size`` inside texels covering all K."""
        return [(s, min(s + size, self.n_inside)) for s in range(0, self.n_inside, size)]

    def pad(self, values: torch.Tensor) -> torch.Tensor:
        """(..., K, C) inside-texel values → (..., S, S, C) with every texel padded (differentiable)."""
        size = self.size
        if self.n_inside == 0:
            return values.new_zeros((*values.shape[:-2], size, size, values.shape[-1]))
        dim = values.ndim - 2
        full = values.index_select(dim, self.source.to(values.device))
        return full.reshape(*values.shape[:-2], size, size, values.shape[-1])


@dataclass(frozen=True)
class Baked:
    """A UV texture.

    Attributes:
        texture: (..., S, S, C) float, row 0 at the top (v = 1), padded past the islands.
        mask: (S, S) bool, texels inside the UV islands.
    """

    texture: torch.Tensor
    mask: torch.Tensor


def nearest_inside(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) long flat index of the nearest True texel of ``mask`` (Euclidean; identity inside)."""
    height, width = mask.shape
    if not bool(mask.any()):
        return torch.zeros((height, width), dtype=torch.long, device=mask.device)
    rows, cols = ndimage.distance_transform_edt(~mask.cpu().numpy(), return_distances=False, return_indices=True)
    return torch.from_numpy(rows.astype(np.int64) * width + cols).to(mask.device)


def _nearest_source(mask: np.ndarray) -> np.ndarray:
    """(H·W,) int32 rank among the True texels (row-major) of each texel's nearest True texel."""
    height, width = mask.shape
    if not mask.any():
        return np.zeros(height * width, dtype=np.int32)
    rows, cols = ndimage.distance_transform_edt(~mask, return_distances=False, return_indices=True)
    rank = np.cumsum(mask.reshape(-1), dtype=np.int32) - 1  # rank of each True texel
    flat = rows.reshape(-1) * np.int32(width) + cols.reshape(-1)
    del rows, cols
    return rank[flat]


def uv_layout(uvs: torch.Tensor, faces: torch.Tensor, size: int = DEFAULT_TEXTURE_SIZE,
              band_texels: int = BAND_TEXELS) -> UVLayout:
    """Rasterise the UV layout at S×S (once per topology and size), ``band_texels`` at a time.

    Args:
        uvs: (V, 2) per-vertex UVs in [0, 1], v up.
        faces: (F, 3) long.
        size: S.
        band_texels: rows of S texels rasterised per band (≥ one row).

    Returns:
        The layout on ``uvs``' device.
    """
    rows = max(1, band_texels // size)
    masks, texel_faces, texel_bary = [], [], []
    for top in range(0, size, rows):
        fragments = uv_fragments(uvs, faces, size, rows=(top, min(size, top + rows)))  # the renderer's
        face = fragments.pix_to_face[0, ..., 0]
        inside = face >= 0
        masks.append(inside)
        texel_faces.append(face[inside].int())
        texel_bary.append(fragments.bary_coords[0, ..., 0, :][inside].detach())
        del fragments, face
    mask = torch.cat(masks)
    source = torch.from_numpy(_nearest_source(mask.cpu().numpy())).to(mask.device)
    return UVLayout(mask, torch.cat(texel_faces), torch.cat(texel_bary), source)


def pad_islands(texture: torch.Tensor, nearest: torch.Tensor) -> torch.Tensor:
    """Give every texel the value of its nearest island texel (seam-safe padding).

    Args:
        texture: (..., H, W, C).
        nearest: (H, W) long flat indices from :func:`nearest_inside` or ``UVLayout.nearest``.

    Returns:
        (..., H, W, C), differentiable w.r.t. ``texture``.
    """
    height, width, channels = texture.shape[-3:]
    flat = texture.reshape(*texture.shape[:-3], height * width, channels)
    return flat[..., nearest.reshape(-1), :].reshape(texture.shape)


def bake(colors: torch.Tensor, faces: torch.Tensor, layout: UVLayout) -> Baked:
    """Bake per-vertex colours into a seam-padded UV texture.

    Args:
        colors: (..., V, C) per-vertex colours (T_coarse / T_refine; a batch of them); non-finite
            values bake as 0.
        faces: (F, 3) long, the faces the layout was rasterised with.
        layout: :func:`uv_layout` of the topology.

    Returns:
        :class:`Baked` on ``colors``' device, texture (..., S, S, C); differentiable w.r.t. ``colors``.
    """
    colors = torch.nan_to_num(colors, nan=0.0, posinf=0.0, neginf=0.0)
    values = colors.new_empty((*colors.shape[:-2], layout.n_inside, colors.shape[-1]))
    for start, stop in layout.chunks():
        values[..., start:stop, :] = layout.interpolate(colors, faces, start, stop)
    return Baked(layout.pad(values), layout.mask.to(colors.device))
