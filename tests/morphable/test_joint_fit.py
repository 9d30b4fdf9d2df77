"""The joint fit's building blocks: robust merge, landmark-shape distance, expression regions; and the
PCA joint fit's shared identity on a tiny BFM."""

from __future__ import annotations

import math

import torch

from mvinvert_cli.morphable.joint_fit import (
    align_similarity,
    expression_weights,
    robust_merge,
    shape_distance,
)
from mvinvert_cli.render.camera import rotation_matrix


def _shape(n: int = 200, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_shape_distance_ignores_pose_and_scale():
    shape = _shape()
    rigid = torch.ones(len(shape), dtype=torch.bool)
    rot = rotation_matrix(torch.tensor([0.2, -0.5, 0.1], dtype=torch.float64))
    moved = 1.7 * shape @ rot.T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    assert shape_distance(moved, shape, rigid) < 1e-9
    other = _shape(seed=1)
    assert shape_distance(other, shape, rigid) > 0.5


def test_align_similarity_uses_only_rigid_points():
    shape = _shape()
    rigid = torch.arange(len(shape)) < 150
    moved = shape.clone()
    moved[~rigid] += 5.0  # an "expression" far off: must not move the alignment
    aligned = align_similarity(moved, shape, rigid)
    assert torch.allclose(aligned[rigid], shape[rigid], atol=1e-9)


def test_robust_merge_resists_one_wrong_photo():
    truth = _shape()
    noise = [0.01 * _shape(seed=s) for s in (2, 3, 4)]
    shapes = torch.stack([truth + noise[0], truth + noise[1], truth + 0.5 + noise[2]])  # third: off by 0.5
    weights = torch.ones(3, len(truth), dtype=torch.float64)
    merged = robust_merge(shapes, weights)
    mean = shapes.mean(0)
    assert (merged - truth).norm(dim=-1).mean() < 0.25 * (mean - truth).norm(dim=-1).mean()


def test_robust_merge_follows_the_confident_photo():
    truth = _shape()
    shapes = torch.stack([truth, truth + 0.02])
    weights = torch.stack([torch.ones(len(truth)), torch.full((len(truth),), 0.05)]).double()
    merged = robust_merge(shapes, weights)
    assert (merged - truth).abs().max() < 0.002


def test_expression_weights_peak_at_the_mouth():
    landmarks = torch.zeros(68, 3, dtype=torch.float64)
    landmarks[:, 0] = torch.linspace(-1, 1, 68)
    points = torch.stack([landmarks[60], torch.tensor([0.0, 5.0, 0.0], dtype=torch.float64)])
    points = torch.cat([points, _shape(50)])
    w = expression_weights(points, landmarks)
    assert math.isclose(float(w[0]), 1.0) and float(w[1]) < 1e-6
    assert bool(((w >= 0) & (w <= 1)).all())
