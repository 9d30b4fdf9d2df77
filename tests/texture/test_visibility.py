"""Eq. 4 scores, triangle confidence and Eq. 5 selection."""

from __future__ import annotations

import torch

from mvinvert_cli.texture.visibility import (
    NO_VIEW,
    facing,
    select_views,
    silhouette_distance,
    triangle_confidence,
    vertex_scores,
)


def test_facing_is_clamped_cosine_to_the_camera():
    verts = torch.tensor([[[0.0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]])
    normals = torch.tensor([[[0.0, 0, 1], [0, 0, -1], [1, 0, 1], [float("nan"), 0, 0]]])
    torch.testing.assert_close(facing(normals, verts), torch.tensor([[1.0, 0.0, 2**-0.5, 0.0]]))


def test_vertex_scores_apply_every_factor():
    verts = torch.zeros(1, 4, 3)
    normals = torch.tensor([[[0.0, 0, 1]] * 4])
    visible = torch.tensor([[True, False, True, True]])
    distance = torch.tensor([[60.0, 60.0, 10.0, float("nan")]])
    scores = vertex_scores(normals, verts, visible, distance, threshold=50.0)
    torch.testing.assert_close(scores, torch.tensor([[1.0, 0.0, 0.0, 0.0]]))


def test_triangle_confidence_is_min_and_selection_is_argmax():
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.0], [0.9, 0.2, 0.9, 0.9], [0.0, 0.0, 0.0, float("nan")]])
    faces = torch.tensor([[0, 1, 2], [1, 2, 3], [0, 2, 3]])
    conf = triangle_confidence(scores, faces)
    torch.testing.assert_close(conf, torch.tensor([[0.5, 0.0, 0.0], [0.2, 0.2, 0.9], [0.0, 0.0, 0.0]]))
    assert select_views(conf).tolist() == [0, 1, 1]
    assert select_views(torch.zeros(2, 3)).tolist() == [NO_VIEW] * 3
    assert select_views(torch.tensor([[0.4], [0.4]])).tolist() == [0]  # ties go to the photo


def test_silhouette_distance_of_a_disk_ignores_holes():
    yy, xx = torch.meshgrid(torch.arange(41.0), torch.arange(41.0), indexing="ij")
    r = ((yy - 20) ** 2 + (xx - 20) ** 2).sqrt()
    mask = (r <= 15) & (r > 3)  # a ring: the hole is filled first
    dist = silhouette_distance(mask[None])
    assert dist.shape == (1, 41, 41)
    assert dist[0, 20, 20] >= 15 and dist[0, 0, 0] == 0
    assert abs(float(dist[0, 20, 34]) - 2.0) < 1.01
