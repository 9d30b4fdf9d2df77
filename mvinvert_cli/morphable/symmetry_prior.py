"""Large-pose geometry prior: per-landmark visibility and the mirrored visible half (issue 15).

Faces are close to mirror-symmetric. When the head is turned, the photo shows one half; the
landmarker's points on the other half are guesses (MediaPipe under-turns near-profile heads and
folds the hidden half toward the nose). In model space (the canonical frame, symmetric about
x = 0, mirror pairs ``mirror[i]``), each point is pulled toward the mirror image of its partner by
how much better the partner is seen:

    v_i   = clamp((n_i · d_i − HIDDEN_BELOW) / (SEEN_ABOVE − HIDDEN_BELOW), 0, 1)   (visibility)
    α_i   = clamp(v_mirror(i) − v_i, 0, 1)
    S'_i  = (1 − α_i) · S_i + α_i · M · S_mirror(i),   M = diag(−1, 1, 1)

(n_i: unit normal, d_i: unit direction to the camera). Points on the silhouette (n·d ≈ 0) count as
seen: the photo shows them as the face's outline; only points turned past it are guesses. A frontal face (v ≈ v_mirror) is left as
the landmarker saw it; a hidden point of a turned face takes the mirrored visible one. The pose is
a visibility-weighted similarity Procrustes, so the hidden side's points do not pull it either.
For PCA (BFM) fits, where the statistical model already shapes the hidden side, the same
visibility scales the jaw-contour landmark weights (:func:`visible_landmark_weights`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SEEN_ABOVE = 0.1  # n·d above which a point counts as fully seen
HIDDEN_BELOW = -0.1  # n·d below which it is behind the silhouette (not seen at all)
MIRROR = torch.tensor([-1.0, 1.0, 1.0])


def facing_visibility(normals: torch.Tensor, to_camera: torch.Tensor) -> torch.Tensor:
    """(N, 3) unit normals and unit directions to the camera → (N,) visibility in [0, 1]:
    0 behind the silhouette (n·d ≤ HIDDEN_BELOW), 1 from n·d ≥ SEEN_ABOVE, linear between."""
    cos = (normals * to_camera).sum(-1)
    return ((cos - HIDDEN_BELOW) / (SEEN_ABOVE - HIDDEN_BELOW)).clamp(0.0, 1.0)


def weighted_umeyama(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Similarity dst ≈ s·R·src + t minimising Σ w_i ‖s·R·src_i + t − dst_i‖² (Umeyama 1991, weighted).

    Args:
        src, dst: (N, 3); weights: (N,) ≥ 0, not all zero.

    Returns:
        s scalar tensor, R (3, 3) proper rotation, t (3,).
    """
    w = (weights / weights.sum()).to(src.dtype)
    mu_s, mu_d = w @ src, w @ dst
    a, b = src - mu_s, dst - mu_d
    cov = (b * w[:, None]).T @ a
    u, sig, vh = torch.linalg.svd(cov)
    d = torch.ones(3, dtype=src.dtype, device=src.device)
    d[2] = torch.sign(torch.linalg.det(u @ vh))
    rot = u @ torch.diag(d) @ vh
    scale = (sig * d).sum() / (w @ a.pow(2).sum(1))
    return scale, rot, mu_d - scale * rot @ mu_s


def mirror_fill(shape: torch.Tensor, visibility: torch.Tensor, mirror: torch.Tensor,
                allowed: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """S' from the module docstring: (N, 3) model-space points, (N,) visibility, (N,) mirror ids →
    (S' (N, 3), α (N,), the weight each point took from its mirrored partner).

    ``allowed`` maps the (N, 3) mirrored candidates to (N,) bool: where False the point keeps its
    own position (α = 0). The dense fit passes "projects inside the face's observed outline": a
    point hidden behind the silhouette cannot show outside it.

    The mirror plane is x = x₀, x₀ the visibility-weighted mean x of the midline points
    (``mirror[i] == i``): a one-sided Procrustes may leave the face's own plane a little off x = 0.
    """
    alpha = (visibility[mirror] - visibility).clamp(0.0, 1.0).to(shape.dtype)
    midline = mirror == torch.arange(len(mirror), device=mirror.device)
    w = visibility[midline].to(shape.dtype)
    x0 = (w * shape[midline, 0]).sum() / w.sum() if float(w.sum()) > 0 else shape.new_zeros(())
    mirrored = shape[mirror] * MIRROR.to(shape)
    mirrored[:, 0] += 2.0 * x0
    if allowed is not None:
        alpha = torch.where(allowed(mirrored), alpha, torch.zeros_like(alpha))
    return (1.0 - alpha[:, None]) * shape + alpha[:, None] * mirrored, alpha


CONTOUR = slice(0, 17)  # iBUG jaw contour: on a turned head, the far side's points are guesses


def visible_landmark_weights(base: torch.Tensor, normals: torch.Tensor, to_camera: torch.Tensor) -> torch.Tensor:
    """Landmark-loss weights for a PCA fit: ``base`` (68,) with each jaw-contour weight scaled by
    its landmark's visibility (:func:`facing_visibility`), renormalised to sum 1, so the contour of
    the hidden side does not pull the mesh (the statistical model fills that side instead).

    Args:
        normals: (68, 3) world normals of the landmark vertices; to_camera: (68, 3) unit
            directions from them to the camera.
    """
    scale = torch.ones_like(base)
    scale[CONTOUR] = facing_visibility(normals, to_camera)[CONTOUR].to(base)
    weights = base * scale
    return weights / weights.sum()
