"""A synthetic symmetric 'head' (front part of a sphere + nose bump) seen by the Deep3DFaceRecon camera."""

from __future__ import annotations

import math

import pytest
import torch


def grid_head(n: int = 41, radius: float = 0.9, nose: float = 0.45, extent_deg: float = 80.0):
    """Model-space vertices (V,3) on a longitude/latitude grid of a sphere with a nose bump; faces (F,3).

    Longitudes and latitudes span ±``extent_deg`` symmetrically, so the mirror (x → −x) of vertex
    (lat i, lon j) is exactly vertex (i, n−1−j); returned as ``mirror`` (V,) long.
    """
    angles = torch.linspace(-math.radians(extent_deg), math.radians(extent_deg), n, dtype=torch.float64)
    lat, lon = torch.meshgrid(angles, angles, indexing="ij")
    direction = torch.stack([torch.cos(lat) * torch.sin(lon), torch.sin(lat), torch.cos(lat) * torch.cos(lon)], -1)
    bump = nose * torch.exp(-(lon ** 2 + (lat + 0.1) ** 2) / 0.03)
    verts = (direction * (radius + bump)[..., None]).reshape(-1, 3).float()
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    # counter-clockwise seen from outside (+z faces the camera; lat grows up, lon grows right)
    faces = torch.cat([torch.stack([a, b, d], -1).reshape(-1, 3), torch.stack([a, d, c], -1).reshape(-1, 3)])
    mirror = idx.flip(1).reshape(-1)
    return verts, faces, mirror


@pytest.fixture
def head():
    return grid_head()
