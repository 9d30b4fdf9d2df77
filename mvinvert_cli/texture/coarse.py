"""Coarse texture T_coarse (MvInvert §3.1): the photo's colours Poisson-blended into T_pca.

Triangles the photo sees (all three vertices with a positive Eq. 4 score) take their colour gradient
from T_uv, every other triangle from T_pca (the 3DMM albedo, lit like the photo, or the default
model's statistical fill), and the colours are anchored (λ of Eq. 6) to T_uv on the vertices the
photo sees. The unseen side therefore carries the PCA texture's shading pattern, offset so that it
continues the photo's colours without a seam. Mesh parts the photo does not reach at all keep T_pca.
"""

from __future__ import annotations

import torch

from ..records import CoarseTexture
from ..render import lighting
from .poisson import PoissonSolver
from .stitch import NEUTRAL_FILL, Stitched, poisson_blend, sanitize
from .visibility import NO_VIEW, triangle_confidence

PHOTO, PCA = 0, 1  # selection values of T_coarse


def coarse_texture(solver: PoissonSolver, t_uv: torch.Tensor, photo_scores: torch.Tensor,
                   t_pca: torch.Tensor) -> Stitched:
    """T_coarse of §3.1 (Eq. 6 with two sources).

    Args:
        solver: :class:`PoissonSolver` of the mesh topology.
        t_uv: (V, C) colours sampled from the photo.
        photo_scores: (V,) Eq. 4 scores of the photo (times the face-parsing mask, if any); > 0
            means "seen".
        t_pca: (V, C) the statistical texture filling the rest.

    Returns:
        :class:`~mvinvert_cli.texture.stitch.Stitched` whose ``selection`` is 0 (PHOTO) or 1 (PCA)
        per triangle, −1 where T_pca is not finite either; differentiable in ``t_uv`` and ``t_pca``.
    """
    colors = torch.stack([t_uv, t_pca.to(t_uv)])  # (2, V, C)
    scores = torch.stack([photo_scores.to(t_uv), torch.ones_like(photo_scores, dtype=t_uv.dtype)])
    colors, scores, n_bad = sanitize(colors, scores)
    notes = [f"{n_bad} non-finite colour samples ignored"] if n_bad else []

    confidence = triangle_confidence(scores, solver.faces_on(colors.device))  # (2, F)
    seen = confidence[PHOTO] > 0
    selection = torch.where(seen, PHOTO, torch.where(confidence[PCA] > 0, PCA, NO_VIEW))
    anchor_weights = (scores[PHOTO] > 0).to(colors.dtype)
    fallback = torch.nan_to_num(t_pca.to(t_uv), nan=NEUTRAL_FILL, posinf=NEUTRAL_FILL, neginf=NEUTRAL_FILL)
    result, info = poisson_blend(solver, colors, selection, anchor_weights, colors[PHOTO], fallback)
    if info.floating:
        notes.append(f"{info.floating} vertices in mesh parts the photo does not see keep T_pca")
    if info.backend != PoissonSolver.backend:
        notes.append(f"solver fell back to {info.backend}")
    return Stitched(result, selection, info, tuple(notes))


def lit_statistical_texture(albedo: torch.Tensor, world_normals: torch.Tensor, gamma: torch.Tensor,
                            seen: torch.Tensor) -> torch.Tensor:
    """T_pca lit like the photo, for filling the holes of T_uv (§3.1).

    The SH light (FORMATS.md §1g) is fitted to the visible side only; extrapolated to normals the photo
    never saw (grazing and turned-away surfaces) its second-order terms can brighten or darken them
    far beyond anything observed. The irradiance is therefore clamped per channel to the interquartile
    range it has over the seen vertices: hidden parts keep a plausible shading pattern at the photo's
    exposure.

    Args:
        albedo: (V, 3) T_pca in [0, 1]; world_normals: (V, 3); gamma: (27,); seen: (V,) bool.

    Returns:
        (V, 3) colours in [0, 1].
    """
    irradiance = lighting.shade(torch.ones_like(albedo)[None], world_normals[None], gamma[None])[0]
    if int(seen.sum()) >= 8:
        low = irradiance[seen].quantile(0.25, dim=0)
        high = irradiance[seen].quantile(0.75, dim=0)
        irradiance = torch.maximum(torch.minimum(irradiance, high), low)
    return (albedo * irradiance).clamp(0, 1)


def complete_coarse(solver: PoissonSolver, t_uv: torch.Tensor, scores: torch.Tensor, albedo: torch.Tensor,
                    world_normals: torch.Tensor, gamma: torch.Tensor) -> CoarseTexture:
    """The coarse stage: T_pca lit like the photo (:func:`lit_statistical_texture`) fills what the
    photo does not see, Poisson-blended with T_uv (:func:`coarse_texture`). Used by the pipeline and by
    eval's occlusion hold-out, so both measure the same completion.

    Args:
        solver: the topology's :class:`PoissonSolver`; t_uv: (V, 3); scores: (V,) > 0 where seen;
        albedo: (V, 3) the fit's T_pca; world_normals: (V, 3); gamma: (27,) SH light.
    """
    t_pca = lit_statistical_texture(albedo, world_normals, gamma, scores > 0)
    blended = coarse_texture(solver, t_uv, scores, t_pca)
    return CoarseTexture(t_pca=t_pca, t_coarse=blended.colors.clamp(0, 1), notes=blended.notes)
