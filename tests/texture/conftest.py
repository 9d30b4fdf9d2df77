"""Small curved test meshes for the texture tests."""

from __future__ import annotations

import pytest
import torch


def grid_mesh(n: int = 9, curved: bool = True, dtype: torch.dtype = torch.float64):
    """An n×n vertex grid on [−1, 1]², optionally lifted onto a sphere cap of radius 2.

    Returns:
        verts (n², 3), faces (2(n−1)², 3) long, counter-clockwise seen from +z.
    """
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, n, dtype=dtype), torch.linspace(-1, 1, n, dtype=dtype),
                            indexing="ij")
    zs = (4 - xs**2 - ys**2).sqrt() - 2 if curved else torch.zeros_like(xs)
    verts = torch.stack([xs, ys, zs], dim=-1).reshape(-1, 3)
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat([torch.stack([a, b, d], -1).reshape(-1, 3), torch.stack([a, d, c], -1).reshape(-1, 3)])
    return verts, faces


def smooth_field(verts: torch.Tensor) -> torch.Tensor:
    """A smooth RGB field (V, 3) over the mesh."""
    x, y, z = verts.unbind(-1)
    return torch.stack([0.5 + 0.3 * torch.sin(2 * x) * torch.cos(y), 0.4 + 0.2 * x * y + 0.1 * z,
                        0.6 - 0.25 * torch.cos(1.5 * y + x)], dim=-1)


@pytest.fixture
def mesh():
    return grid_mesh(9)
