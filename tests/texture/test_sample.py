"""T_uv sampling, z-buffer visibility and silhouette distance."""

from __future__ import annotations

import torch

from mvinvert_cli.render.bake import uv_layout
from mvinvert_cli.render.camera import Camera
from mvinvert_cli.texture.sample import sample_image, sample_uv_texture, sample_vertices, zbuffer_visibility

from .conftest import grid_mesh


def _ramp(height: int = 224, width: int = 224) -> torch.Tensor:
    """(1, 2, H, W) image whose channels are the pixel-centre x and y (in px)."""
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    return torch.stack([xs, ys])[None].float()


def _projected(verts: torch.Tensor, scale: float = 0.8) -> torch.Tensor:
    return Camera().project((verts * scale).float())[None]


def test_sample_image_follows_the_pixel_centre_convention():
    points = torch.tensor([[[0.5, 0.5], [10.25, 100.75], [223.5, 7.5]]])
    torch.testing.assert_close(sample_image(_ramp(), points), points)
    out = sample_image(_ramp(), torch.tensor([[[float("nan"), 3.0], [-50.0, 3.0]]]))
    assert torch.isfinite(out).all() and out[0, 0].abs().sum() == 0


def test_sample_vertices_smoke_and_feature():
    verts, faces = grid_mesh(15)
    screen = _projected(verts)
    sampled = sample_vertices(_ramp(), screen, faces)
    assert sampled.colors.shape == (1, len(verts), 2) and sampled.visible.shape == (1, len(verts))
    torch.testing.assert_close(sampled.colors, screen[..., :2], atol=1e-3, rtol=0)
    assert sampled.visible.float().mean() > 0.9  # a convex cap facing the camera
    centre = len(verts) // 2
    assert sampled.boundary_distance[0, centre] > 50 and sampled.boundary_distance[0, 0] < 2


def test_occluded_vertices_are_invisible():
    back, faces = grid_mesh(11, curved=False)
    front = back.clone()
    front[:, 0] = front[:, 0] * 0.4 - 0.5  # a narrower plane in front of the left part
    front[:, 2] = 0.5
    verts = torch.cat([back, front])
    all_faces = torch.cat([faces, faces + len(back)])
    screen = _projected(verts)
    visible = sample_vertices(_ramp(), screen, all_faces).visible[0, : len(back)]
    behind = (back[:, 0] * 0.8 > (-0.9 + 0.02) * 0.8) & (back[:, 0] * 0.8 < (-0.1 - 0.02) * 0.8) \
        & (back[:, 1].abs() < 0.95)
    assert not visible[behind].any()
    assert visible[back[:, 0] > 0.1].all()


def test_off_image_and_nan_vertices_are_invisible():
    verts, faces = grid_mesh(5)
    screen = _projected(verts).clone()
    screen[0, 0] = torch.tensor([float("nan"), 5.0, 10.0])
    screen[0, 1] = torch.tensor([-30.0, 5.0, 10.0])
    zbuf = torch.full((1, 224, 224), 11.0)  # a wall behind every vertex
    visible = zbuffer_visibility(screen, zbuf)
    assert not visible[0, 0] and not visible[0, 1] and visible[0, 2:].all()


def test_uv_texture_of_a_fronto_parallel_plane_is_exact():
    verts, faces = grid_mesh(9, curved=False)
    uvs = (verts[:, :2].float() + 1) / 2
    screen = _projected(verts)
    size = 64
    layout = uv_layout(uvs, faces, size)
    texture, weight = sample_uv_texture(_ramp(), screen, faces, layout)
    assert texture.shape == (1, size, size, 2) and weight.shape == (1, size, size)
    cols = (torch.arange(size) + 0.5) / size  # u at texel centres
    expected_x = Camera().project(torch.stack([(2 * cols - 1) * 0.8, cols * 0, cols * 0], -1))[:, 0]
    inside = layout.mask
    assert inside.float().mean() > 0.9
    diff = (texture[0, ..., 0] - expected_x[None, :]).abs()[inside]
    assert diff.max() < 1e-3
    assert (weight[0][inside] == 1).all() and (texture[0][~inside] == 0).all()
