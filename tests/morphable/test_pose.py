"""Pose from landmarks: Umeyama similarity, weak-perspective + Gauss–Newton PnP."""

from __future__ import annotations

import math

import torch

from mvinvert_cli.morphable.pose import pnp_pose, umeyama, weak_perspective_pose
from mvinvert_cli.render.camera import Camera, rotation_matrix, transform


def _angle_between(r1: torch.Tensor, r2: torch.Tensor) -> float:
    cos = ((r1.T @ r2).trace() - 1) / 2
    return math.degrees(math.acos(float(cos.clamp(-1, 1))))


def test_umeyama_recovers_similarity():
    src = torch.randn(50, 3, dtype=torch.float64)
    rot = rotation_matrix(torch.tensor([0.3, -0.5, 0.2], dtype=torch.float64))
    dst = 1.7 * src @ rot.T + torch.tensor([0.1, -2.0, 3.0], dtype=torch.float64)
    s, r, t = umeyama(src, dst)
    torch.testing.assert_close(s, torch.tensor(1.7, dtype=torch.float64))
    torch.testing.assert_close(r, rot)
    torch.testing.assert_close(t, torch.tensor([0.1, -2.0, 3.0], dtype=torch.float64))


def test_pnp_recovers_pose_exactly():
    cam = Camera()
    gen = torch.Generator().manual_seed(3)
    points = torch.rand(68, 3, generator=gen) * torch.tensor([1.4, 1.6, 0.5]) - torch.tensor([0.7, 0.8, 0.0])
    angles = torch.tensor([0.15, -0.6, 0.08])
    trans = torch.tensor([0.05, -0.1, 0.4])
    target = cam.project(transform(points[None], angles[None], trans[None]))[0, :, :2]
    a0, t0 = weak_perspective_pose(points, target, cam)
    assert _angle_between(rotation_matrix(a0), rotation_matrix(angles)) < 10  # closed form: close
    a, t = pnp_pose(points, target, cam)
    assert _angle_between(rotation_matrix(a), rotation_matrix(angles)) < 0.05
    torch.testing.assert_close(t, trans, atol=1e-3, rtol=0)
    reproj = cam.project(transform(points[None], a[None], t[None]))[0, :, :2]
    assert (reproj - target).norm(dim=1).max() < 0.05


def test_pnp_robust_to_noise():
    cam = Camera()
    gen = torch.Generator().manual_seed(4)
    points = torch.rand(68, 3, generator=gen) - 0.5
    angles, trans = torch.tensor([-0.2, 0.4, -0.1]), torch.tensor([0.0, 0.1, -0.3])
    target = cam.project(transform(points[None], angles[None], trans[None]))[0, :, :2]
    noisy = target + torch.randn(68, 2, generator=gen)  # 1 px noise
    a, _ = pnp_pose(points, noisy, cam)
    assert _angle_between(rotation_matrix(a), rotation_matrix(angles)) < 2.0
