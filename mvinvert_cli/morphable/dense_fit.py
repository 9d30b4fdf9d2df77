"""Fitting the default model (MediaPipe canonical mesh, no PCA) to one face (MvInvert §3.1).

The 478 dense landmarks are unprojected into the Deep3DFaceRecon camera (depth chosen so the face
has the canonical mesh's size), a similarity Procrustes gives the pose, the shape is the landmarks
brought back to model space and spread to the dense mesh through the barycentric embedding; SH
lighting and the albedo (T_pca) come from a least-squares fit to the visible skin colours, mirrored
onto hidden vertices, with the mean skin albedo elsewhere. Without dense points the canonical mean
shape is posed by PnP on the 68 landmarks (a recorded degradation).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..align.observation import CROP_SIZE, Observation
from ..config import Settings
from ..render import lighting
from ..render.camera import Camera, rotation_matrix, rotation_to_angles, transform
from .default import canonical_points
from .model import MorphableModel, mirror_vertex_ids
from .pose import landmark_weights, pnp_pose, umeyama
from .result import FitParameters, FitResult, assemble_result
from .symmetry_prior import facing_visibility, mirror_fill, weighted_umeyama
from .target import fit_target, visible_colors

MIN_SKIN_VERTICES = 50  # visible skin vertices needed to fit the light and the skin tone
UNPROJECT_ITERATIONS = 4
POSE_ITERATIONS = 2  # visibility ↔ weighted-Procrustes rounds of the symmetric prior
MIN_POSE_WEIGHT = 0.02  # hidden points keep a trace of weight (the Procrustes stays well posed)


@dataclass(frozen=True)
class DenseFitSettings:
    """Settings of the dense fit. Attributes: render_size: side S of the fitting crop."""

    render_size: int = 224


def dense_fit_settings(settings: Settings) -> DenseFitSettings:
    """The dense fit's part of the run settings."""
    return DenseFitSettings(render_size=settings.render_size)


def unproject_dense(dense: np.ndarray, crop_matrix: np.ndarray, camera: Camera, device: torch.device,
                    iterations: int = UNPROJECT_ITERATIONS) -> torch.Tensor:
    """(478, 3) photo px (z relative, px scale) → (468, 3) float64 world points in the crop camera.

    (The module docstring of :mod:`.symmetry_prior` says how the hidden half is then replaced.)

    The crop is a similarity (scale k), so crop xy = A·[x, y, 1] and depth offsets scale by k.
    A point at crop (x, y) with relative depth z_px lies at depth Z = Z0·(1 + z_px/f); Z0 is
    iterated so that the Procrustes scale to the canonical mesh is 1 (a face of canonical size).

    Args:
        camera: the render-size camera (crop pixels are scaled to its size).
    """
    a = np.asarray(crop_matrix, dtype=np.float64)
    k = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))
    xy = dense[:468, :2] @ a[:, :2].T + a[:, 2]
    z_px = (dense[:468, 2] - dense[:468, 2].mean()) * k
    size_ratio = camera.size / CROP_SIZE
    xy_t = torch.as_tensor(xy * size_ratio, device=device)
    z_t = torch.as_tensor(z_px * size_ratio, device=device)
    canonical = torch.as_tensor(canonical_points(), device=device).double()
    depth0 = float(camera.distance)
    for _ in range(iterations):
        screen = torch.stack([xy_t[:, 0], xy_t[:, 1], depth0 * (1.0 + z_t / camera.focal)], -1)
        scale, _, _ = umeyama(canonical, camera.unproject(screen))
        depth0 = depth0 / float(scale)
    screen = torch.stack([xy_t[:, 0], xy_t[:, 1], depth0 * (1.0 + z_t / camera.focal)], -1)
    return camera.unproject(screen)


