"""PyTorch3D adapter: NDC and packed-index conversions (always), agreement with ours (when installed)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from mvinvert_cli.errors import UsageError
from mvinvert_cli.render.pytorch3d_adapter import screen_to_ndc, unpack_pix_to_face
from mvinvert_cli.render.rasterize import RasterBackend, rasterize, select_backend

HAS_PYTORCH3D = importlib.util.find_spec("pytorch3d") is not None


def test_screen_to_ndc_pixel_centres_and_edges():
    # PyTorch3D (align_corners=False): +X left, +Y up, shorter side spans [-1, 1].
    pts = torch.tensor([[[0.0, 0.0, 2.0], [8.0, 4.0, 3.0], [4.0, 2.0, 1.0], [0.5, 0.5, 1.0]]])
    ndc = screen_to_ndc(pts, (4, 8))  # H = 4, W = 8
    expect = torch.tensor([[[2.0, 1.0, 2.0], [-2.0, -1.0, 3.0], [0.0, 0.0, 1.0], [1.75, 0.75, 1.0]]])
    torch.testing.assert_close(ndc, expect)


def test_unpack_pix_to_face():
    packed = torch.tensor([0, 4, -1, 5, 9, -1]).view(2, 1, 3, 1)  # F = 5: mesh 1 owns 5 … 9
    expect = torch.tensor([0, 4, -1, 0, 4, -1]).view(2, 1, 3, 1)
    assert torch.equal(unpack_pix_to_face(packed, 5), expect)


def test_select_backend_cpu_is_ours():
    assert select_backend("cpu") is RasterBackend.TORCH


@pytest.mark.skipif(HAS_PYTORCH3D, reason="PyTorch3D is installed")
def test_missing_pytorch3d_is_a_usage_error():
    verts = torch.tensor([[[0.0, 0.0, 1.0], [4.0, 0.0, 1.0], [0.0, 4.0, 1.0]]])
    with pytest.raises(UsageError, match="pytorch3d"):
        rasterize(verts, torch.tensor([[0, 1, 2]]), (4, 4), backend="pytorch3d")


@pytest.mark.skipif(not HAS_PYTORCH3D, reason="PyTorch3D is not installed")
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_pytorch3d_matches_ours(device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    g = torch.Generator().manual_seed(0)
    verts = torch.rand(2, 30, 3, generator=g) * torch.tensor([40.0, 30.0, 2.0]) + torch.tensor(
        [-5.0, -5.0, 1.0]
    )
    faces = torch.stack([torch.randperm(30, generator=g)[:3] for _ in range(40)])
    verts, faces = verts.to(device), faces.to(device)
    ours = rasterize(verts, faces, (24, 32), 2, perspective_correct=True)
    theirs = rasterize(verts, faces, (24, 32), 2, perspective_correct=True, backend="pytorch3d")
    agree = (ours.pix_to_face == theirs.pix_to_face).float().mean()
    assert agree > 0.995  # only exact edge ties may differ
    same = ours.pix_to_face == theirs.pix_to_face
    torch.testing.assert_close(ours.bary_coords[same], theirs.bary_coords[same])
