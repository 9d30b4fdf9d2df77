"""Face pose (and 68-landmark shape) from 2D–3D correspondences in the Deep3DFaceRecon camera.

Used by both fits (MvInvert §3.1): the PCA fit's landmark initialisation (PnP on the mean shape, then
alternating linear shape solves and pose refinements) and the default model's dense Procrustes.

- :func:`umeyama`: similarity Procrustes between 3D point sets (Umeyama 1991).
- :func:`weak_perspective_pose`: closed-form pose under scaled orthography.
- :func:`refine_pose`: Gauss–Newton PnP on the full pinhole projection; :func:`pnp_pose` chains them.
- :func:`solve_shape_coefficients` / :func:`fit_landmarks`: linear shape for a fixed pose, alternated.
"""

from __future__ import annotations

from typing import Any

import torch

from ..render.camera import Camera, rotation_matrix, rotation_to_angles
from .model import MorphableModel

NOSE_MOUTH_WEIGHT = 10.0


def landmark_weights(device: Any = None) -> torch.Tensor:
    """(68,) weights summing to 1: nose ridge (28–30) and mouth (48–67) ×10."""
    w = torch.ones(68, device=device)
    w[28:31] = NOSE_MOUTH_WEIGHT
    w[48:68] = NOSE_MOUTH_WEIGHT
    return w / w.sum()