def estimate_albedo(model: MorphableModel, camera: Camera, observation: Observation, verts: torch.Tensor,
                    world: torch.Tensor, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """SH lighting γ (27,) and T_pca (V, 3) from the visible skin colours.

    colour_c(v) = a_c·Y(n_v)·(γ_c + ambient): a least-squares fit of L_c = a_c(γ_c + ambient) on the
    visible skin vertices, with the convention γ_c,0 = 0 (so a_c = L_c,0 / 0.8); the light is then
    made monochrome (γ averaged over channels, colour left to the albedo) and, if needed, brighter
    so that 99 % of the visible skin albedo stays ≤ 1 (no clipped channel). T_pca = colour / shading
    where visible, the mirror vertex's value where only it is visible, and the median visible skin
    albedo (the skin-tone prior) elsewhere.

    Args:
        verts, world: (1, V, 3) model-space and world-space vertices; angles: (3,) pose.
    """
    device = model.device
    target = fit_target(observation, camera.size, device)
    notes = list(target.notes)
    normals = model.normals(verts) @ rotation_matrix(angles).T
    colors, visible = visible_colors(camera, model.triangles, world, normals, target)
    basis = lighting.sh_basis(normals[0])  # (V, 9)
    fit_ids = visible & model.skin_mask
    if int(fit_ids.sum()) < MIN_SKIN_VERTICES:
        notes.append(f"only {int(fit_ids.sum())} visible skin vertices: neutral lighting, grey albedo")
        gamma = torch.zeros(27, device=device)
        tone = torch.full((3,), 0.5, device=device)
    else:
        y = basis[fit_ids].double()
        ridge = torch.diag(y.new_tensor([0.0] + [1e-3] * 8)) * len(y)
        light = torch.linalg.solve(y.T @ y + ridge, y.T @ colors[fit_ids].double())  # (9, 3)
        tone = (light[0] / lighting.AMBIENT).clamp(min=1e-3)
        gamma_c = light.T / tone[:, None]  # (3, 9) = γ_c + ambient, DC = ambient
        gamma_c[:, 0] -= lighting.AMBIENT
        gamma = gamma_c.mean(0).repeat(3).float()  # monochrome light (Deep3DFaceRecon gamma prior)
    shading = lighting.shade(torch.ones_like(normals), normals, gamma[None])[0].clamp(min=0.05)  # (V, 3)
    skin_seen = visible & model.skin_mask
    if int(skin_seen.sum()) >= MIN_SKIN_VERTICES:  # brighten until 99 % of the skin albedo fits in [0, 1]
        excess = float(torch.quantile((colors / shading)[skin_seen].max(1).values, 0.99))
        if excess > 1.0:
            gamma = gamma * excess
            gamma[0::9] += lighting.AMBIENT * (excess - 1.0)
            shading = shading * excess
    own = (colors / shading).clamp(0, 1)
    tone = own[skin_seen].median(0).values if int(skin_seen.sum()) >= MIN_SKIN_VERTICES else tone.float()
    fill = tone.clamp(0, 1).expand_as(own)
    mirror_visible = visible[model.mirror_ids] if model.mirror_ids is not None else torch.zeros_like(visible)
    mirrored = own[model.mirror_ids] if model.mirror_ids is not None else fill
    t_pca = torch.where(visible[:, None], own, torch.where(mirror_visible[:, None], mirrored, fill))
    notes.append(f"T_pca: {int(visible.sum())} visible, {int((~visible & mirror_visible).sum())} mirrored, "
                 f"{int((~visible & ~mirror_visible).sum())} skin-tone vertices")
    return gamma, t_pca, notes


def outline_test(screen_xy: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """(N, 2) observed screen points → a test (M, 2) → (M,) bool: inside (or on) their convex hull."""
    hull = cv2.convexHull(screen_xy.detach().cpu().numpy().astype(np.float32))

    def test(query: torch.Tensor) -> torch.Tensor:
        q = query.detach().cpu().numpy().astype(np.float64)
        inside = [cv2.pointPolygonTest(hull, (float(x), float(y)), False) >= 0 for x, y in q]
        return torch.tensor(inside, device=query.device)

    return test


def symmetric_shape(model: MorphableModel, canonical: torch.Tensor, points: torch.Tensor, camera: Camera
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Pose and model-space shape of the 468 world points under the symmetric prior
    (:mod:`.symmetry_prior`): Procrustes to the canonical mesh, then ``POSE_ITERATIONS`` rounds of
    per-point visibility (facing the camera) and visibility-weighted Procrustes; finally each point
    less visible than its mirror partner is pulled toward the partner's mirror image, unless that
    image would project outside the observed points' outline (their convex hull in the crop).

    Returns:
        shape (468, 3) model space, R (3, 3), t (3,) with world = R·shape + t, notes.
    """
    mirror = torch.as_tensor(mirror_vertex_ids(canonical.cpu().numpy()), device=points.device)
    scale, rot, trans = umeyama(canonical, points)
    visibility = torch.ones(len(points), dtype=points.dtype, device=points.device)
    for _ in range(POSE_ITERATIONS):
        shape = (points - trans) @ rot / scale
        verts = model.from_points(shape[None].float())
        normals = model.normals(verts)[0, :len(points)].double() @ rot.T
        visibility = facing_visibility(normals, camera.view_direction(points))
        scale, rot, trans = weighted_umeyama(canonical, points, visibility.clamp(min=MIN_POSE_WEIGHT))
    outline = outline_test(camera.project(points)[:, :2])

    def inside(candidates: torch.Tensor) -> torch.Tensor:
        return outline(camera.project(scale * candidates @ rot.T + trans)[:, :2])

    shape, alpha = mirror_fill((points - trans) @ rot / scale, visibility, mirror, inside)
    # the pose's scale is folded into the shape: world = R·shape + t
    notes = [f"symmetric prior: {int((alpha > 0.5).sum())} of {len(points)} landmarks from the mirrored "
             f"visible half, {int((visibility < 0.5).sum())} weakly visible"]
    return shape * scale, rot, trans, notes


def fit_dense(model: MorphableModel, observation: Observation, landmarks: torch.Tensor,
              settings: DenseFitSettings) -> FitResult:
    """Fit the default model to ``observation`` (see the module docstring).

    Args:
        landmarks: (68, 2) target landmarks in render pixels (``target.target_landmarks``).
    """
    device = model.device
    camera = Camera().resized(settings.render_size)
    timings: dict[str, float] = {}
    notes: list[str] = []
    t0 = time.perf_counter()
    canonical = torch.as_tensor(canonical_points(), device=device)
    dense = observation.dense
    if dense is not None:
        points = unproject_dense(np.asarray(dense, dtype=np.float64), observation.crop_matrix, camera, device)
        shape468, rot, trans, prior_notes = symmetric_shape(model, canonical.double(), points, camera)
        notes += prior_notes
        shape468 = shape468.to(canonical.dtype)
        angles, translation = rotation_to_angles(rot).float(), trans.float()
        init = "dense-procrustes"
    else:
        notes.append("no dense landmarks (aligner without them): canonical mean shape, pose from 68 landmarks")
        shape468 = canonical
        points3d = model.mean_shape[model.landmark_ids]
        angles, translation = pnp_pose(points3d, landmarks, camera, landmark_weights(device) * 68)
        init = "pnp-68"
    verts = model.from_points(shape468[None].float())
    world = transform(verts, angles[None], translation[None])
    timings["geometry"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gamma, t_pca, light_notes = estimate_albedo(model, camera, observation, verts, world, angles)
    notes += light_notes
    timings["lighting"] = time.perf_counter() - t0
    empty = torch.zeros(1, 0, device=device)
    params = FitParameters(id=empty, exp=empty, tex=empty, angles=angles[None], trans=translation[None],
                           gamma=gamma[None])
    return assemble_result(model, camera, params, verts[0], world[0], t_pca, landmarks, {}, "dense-landmarks",
                           init, timings, notes)
