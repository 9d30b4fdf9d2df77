"""Stitching several real photos of one face into one albedo (MvInvert §3.1 with real views).

Every photo has its own light and exposure, so colours are combined as albedo, not as photo colours:

1. de-light: each photo's per-vertex colours T_uv^i divided by its fitted SH irradiance
   (:func:`photo_shading`, the shading of ``dense_fit.estimate_albedo`` / Deep3DFaceRecon's
   ``compute_color``: colour = albedo · Y(n)·γ), giving albedo samples A^i = T_uv^i / (Y(n^i)·γ^i);
2. gain: each photo's per-channel gain to the first photo's albedo (white balance, the exposure left
   in a monochrome light), the median ratio on the vertices both photos see (:func:`exposure_gains`);
3. blend: per vertex the Eq. 4-score-weighted mean of the gain-corrected samples of the photos that
   see it (:func:`blend_photos`); two photos' independent errors (misregistration, specular spots,
   shadows the SH light misses) average out where both see. What no photo sees takes the fill
   texture's gradients (T_pca's albedo), Poisson-continued from the blend without a seam (§3.1's
   T_coarse solve, ``coarse.coarse_texture``);
4. re-light: the output texture is the blended albedo lit by the first photo's light
   (:func:`relight`), so it stays in "photo colours" like every single-photo texture.

Per triangle, the photo with the best Eq. 4 confidence (Eq. 5's selection over the photos) is its
main source: it gives the texel-level detail (:func:`multi_photo_detail`), each triangle's share in
result.json (:func:`triangle_shares`) and the preview's source map (:func:`source_map`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..render import lighting
from ..render.bake import UVLayout
from .coarse import coarse_texture
from .detail import PhotoDetail, photo_detail
from .poisson import PoissonSolver
from .visibility import select_views, triangle_confidence

SHADING_FLOOR = 0.05  # irradiance floor of the de-lighting (dense_fit.estimate_albedo's)
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


def photo_shading(world_normals: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """(V, 3) SH irradiance Y(n)·γ_c (+ ambient) of a fitted photo, floored at :data:`SHADING_FLOOR`.

    Args:
        world_normals: (V, 3) unit normals rotated by the photo's pose; gamma: (27,) its SH light.
    """
    ones = torch.ones_like(world_normals)[None]
    return lighting.shade(ones, world_normals[None], gamma[None].to(world_normals))[0].clamp(min=SHADING_FLOOR)


def relight(albedo: torch.Tensor, shading: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Albedo (V, 3) lit by ``shading`` (V, 3), in [0, 1]. The SH light is fitted to what its photo
    sees; extrapolated to normals it never saw its second-order terms can run far off, so the
    irradiance is clamped per channel to its interquartile range over the ``seen`` (V,) vertices (as
    ``coarse.lit_statistical_texture`` does for T_pca)."""
    if int(seen.sum()) >= 8:
        low, high = shading[seen].quantile(0.25, dim=0), shading[seen].quantile(0.75, dim=0)
        shading = torch.maximum(torch.minimum(shading, high), low)
    return (albedo * shading).clamp(0, 1)


@dataclass(frozen=True)
class Blended:
    """The photos' blended albedo.

    Attributes:
        albedo: (V, C) blended albedo where any photo sees, the fill Poisson-continued elsewhere.
        seen: (V,) bool, vertices some photo sees.
        selection: (F,) long, each triangle's main photo (Eq. 5 over the photos), −1 where none sees it.
        notes: remarks of the fill's solve.
    """

    albedo: torch.Tensor
    seen: torch.Tensor
    selection: torch.Tensor
    notes: tuple[str, ...]


def blend_photos(solver: PoissonSolver, albedos: torch.Tensor, scores: torch.Tensor,
                 fill: torch.Tensor) -> Blended:
    """Score-weighted blend of gain-corrected albedo samples, the fill's gradients where none sees.

    Seen vertices keep the blend exactly: Eq. 6's anchors are soft (λ), and a fill far from the photos
    (a large unseen part) would otherwise shift the seen colours towards it.

    Args:
        solver: the topology's :class:`PoissonSolver`.
        albedos: (P, V, C) gain-corrected albedo samples of the photos (reference first).
        scores: (P, V) their Eq. 4 scores (> 0 = seen; the blend weights).
        fill: (V, C) what fills the vertices no photo sees (T_pca's albedo, or a refined texture).
    """
    weights = torch.nan_to_num(scores, nan=0.0).clamp_min(0.0) * torch.isfinite(albedos).all(-1)
    total = weights.sum(0)
    seen = total > 0
    mean = (torch.nan_to_num(albedos) * weights[..., None]).sum(0) / total.clamp_min(1e-12)[:, None]
    completed = coarse_texture(solver, torch.where(seen[:, None], mean, fill.to(mean)), seen.to(mean.dtype), fill)
    selection = select_views(triangle_confidence(weights, solver.faces_on(scores.device)))
    return Blended(torch.where(seen[:, None], mean, completed.colors), seen, selection, completed.notes)


def triangle_shares(selection: torch.Tensor, sources: int) -> list[float]:
    """Share of the mesh's triangles taken from each source 0..sources−1 (fills and none excluded)."""
    counts = torch.bincount(selection[selection >= 0], minlength=sources)[:sources]
    return [round(float(c) / selection.numel(), 4) for c in counts]


def texel_sources(selection: torch.Tensor, layout: UVLayout) -> torch.Tensor:
    """(K,) long: the selected source of the triangle under each of the layout's K inside texels."""
    return selection[layout.texel_faces.to(selection.device).long()]


def multi_photo_detail(images: Sequence[torch.Tensor], screens: Sequence[torch.Tensor],
                       colors: torch.Tensor, scores: torch.Tensor, scales: torch.Tensor, faces: torch.Tensor,
                       layout: UVLayout, selection: torch.Tensor) -> PhotoDetail:
    """Texel detail of several photos: each texel takes the residual (photo texel − its per-vertex
    colour, ``detail.photo_detail``) of its triangle's main photo, brought into the output's colours
    by that photo's per-vertex ``scales`` (gain × reference shading / own shading, interpolated);
    texels of triangles no photo sees get none. Each photo's residual is computed on its own texels
    only (``photo_detail`` on the layout's inside texels restricted to them: interpolation needs only
    their triangles and barycentrics), so P photos cost about one photo's detail.

    Args:
        images: per photo (1, 3, H, W); screens: per photo (1, V, 3) vertices in its pixels.
        colors: (P, V, 3) each photo's own per-vertex colours T_uv^i; scores: (P, V); scales: (P, V, 3).
        selection: (F,) per-triangle main photo (:class:`Blended`).
    """
    sources = texel_sources(selection, layout)
    residual = colors.new_zeros((layout.n_inside, 3))
    for i, (image, screen) in enumerate(zip(images, screens, strict=True)):
        mine = torch.nonzero(sources == i).squeeze(1).to(layout.device)
        if mine.numel() == 0:
            continue
        sub = UVLayout(layout.mask, layout.texel_faces[mine], layout.texel_bary[mine], layout.source)
        detail = photo_detail(image, screen, colors[i], scores[i], faces, sub).residual  # its texels only
        residual[mine.to(residual.device)] = detail * sub.interpolate(scales[i].to(detail), faces)
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
