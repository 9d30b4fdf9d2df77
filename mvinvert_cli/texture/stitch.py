"""Multi-view stitching: per-triangle view selection (MvInvert Eq. 5) + screened Poisson (Eq. 6).

Inputs are per-vertex colours and Eq. 4 scores of the reference photo and of each synthetic view
(re-sampled from its GAN inversion). Each triangle takes its colour gradient from the view of highest
confidence (the photo competes as view 0 and wins ties), triangles no view sees get a zero gradient,
and the colours are anchored (λ) to the photo's where the photo sees the vertex; the result T_refine
has the selected views' detail with no seams between them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from .poisson import PoissonSolver, SolveInfo, screened_poisson
from .visibility import NO_VIEW, select_views, triangle_confidence

NEUTRAL_FILL = 0.5  # colour of vertices no view sees, when nothing else is known


@dataclass(frozen=True)
class Stitched:
    """Result of a Poisson blend.

    Attributes:
        colors: (V, C) per-vertex colours (T_refine or T_coarse), dtype/device of the inputs.
        selection: (F,) long, the view each triangle's gradient came from: 0 = reference photo,
            i ≥ 1 = ``view_colors[i − 1]``, −1 = no view (zero gradient).
        info: the solve's :class:`~mvinvert_cli.texture.poisson.SolveInfo`.
        notes: remarks on degraded inputs (unanchored vertices, non-finite samples, fallbacks).
    """

    colors: torch.Tensor
    selection: torch.Tensor
    info: SolveInfo
    notes: tuple[str, ...] = field(default_factory=tuple)


def sanitize(colors: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Zero the colour and the score of every (view, vertex) sample that is not finite.

    Args:
        colors: (N, V, C).
        scores: (N, V).

    Returns:
        colours, scores (≥ 0) and the number of bad samples.
    """
    if bool(torch.isfinite(colors.sum()) & torch.isfinite(scores.sum())):  # the usual case: a non-finite
        return colors, scores.clamp_min(0.0), 0  # element makes its sum non-finite, so all are finite
    good = torch.isfinite(colors).all(dim=-1) & torch.isfinite(scores)  # (N, V)
    colors = torch.where(good[..., None], colors, torch.zeros_like(colors))
    scores = torch.where(good, scores, torch.zeros_like(scores)).clamp_min(0.0)
    return colors, scores, int((~good).sum())


def gradient_targets(basis: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor,
                     selection: torch.Tensor) -> torch.Tensor:
    """Eq. 6's b: each triangle's gradient taken from its selected view (zero for no view).

    One gather of the selected view's corner colours from the flattened (N·V, C) table and one batched
    3×3 product with the hat-function gradients.

    Args:
        basis: (F, 3, 3) hat-function gradients (``PoissonSolver.basis``).
        faces: (F, 3) long.
        colors: (N, V, C) per-view vertex colours.
        selection: (F,) long in [−1, N).

    Returns:
        (3F, C), differentiable w.r.t. ``colors``.
    """
    n_views, n_verts, channels = colors.shape
    index = selection.clamp_min(0)[:, None] * n_verts + faces  # (F, 3) rows of the flat table
    corners = colors.reshape(n_views * n_verts, channels).index_select(0, index.reshape(-1))
    grads = torch.bmm(basis.transpose(1, 2), corners.view(-1, 3, channels))  # (F, 3 xyz, C)
    grads = torch.where((selection != NO_VIEW)[:, None, None], grads, torch.zeros((), dtype=grads.dtype))
    return grads.reshape(-1, channels)


def poisson_blend(solver: PoissonSolver, colors: torch.Tensor, selection: torch.Tensor,
                  anchor_weights: torch.Tensor, anchor_colors: torch.Tensor,
                  fallback: torch.Tensor | None) -> tuple[torch.Tensor, SolveInfo]:
    """Eq. 6 with the gradients of the selected views (differentiable in every tensor argument).

    Args:
        solver: the topology's :class:`PoissonSolver`.
        colors: (N, V, C) finite candidate colours.
        selection: (F,) long per-triangle view, −1 for none.
        anchor_weights: (V,) w ≥ 0.
        anchor_colors: (V, C).
        fallback: (V, C) colours pinning components with no anchored vertex (needed only if any).

    Returns:
        (V, C) colours and the solve info.
    """
    basis = solver.basis(colors.device, colors.dtype)
    targets = gradient_targets(basis, solver.faces_on(colors.device), colors, selection)  # Eq. 5 → b
    return screened_poisson(solver, targets, anchor_weights, anchor_colors, fallback)  # Eq. 6


