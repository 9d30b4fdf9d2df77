"""Coarse texture T_coarse (MvInvert §3.1): the photo's colours Poisson-blended into T_pca.

Triangles the photo sees (all three vertices with a positive Eq. 4 score) take their colour gradient
from T_uv, every other triangle from T_pca (the 3DMM albedo, lit like the photo, or the default
model's statistical fill), and the colours are anchored (λ of Eq. 6) to T_uv on the vertices the
photo sees. The unseen side therefore carries the PCA texture's shading pattern, offset so that it
continues the photo's colours without a seam. Mesh parts the photo does not reach at all keep T_pca.
"""

from __future__ import annotations

import torch

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
