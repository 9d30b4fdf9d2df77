"""Stitching several real photos of one face (MvInvert Eq. 5–6 with real views in place of GAN ones).

The first photo is the colour reference: its colours anchor Eq. 6 (λ) and every other photo is one
more view of Eq. 5 with its own Eq. 4 scores. Before stitching, each other photo's exposure / white
balance is brought to the reference's by a per-channel gain, estimated on the vertices both photos
see (:func:`exposure_gains`). Triangles no photo sees take their gradient from a fill texture (the
lit statistical texture T_pca, or GAN-inverted views), entered as extra views whose scores are scaled
by :data:`FILL_SCORE`, so a fill wins a triangle only where no photo sees it. A fill's own colours on
vertices a photo sees would put a false gradient into every triangle on the border of the seen part
(and pull the seen colours towards the fill), so each fill is first made to agree with the photos
(:func:`agree_with_photos`): the best photo's colour where any photo sees, and the fill's gradients,
Poisson-continued from there (§3.1's T_coarse blend), elsewhere. Texel-level photo detail
(``texture.detail``) comes, per texel, from the photo its triangle was taken from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..render.bake import UVLayout
from .coarse import coarse_texture
from .detail import PhotoDetail, photo_detail
from .poisson import PoissonSolver
from .stitch import Stitched, best_view_colors, stitch

FILL_SCORE = 1e-3  # fill views' scores are multiplied by this: below any photo's positive score
MIN_COMMON_VERTICES = 50  # vertices two photos must share for a gain estimate
GAIN_RANGE = (0.25, 4.0)  # a gain outside this is an estimate gone wrong, not an exposure difference


@dataclass(frozen=True)
class Gain:
    """Per-channel gain of one photo relative to the reference.

    Attributes:
        gain: (C,) multiply the photo's colours by this to match the reference.
        common: number of vertices both photos see (the estimate's support).
        note: why the gain is 1 (too few common vertices), else "".
    """

    gain: torch.Tensor
    common: int
    note: str = ""


def exposure_gains(reference: torch.Tensor, reference_scores: torch.Tensor, colors: torch.Tensor,
                   scores: torch.Tensor) -> Gain:
    """Per-channel gain g with g·colors ≈ reference on the vertices both see: the median of the
    per-vertex ratios (robust to shading and misregistration outliers), clamped to :data:`GAIN_RANGE`.

    Args:
        reference, colors: (V, C) per-vertex colours of the reference and of the other photo.
        reference_scores, scores: (V,) their Eq. 4 scores (> 0 = seen).
    """
    common = (reference_scores > 0) & (scores > 0)
    common &= (colors > 1e-3).all(-1) & torch.isfinite(colors).all(-1) & torch.isfinite(reference).all(-1)
    count = int(common.sum())
    if count < MIN_COMMON_VERTICES:
        return Gain(torch.ones(colors.shape[-1], dtype=colors.dtype, device=colors.device), count,
                    f"only {count} vertices seen by both photos: gain 1")
    ratio = (reference[common] / colors[common]).median(dim=0).values
    return Gain(ratio.clamp(*GAIN_RANGE), count)


def agree_with_photos(solver: PoissonSolver, colors: torch.Tensor, scores: torch.Tensor,
                      fill: torch.Tensor) -> torch.Tensor:
    """A fill texture that agrees with the photos: on vertices any photo sees, the best-scoring photo's
    colour; elsewhere ``fill``'s gradients Poisson-blended to continue those colours without a seam.

    Args:
        colors: (P, V, C) gain-corrected photo colours; scores: (P, V); fill: (V, C).
    """
    best, _ = best_view_colors(colors, scores)
    seen = scores.max(dim=0).values
    continued = coarse_texture(solver, best, seen, fill).colors
    return torch.where((seen > 0)[:, None], best, continued)


def stitch_photos(solver: PoissonSolver, colors: torch.Tensor, scores: torch.Tensor, fill_colors: torch.Tensor,
                  fill_scores: torch.Tensor, fallback: torch.Tensor) -> Stitched:
    """Eq. 5–6 over real photos plus fill views.

    Args:
        solver: the topology's :class:`PoissonSolver`.
        colors: (P, V, C) gain-corrected per-vertex colours of the photos (reference first).
        scores: (P, V) their Eq. 4 scores; photo 0's seen vertices anchor Eq. 6.
        fill_colors: (K, V, C) what fills triangles no photo sees (T_pca, GAN-inverted views); each
            is made to agree with the photos first (:func:`agree_with_photos`).
        fill_scores: (K, V) their scores (scaled here by :data:`FILL_SCORE`).
        fallback: (V, C) colours for mesh parts nothing anchors.

    Returns:
        :class:`Stitched` with ``selection`` 0..P−1 = photo, P..P+K−1 = fill view, −1 = none.
    """
    fills = torch.stack([agree_with_photos(solver, colors, scores, f) for f in fill_colors.to(colors)])
    views = torch.cat([colors[1:], fills])
    view_scores = torch.cat([scores[1:], FILL_SCORE * fill_scores.to(scores).clamp(0, 1)])
    return stitch(solver, colors[0], scores[0], views, view_scores, fallback=fallback)


def triangle_shares(selection: torch.Tensor, sources: int) -> list[float]:
    """Share of the mesh's triangles taken from each source 0..sources−1 (fills and none excluded)."""
    counts = torch.bincount(selection[selection >= 0], minlength=sources)[:sources]
    return [round(float(c) / selection.numel(), 4) for c in counts]


def texel_sources(selection: torch.Tensor, layout: UVLayout) -> torch.Tensor:
    """(K,) long: the selected source of the triangle under each of the layout's K inside texels."""
    return selection[layout.texel_faces.to(selection.device).long()]


def multi_photo_detail(images: Sequence[torch.Tensor], screens: Sequence[torch.Tensor],
                       colors: torch.Tensor, scores: torch.Tensor, gains: torch.Tensor, faces: torch.Tensor,
                       layout: UVLayout, selection: torch.Tensor) -> PhotoDetail:
    """Texel detail of several photos: each texel takes the (gain-corrected) residual of the photo its
    triangle was selected from; texels of fill triangles get none.

    Args:
        images: per photo (1, 3, H, W); screens: per photo (1, V, 3) vertices in its pixels.
        colors: (P, V, 3) gain-corrected per-vertex colours; scores: (P, V); gains: (P, 3).
        selection: (F,) per-triangle source from :func:`stitch_photos`.
    """
    sources = texel_sources(selection, layout)
    residual = None
    for i, (image, screen) in enumerate(zip(images, screens, strict=True)):
        corrected = image * gains[i].to(image).view(1, -1, 1, 1)
        detail = photo_detail(corrected, screen, colors[i], scores[i], faces, layout).residual
        if residual is None:
            residual = torch.zeros_like(detail)
        residual = torch.where((sources == i).to(detail.device)[..., None], detail, residual)
    return PhotoDetail(residual=residual)


SOURCE_PALETTE = ((0.90, 0.25, 0.20), (0.20, 0.55, 0.95), (0.25, 0.80, 0.35), (0.95, 0.75, 0.15),
                  (0.70, 0.35, 0.90), (0.15, 0.80, 0.80), (0.95, 0.50, 0.70), (0.55, 0.40, 0.25))
FILL_COLOUR = (0.45, 0.45, 0.45)


def source_map(selection: torch.Tensor, layout: UVLayout, texture: torch.Tensor, photos: int,
               tint: float = 0.55) -> torch.Tensor:
    """(S, S, 3) UV map coloured by source photo (palette order = input order), grey for fills,
    blended with the final ``texture`` (S, S, 3) so the face stays readable; black outside the islands."""
    sources = texel_sources(selection, layout).to(texture.device)  # (K,)
    palette = torch.tensor([SOURCE_PALETTE[i % len(SOURCE_PALETTE)] for i in range(photos)],
                           dtype=texture.dtype, device=texture.device)
    fill = texture.new_tensor(FILL_COLOUR).expand(len(sources), 3)
    colours = torch.where(((sources >= 0) & (sources < photos))[:, None], palette[sources.clamp(0, photos - 1)], fill)
    inside = layout.mask.to(texture.device)
    blended = tint * layout.pad(colours) + (1 - tint) * texture
    return torch.where(inside[..., None], blended, torch.zeros_like(blended))