def umeyama(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Similarity dst ≈ s·R·src + t in least squares (Umeyama 1991).

    Args:
        src, dst: (N, 3) corresponding points.

    Returns:
        s scalar tensor, R (3, 3) proper rotation, t (3,).
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, sig, vh = torch.linalg.svd(cov)
    d = torch.ones(3, dtype=src.dtype, device=src.device)
    d[2] = torch.sign(torch.linalg.det(u @ vh))
    rot = u @ torch.diag(d) @ vh
    scale = (sig * d).sum() / a.pow(2).sum(1).mean()
    return scale, rot, mu_d - scale * rot @ mu_s


def weak_perspective_pose(points3d: torch.Tensor, points2d: torch.Tensor, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form pose from 2D–3D correspondences under scaled orthography.

    Solves q ≈ A·P + b for the normalised image points q = ((x − c)/f, (c − y)/f), takes the nearest
    rotation to A's rows and 1/mean row norm as the depth Z̄ (t_z = d − Z̄, t_xy = b·Z̄).

    Args:
        points3d: (N, 3) model space; points2d: (N, 2) screen pixels.

    Returns:
        angles (3,), translation (3,).
    """
    q = torch.stack([(points2d[:, 0] - camera.center) / camera.focal,
                     (camera.center - points2d[:, 1]) / camera.focal], 1).double()
    design = torch.cat([points3d.double(), torch.ones_like(points3d[:, :1]).double()], 1)
    sol = torch.linalg.lstsq(design, q).solution  # (4, 2)
    a, b = sol[:3].T, sol[3]
    scale = 0.5 * (a[0].norm() + a[1].norm())
    r3 = torch.linalg.cross(a[0], a[1])
    u, _, vh = torch.linalg.svd(torch.stack([a[0], a[1], r3 / r3.norm() * scale]))
    rot = u @ vh
    if torch.linalg.det(rot) < 0:
        rot = u @ torch.diag(rot.new_tensor([1.0, 1.0, -1.0])) @ vh
    depth = 1.0 / scale
    translation = torch.stack([b[0] * depth, b[1] * depth, camera.distance - depth])
    return rotation_to_angles(rot).to(points3d.dtype), translation.to(points3d.dtype)


def refine_pose(points3d: torch.Tensor, points2d: torch.Tensor, camera: Camera, angles: torch.Tensor,
                translation: torch.Tensor, weights: torch.Tensor | None = None,
                iterations: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss–Newton (Levenberg-damped) PnP: minimise Σ w_i‖project(P_i·Rᵀ + t) − p_i‖² over 6 pose values.

    The (2N, 6) Jacobian is taken by central differences in float64 (12 cheap residual evaluations).
    """
    w = torch.ones(len(points3d), dtype=torch.float64, device=points3d.device) if weights is None else weights.double()
    p3, p2 = points3d.double(), points2d.double()
    sqrt_w = w.sqrt()[:, None]

    def residual(theta: torch.Tensor) -> torch.Tensor:
        world = p3 @ rotation_matrix(theta[:3]).T + theta[3:]
        return ((camera.project(world)[:, :2] - p2) * sqrt_w).reshape(-1)

    theta = torch.cat([angles, translation]).double()
    damping = 1e-3
    cost = residual(theta).pow(2).sum()
    for _ in range(iterations):
        eye = torch.eye(6, dtype=theta.dtype, device=theta.device) * 1e-6
        jac = torch.stack([(residual(theta + e) - residual(theta - e)) / 2e-6 for e in eye], dim=1)
        r = residual(theta)
        jtj = jac.T @ jac
        step = torch.linalg.solve(jtj + damping * torch.diag(jtj.diagonal() + 1e-9), -jac.T @ r)
        new_cost = residual(theta + step).pow(2).sum()
        if new_cost < cost:
            converged = cost - new_cost < 1e-10 * (1.0 + cost)
            theta, cost, damping = theta + step, new_cost, damping * 0.3
            if converged:
                break
        else:
            damping *= 10.0
    return theta[:3].to(points3d.dtype), theta[3:].to(points3d.dtype)


def pnp_pose(points3d: torch.Tensor, points2d: torch.Tensor, camera: Camera,
             weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose from 2D–3D correspondences: :func:`weak_perspective_pose` then :func:`refine_pose`."""
    angles, translation = weak_perspective_pose(points3d, points2d, camera)
    return refine_pose(points3d, points2d, camera, angles, translation, weights)


def solve_shape_coefficients(bases: torch.Tensor, mean: torch.Tensor, points2d: torch.Tensor, camera: Camera,
                             angles: torch.Tensor, translation: torch.Tensor, row_weights: torch.Tensor,
                             prior: torch.Tensor) -> torch.Tensor:
    """Shape coefficients c for a fixed pose from 2D landmarks, by linear least squares.

    With world_i(c) = R(S̄_i + B_i c) + t, the projection x_i = f·X_i/Z_i + c_x (Z_i = d − z_i) gives
    the equations (x_i − c_x)·Z_i − f·X_i = 0 and (c_y − y_i)·Z_i − f·Y_i = 0, linear in c. Dividing
    by the current depth Z_i makes their residuals pixel errors (exact at convergence). Minimises
    Σ_i w_i·(pixel residual_i)² + Σ_k prior_k·c_k².

    Args:
        bases: (L, 3, K) basis rows of the L landmarks (identity ‖ expression); mean: (L, 3).
        points2d: (L, 2) target pixels; angles, translation: (3,) pose.
        row_weights: (L,) weights w_i; prior: (K,) ridge weights.

    Returns:
        (K,) coefficients.
    """
    rot = rotation_matrix(angles.double())
    w0 = mean.double() @ rot.T + translation.double()  # (L, 3)
    g = torch.einsum("ij,ljk->lik", rot, bases.double())  # (L, 3, K)
    depth = camera.distance - w0[:, 2]  # Z_i at c = 0 (reweighting divisor)
    x = points2d[:, 0].double() - camera.center
    y = camera.center - points2d[:, 1].double()
    # residual = a + A·c for the x and y equations
    a_x = (x * (camera.distance - w0[:, 2]) - camera.focal * w0[:, 0]) / depth
    a_y = (y * (camera.distance - w0[:, 2]) - camera.focal * w0[:, 1]) / depth
    m_x = -(x[:, None] * g[:, 2] + camera.focal * g[:, 0]) / depth[:, None]
    m_y = -(y[:, None] * g[:, 2] + camera.focal * g[:, 1]) / depth[:, None]
    sw = row_weights.double().sqrt()[:, None]
    design = torch.cat([m_x * sw, m_y * sw])
    rhs = -torch.cat([a_x[:, None] * sw, a_y[:, None] * sw])[:, 0]
    lhs = design.T @ design + torch.diag(prior.double())
    return torch.linalg.solve(lhs, design.T @ rhs).to(mean.dtype)


def fit_landmarks(model: MorphableModel, points2d: torch.Tensor, camera: Camera, weights: torch.Tensor,
                  prior: torch.Tensor, iterations: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pose and shape (identity ‖ expression) from 68 landmarks: PnP on the mean shape, then
    alternate :func:`solve_shape_coefficients` and :func:`refine_pose` ``iterations`` times.

    Args:
        weights: (68,) landmark weights; prior: (Ki + Ke,) ridge weights in the same units.

    Returns:
        angles (3,), translation (3,), coefficients (Ki + Ke,).
    """
    ids = model.landmark_ids
    bases = torch.cat([model.id_base[ids], model.exp_base[ids]], dim=2)  # (68, 3, K)
    mean = model.mean_shape[ids]
    coeffs = mean.new_zeros(bases.shape[2])
    angles, translation = pnp_pose(mean, points2d, camera, weights)
    for _ in range(iterations if bases.shape[2] else 0):
        coeffs = solve_shape_coefficients(bases, mean, points2d, camera, angles, translation, weights, prior)
        shape = mean + torch.einsum("lck,k->lc", bases, coeffs)
        angles, translation = refine_pose(shape, points2d, camera, angles, translation, weights)
    return angles, translation, coeffs
