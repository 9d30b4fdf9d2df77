"""Joint fit of several photos of one person: one identity shape, per-photo pose, expression and light.

Each photo is first fitted on its own (``fit.Fitter``: ``dense_fit`` / ``pca_fit``, unchanged); the
joint stage then replaces the per-photo identities by one shared identity (MvInvert §3.1's shape
S = S̄ + S_base·α with a single α for all photos):

- PCA models (BFM layout): α is the mean of the per-photo α (the MAP estimate of one α under equal,
  independent per-photo posteriors); each photo's expression β and pose are then re-solved against
  its 68 landmarks with α fixed (linear least squares alternated with Gauss–Newton pose,
  ``pose.solve_shape_coefficients`` / ``pose.refine_pose``); albedo and SH light stay per photo.
- The default model (no PCA): the 468 canonical-space landmark shapes of the photos are aligned to
  the first one by a similarity on their rigid points and merged per point by an iteratively
  reweighted mean (weights: how squarely each photo sees the point, times a Cauchy weight of its
  distance to the current estimate), so a depth error of one photo does not move the identity.
  Each photo keeps its own expression: its deviation from the merged shape on the expression
  regions (eyes, brows, mouth; a Gaussian falloff :data:`EXPRESSION_RADIUS`). Pose is the similarity
  of that shape to the photo's unprojected points; light and T_pca stay those of the photo's own fit
  (``dense_fit.estimate_albedo`` on its own geometry; the multi-photo texture samples each photo
  through its own fit, which registers it best, and the joint fit gives the one mesh).

:func:`shape_distance` (landmark-shape distance in canonical space after a similarity alignment,
on the rigid points) is what the multi-photo recovery uses to leave out a photo of someone else.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..align.observation import Observation
from ..render.camera import Camera, rotation_to_angles, transform
from .default import canonical_points
from .dense_fit import unproject_dense
from .model import MorphableModel
from .pose import landmark_weights, refine_pose, solve_shape_coefficients, umeyama
from .result import FitParameters, FitResult, assemble_result
from .target import target_landmarks

EXPRESSION_LANDMARKS = tuple(range(17, 27)) + tuple(range(36, 68))  # iBUG brows, eyes, mouth
EXPRESSION_RADIUS = 0.1  # Gaussian falloff of the expression regions, × the mean radius of the face
RIGID_MIN = 0.5  # points with rigid weight (1 − expression weight) above this define the alignment
MERGE_ITERATIONS = 4
MERGE_CAUCHY = 0.03  # Cauchy scale of the robust merge, × the mean radius of the face
MIN_FACING_WEIGHT = 0.05  # a photo's weight on a point it sees edge-on (depth least reliable)
POSE_ITERATIONS = 3
REG_EXP = 1e-3  # ridge of the expression re-solve (σ units; the pca_fit prior's order of magnitude)


@dataclass(frozen=True)
class JointFit:
    """The photos' fits sharing one identity.

    Attributes:
        fits: one :class:`FitResult` per photo (same order), each with the shared identity, its own
            expression, pose, light and T_pca.
        identity: the shared identity: (468, 3) merged canonical-space shape (default model) or the
            shared α (Ki,) (PCA model).
        notes: how the identity was formed, for result.json.
    """

    fits: tuple[FitResult, ...]
    identity: torch.Tensor
    notes: tuple[str, ...]


def expression_weights(points: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """(N,) weight in [0, 1] of each model-space point being in an expression region: a Gaussian of
    its distance to the nearest brow/eye/mouth landmark (``landmarks``: (68, 3) model space)."""
    radius = EXPRESSION_RADIUS * (points - points.mean(0)).norm(dim=-1).mean()
    nearest = torch.cdist(points, landmarks[list(EXPRESSION_LANDMARKS)]).min(dim=1).values
    return torch.exp(-(nearest / radius) ** 2)


def align_similarity(src: torch.Tensor, dst: torch.Tensor, rigid: torch.Tensor) -> torch.Tensor:
    """``src`` (N, 3) mapped onto ``dst`` by the similarity fitted on the ``rigid`` (N,) bool points."""
    scale, rot, trans = umeyama(src[rigid], dst[rigid])
    return scale * src @ rot.T + trans


def shape_distance(shape: torch.Tensor, reference: torch.Tensor, rigid: torch.Tensor) -> float:
    """Landmark-shape distance: mean distance of the rigid points after similarity alignment, as a
    fraction of the reference's mean radius (0 = same shape up to pose and scale)."""
    aligned = align_similarity(shape.double(), reference.double(), rigid)
    radius = (reference - reference.mean(0)).norm(dim=-1).mean().double()
    return float((aligned - reference.double()).norm(dim=-1)[rigid].mean() / radius)