def best_view_colors(colors: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per-vertex colour of the highest-scoring view; the mean seen colour where no view scores.

    Args:
        colors: (N, V, C) finite.
        scores: (N, V) ≥ 0.

    Returns:
        (V, C) colours and the number of vertices no view sees (filled with the mean colour of all
        seen samples, or NEUTRAL_FILL when nothing is seen at all).
    """
    best, index = scores.max(dim=0)
    picked = colors.gather(0, index.view(1, -1, 1).expand(1, -1, colors.shape[-1])).squeeze(0)
    seen = scores > 0
    if bool(seen.any()):
        fill = colors[seen].mean(dim=0)
    else:
        fill = torch.full_like(picked[0], NEUTRAL_FILL)
    unseen = best <= 0
    return torch.where(unseen[:, None], fill.expand_as(picked), picked), int(unseen.sum())


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run torch's CPU ops on one thread inside the block (process-wide; restored after).

    The stitch's bookkeeping is a few dozen passes over ≤ 1M-element arrays: splitting each over the
    intra-op pool gains little on an idle machine, and on a loaded one every pass waits for a
    descheduled pool thread (bench/bench_stitch.py: 3× slower with 2 threads than with 1 on a
    shared 2-core machine), while the SciPy solve is single-threaded anyway.
    """
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def stitch(solver: PoissonSolver, photo_colors: torch.Tensor, photo_scores: torch.Tensor,
           view_colors: torch.Tensor, view_scores: torch.Tensor,
           fallback: torch.Tensor | None = None) -> Stitched:
    """T_refine: Eq. 5 per-triangle selection + Eq. 6 screened Poisson anchored to the photo.

    Args:
        solver: :class:`PoissonSolver` of the mesh topology (λ inside).
        photo_colors: (V, C) colours sampled from the reference photo (or T_coarse).
        photo_scores: (V,) Eq. 4 scores of the photo (T = 50 px); > 0 anchors the vertex.
        view_colors: (N, V, C) colours re-sampled from each synthetic view (N may be 0).
        view_scores: (N, V) Eq. 4 scores of each view (T = 3 px).
        fallback: (V, C) colours for mesh components the photo does not anchor (the pipeline passes
            T_coarse); None uses each vertex's best-scoring view colour.

    Returns:
        :class:`Stitched`; non-finite samples count as unseen, and every degraded case is in ``notes``.
        CPU work runs on one torch thread (see :func:`_one_cpu_thread`).
    """
    with _one_cpu_thread(photo_colors.device):
        return _stitch(solver, photo_colors, photo_scores, view_colors, view_scores, fallback)


def _stitch(solver: PoissonSolver, photo_colors: torch.Tensor, photo_scores: torch.Tensor,
            view_colors: torch.Tensor, view_scores: torch.Tensor, fallback: torch.Tensor | None) -> Stitched:
    colors = torch.cat([photo_colors[None], view_colors.to(photo_colors)], dim=0)  # (N+1, V, C)
    scores = torch.cat([photo_scores[None], view_scores.to(photo_scores)], dim=0)  # (N+1, V)
    colors, scores, n_bad = sanitize(colors, scores)
    notes = [f"{n_bad} non-finite colour samples ignored"] if n_bad else []

    faces = solver.faces_on(colors.device)
    selection = select_views(triangle_confidence(scores, faces))  # Eq. 5
    n_none = int((selection == NO_VIEW).sum())
    if n_none:
        notes.append(f"{n_none} of {selection.numel()} triangles seen by no view (zero gradient)")

    anchor_weights = (scores[0] > 0).to(colors.dtype)  # Eq. 6: photo-visible vertices
    if fallback is not None:
        fallback = torch.nan_to_num(fallback.to(colors), nan=NEUTRAL_FILL, posinf=NEUTRAL_FILL, neginf=NEUTRAL_FILL)
    elif solver.floating(anchor_weights.detach().cpu().numpy()).any():
        fallback, n_unseen = best_view_colors(colors, scores)
        if n_unseen:
            notes.append(f"{n_unseen} vertices seen by no view (mean colour fill where unanchored)")
    result, info = poisson_blend(solver, colors, selection, anchor_weights, colors[0], fallback)
    if info.floating:
        notes.append(f"{info.floating} vertices in mesh parts the photo does not anchor (pinned to fallback)")
    if info.backend != PoissonSolver.backend:
        notes.append(f"solver fell back to {info.backend}")
    return Stitched(result, selection, info, tuple(notes))
