"""UV baking with seam-safe padding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mvinvert_cli.render.bake import bake, nearest_inside, pad_islands, uv_layout
from tests.texture.conftest import grid_mesh


def _two_islands():
    """Two disjoint square UV islands of one grid mesh each."""
    verts, faces = grid_mesh(5, curved=False)
    uv = (verts[:, :2].float() + 1) / 2 * 0.35
    uvs = torch.cat([uv + 0.05, uv + torch.tensor([0.55, 0.5])])
    return uvs, torch.cat([faces, faces + len(verts)]), len(verts)


def test_linear_colours_bake_exactly():
    uvs, faces, _ = _two_islands()
    colors = torch.stack([uvs[:, 0], uvs[:, 1], 1 - uvs[:, 0]], -1)
    baked = bake(colors, faces, uv_layout(uvs, faces, 64))
    assert baked.texture.shape == (64, 64, 3) and baked.mask.dtype == torch.bool
    rows, cols = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    u, v = (cols + 0.5) / 64, 1 - (rows + 0.5) / 64
    expected = torch.stack([u, v, 1 - u], -1)
    assert (baked.texture - expected)[baked.mask].abs().max() < 1e-5
    assert abs(baked.mask.float().mean() - 2 * 0.35**2) < 0.03


def test_padding_leaves_no_dark_seams_at_any_mip_level():
    uvs, faces, n = _two_islands()
    colors = torch.cat([torch.full((n, 3), 0.8), torch.full((n, 3), 0.3)])
    baked = bake(colors, faces, uv_layout(uvs, faces, 64))
    level = baked.texture.permute(2, 0, 1)[None]
    while level.shape[-1] > 1:
        # every texel, at every mip level, is a mix of the two island colours only
        assert level.min() >= 0.3 - 1e-6 and level.max() <= 0.8 + 1e-6
        level = F.avg_pool2d(level, 2)
    unpadded = torch.where(baked.mask[..., None], baked.texture, torch.zeros(()))
    assert F.avg_pool2d(unpadded.permute(2, 0, 1)[None], 8).min() == 0  # what padding prevents


def test_pad_islands_uses_the_nearest_island_texel():
    texture = torch.zeros(5, 5, 1)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    texture[1, 1], texture[3, 4] = 1.0, 2.0
    mask[1, 1] = mask[3, 4] = True
    padded = pad_islands(texture, nearest_inside(mask))[..., 0]
    assert padded[0, 0] == 1 and padded[4, 4] == 2 and padded[1, 2] == 1
    assert (nearest_inside(torch.zeros_like(mask)) == 0).all()


def test_reused_fragments_and_nan_colours():
    uvs, faces, n = _two_islands()
    layout = uv_layout(uvs, faces, 32)
    colors = torch.rand(2 * n, 3)
    colors[3] = float("nan")
    baked = bake(colors, faces, layout)
    assert baked.texture.shape == (32, 32, 3) and torch.isfinite(baked.texture).all()