def robust_merge(shapes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-point iteratively reweighted mean of aligned shapes.

    Args:
        shapes: (P, N, 3) shapes already in one frame; weights: (P, N) > 0 confidence per photo and point.

    Returns:
        (N, 3); each iteration multiplies ``weights`` by the Cauchy weight 1 / (1 + (r/c)²) of each
        photo's distance r to the current estimate (c = :data:`MERGE_CAUCHY` × face radius).
    """
    merged = (shapes * weights[..., None]).sum(0) / weights.sum(0)[:, None]
    scale = MERGE_CAUCHY * (merged - merged.mean(0)).norm(dim=-1).mean()
    for _ in range(MERGE_ITERATIONS):
        residual = (shapes - merged[None]).norm(dim=-1)
        w = weights / (1.0 + (residual / scale) ** 2)
        merged = (shapes * w[..., None]).sum(0) / w.sum(0)[:, None]
    return merged


def _canonical_frame(model: MorphableModel) -> tuple[torch.Tensor, torch.Tensor]:
    """The canonical 468 points and their rigid mask (default model)."""
    canonical = torch.as_tensor(canonical_points(), device=model.device).double()
    landmarks = model.mean_shape[model.landmark_ids].double()
    return canonical, expression_weights(canonical, landmarks)


def photo_shapes(model: MorphableModel, observations: Sequence[Observation], camera: Camera) -> tuple[
        torch.Tensor, torch.Tensor]:
    """Default model: each photo's (468, 3) world points and its canonical-space shape, stacked (P, 468, 3).

    Raises:
        ValueError: an observation has no dense points (the joint fit needs them).
    """
    canonical = torch.as_tensor(canonical_points(), device=model.device).double()
    worlds, shapes = [], []
    for obs in observations:
        if obs.dense is None:
            raise ValueError("the default model's joint fit needs dense landmarks")
        points = unproject_dense(np.asarray(obs.dense, dtype=np.float64), obs.crop_matrix, camera, model.device)
        scale, rot, trans = umeyama(canonical, points)
        worlds.append(points)
        shapes.append((points - trans) @ rot / scale)
    return torch.stack(worlds), torch.stack(shapes)


def joint_fit_dense(model: MorphableModel, observations: Sequence[Observation], fits: Sequence[FitResult],
                    render_size: int) -> JointFit:
    """Default model: robust merge of the canonical shapes, per-photo expression, pose and light."""
    camera = Camera().resized(render_size)
    t0 = time.perf_counter()
    worlds, shapes = photo_shapes(model, observations, camera)
    _, expression = _canonical_frame(model)
    rigid = (1.0 - expression) > RIGID_MIN
    aligned = torch.stack([align_similarity(s, shapes[0], rigid) for s in shapes])
    normals = torch.stack([model.normals(fit.vertices[None])[0, : shapes.shape[1]] @ fit.rotation.T
                           for fit in fits]).double()
    see = torch.stack([_facing(n, w) for n, w in zip(normals, worlds, strict=True)]).clamp_min(MIN_FACING_WEIGHT)
    identity = robust_merge(aligned, see)
    merge_seconds = time.perf_counter() - t0
    results = []
    for obs, fit, own, world in zip(observations, fits, aligned, worlds, strict=True):
        t1 = time.perf_counter()
        shape = identity + expression[:, None] * (own - identity)
        scale, rot, trans = umeyama(shape, world)
        verts = model.from_points((scale * shape)[None].to(model.mean_shape.dtype))
        angles, translation = rotation_to_angles(rot).float(), trans.float()
        world_verts = transform(verts, angles[None], translation[None])
        timings = {"joint_geometry": merge_seconds / len(fits) + time.perf_counter() - t1}
        empty = torch.zeros(1, 0, device=model.device)
        params = FitParameters(id=empty, exp=empty, tex=empty, angles=angles[None], trans=translation[None],
                               gamma=fit.gamma[None])
        landmarks = target_landmarks(obs, render_size, model.device)
        results.append(assemble_result(model, camera, params, verts[0], world_verts[0], fit.t_pca, landmarks, {},
                                       "joint-dense-landmarks", fit.init, timings, list(fit.notes)))
    note = (f"identity: robust merge of {len(fits)} canonical shapes (similarity-aligned on {int(rigid.sum())} "
            "rigid points); expression, pose and light per photo")
    return JointFit(tuple(results), identity.float(), (note,))


def _facing(normals: torch.Tensor, world: torch.Tensor) -> torch.Tensor:
    """(N,) n·d of camera-space points towards the Deep3DFaceRecon camera (0 when turned away)."""
    camera = world.new_tensor([0.0, 0.0, Camera().distance])
    return (torch.nn.functional.normalize(normals, dim=-1)
            * torch.nn.functional.normalize(camera - world, dim=-1)).sum(-1).clamp_min(0.0)


def joint_fit_pca(model: MorphableModel, observations: Sequence[Observation], fits: Sequence[FitResult],
                  render_size: int) -> JointFit:
    """PCA model: shared α = mean of the per-photo α; per photo β and pose re-solved with α fixed."""
    camera = Camera().resized(render_size)
    identity = torch.stack([fit.id_coeff for fit in fits]).mean(0)
    ids = model.landmark_ids
    weights = landmark_weights(model.device)
    mean = model.shape(identity[None], torch.zeros(1, model.n_exp, device=model.device))[0, ids]
    bases = model.exp_base[ids]
    results = []
    for obs, fit in zip(observations, fits, strict=True):
        t0 = time.perf_counter()
        landmarks = target_landmarks(obs, render_size, model.device)
        angles, translation, exp = fit.angles, fit.translation, fit.exp_coeff
        prior = torch.full((model.n_exp,), REG_EXP * 68, device=model.device)
        for _ in range(POSE_ITERATIONS):
            shape = mean + torch.einsum("lck,k->lc", bases, exp)
            angles, translation = refine_pose(shape, landmarks, camera, angles, translation, weights)
            if model.n_exp:
                exp = solve_shape_coefficients(bases, mean, landmarks, camera, angles, translation, weights, prior)
        verts = model.shape(identity[None], exp[None])
        world = transform(verts, angles[None], translation[None])
        params = FitParameters(id=identity[None], exp=exp[None], tex=fit.tex_coeff[None], angles=angles[None],
                               trans=translation[None], gamma=fit.gamma[None])
        timings = {"joint_geometry": time.perf_counter() - t0}
        results.append(assemble_result(model, camera, params, verts[0], world[0], fit.t_pca, landmarks, {},
                                       f"joint-{fit.backend}", fit.init, timings, list(fit.notes)))
    return JointFit(tuple(results), identity, (f"identity: mean α of {len(fits)} photos; β and pose re-solved per photo",))


def joint_fit(model: MorphableModel, observations: Sequence[Observation], fits: Sequence[FitResult],
              render_size: int) -> JointFit:
    """One identity for ``fits`` (the per-photo fits of ``observations``, same order; see module doc).

    A single photo returns its own fit unchanged.
    """
    if len(fits) == 1:
        return JointFit((fits[0],), fits[0].id_coeff if model.n_id else fits[0].vertices, ("one photo",))
    if model.embed_ids is not None:
        return joint_fit_dense(model, observations, fits, render_size)
    return joint_fit_pca(model, observations, fits, render_size)


def rigid_points(model: MorphableModel) -> torch.Tensor:
    """bool (V,) model vertices outside the expression regions (the points :func:`shape_distance` compares)."""
    landmarks = model.mean_shape[model.landmark_ids]
    return (1.0 - expression_weights(model.mean_shape, landmarks)) > RIGID_MIN
