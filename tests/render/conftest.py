"""Render-test fixtures: a small synthetic face-like mesh (an ellipsoid cap grid with UVs)."""

from __future__ import annotations

import math

import pytest
import torch


def ellipsoid_grid(rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A front-facing ellipsoid cap (model units, nose toward +z, symmetric in x), its faces and UVs.

    Returns vertices (rows·cols, 3), faces (2·(rows−1)·(cols−1), 3) and uvs (rows·cols, 2), v up.
    """
    v, u = torch.meshgrid(torch.linspace(0, 1, rows), torch.linspace(0, 1, cols), indexing="ij")
    theta, phi = (u - 0.5) * math.pi * 0.9, (0.5 - v) * math.pi * 0.9
    verts = torch.stack(
        [0.8 * torch.sin(theta) * torch.cos(phi), torch.sin(phi), 0.6 * torch.cos(theta) * torch.cos(phi)], -1
    ).reshape(-1, 3)
    idx = torch.arange(rows * cols).reshape(rows, cols)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat([torch.stack([a, c, b], -1).reshape(-1, 3), torch.stack([b, c, d], -1).reshape(-1, 3)])
    uvs = torch.stack([u, 1 - v], -1).reshape(-1, 2)
    return verts, faces, uvs


@pytest.fixture
def face_grid():
    return ellipsoid_grid(21, 19)
