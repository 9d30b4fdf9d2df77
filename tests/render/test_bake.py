"""UV baking with seam-safe padding: the compact banded layout bakes exactly what the whole-image
rasterisation did, in bounded memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mvinvert_cli.render import bake as bake_module
from mvinvert_cli.render.bake import bake, nearest_inside, pad_islands, uv_layout
from mvinvert_cli.render.rasterize import interpolate
from mvinvert_cli.render.renderer import uv_fragments
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


def _reference_bake(colors, faces, uvs, size):
    """The pre-layout bake: rasterise the whole S×S UV image, interpolate every texel, pad."""
    fragments = uv_fragments(uvs, faces, size)
    texture = interpolate(fragments, faces, colors[None])[0]
    return pad_islands(texture, nearest_inside(fragments.mask[0])), fragments.mask[0]


def test_bake_equals_the_whole_image_rasterisation_and_padding(face_grid):
    uvs, faces, n = _two_islands()
    colors = torch.rand(n * 2, 3)
    expected, mask = _reference_bake(colors, faces, uvs, 48)
    layout = uv_layout(uvs, faces, 48)
    assert torch.equal(layout.mask, mask) and torch.equal(layout.nearest, nearest_inside(mask))
    assert torch.equal(bake(colors, faces, layout).texture, expected)
    _, grid_faces, grid_uvs = face_grid
    grid_colors = torch.rand(len(grid_uvs), 4)
    expected, _ = _reference_bake(grid_colors, grid_faces, grid_uvs, 40)
    assert torch.equal(bake(grid_colors, grid_faces, uv_layout(grid_uvs, grid_faces, 40)).texture, expected)


def test_layout_is_rasterised_in_bounded_bands(monkeypatch):
    uvs, faces, n = _two_islands()
    whole = uv_layout(uvs, faces, 64)
    bands = []

    def recording(*args, **kwargs):
        bands.append(kwargs["rows"])
        return uv_fragments(*args, **kwargs)

    monkeypatch.setattr(bake_module, "uv_fragments", recording)
    banded = uv_layout(uvs, faces, 64, band_texels=64 * 5)
    assert bands[0] == (0, 5) and bands[-1] == (60, 64) and all(b - a <= 5 for a, b in bands)
    assert torch.equal(banded.mask, whole.mask) and torch.equal(banded.source, whole.source)
    # texel centres exactly on a shared edge (this grid has some) may go to the other triangle of the
    # edge: same colour up to rounding
    assert int((banded.texel_faces != whole.texel_faces).sum()) <= 2
    colors = torch.rand(2 * n, 3)
    torch.testing.assert_close(bake(colors, faces, banded).texture, bake(colors, faces, whole).texture,
                               atol=1e-6, rtol=0)


def test_layout_memory_is_compact():
    uvs, faces, _ = _two_islands()
    layout = uv_layout(uvs, faces, 256)
    size = sum(t.element_size() * t.numel() for t in (layout.mask, layout.texel_faces, layout.texel_bary,
                                                       layout.source))
    assert size <= 21 * 256 * 256  # bytes per texel: 1 (mask) + 4 (source) + 16 per inside texel


def test_bake_batches_chunks_and_differentiates(face_grid, monkeypatch):
    _, faces, uvs = face_grid
    layout = uv_layout(uvs, faces, 16)
    colors = torch.rand(2, uvs.shape[0], 3, requires_grad=True)
    whole = bake(colors, faces, layout).texture
    monkeypatch.setattr(bake_module, "CHUNK_TEXELS", 7)
    chunked = bake(colors, faces, layout).texture
    assert chunked.shape == (2, 16, 16, 3) and torch.equal(chunked, whole)
    torch.testing.assert_close(chunked[1], bake(colors[1], faces, layout).texture)
    chunked.sum().backward()
    assert colors.grad.abs().sum() > 0


def test_bake_reproduces_an_affine_attribute(face_grid):
    _, faces, uvs = face_grid
    size = 40
    baked = bake(uvs, faces, uv_layout(uvs, faces, size))
    assert baked.mask.all()  # the grid's UVs tile the unit square
    centres = (torch.arange(size) + 0.5) / size
    torch.testing.assert_close(baked.texture[..., 0], centres[None, :].expand(size, size), atol=1e-5, rtol=0)
    torch.testing.assert_close(baked.texture[..., 1], 1 - centres[:, None].expand(size, size), atol=1e-5, rtol=0)


def test_empty_layout_bakes_zeros():
    uvs = torch.tensor([[2.0, 2.0], [2.1, 2.0], [2.0, 2.1]])  # outside [0, 1]²: no texel covered
    layout = uv_layout(uvs, torch.tensor([[0, 1, 2]]), 8)
    assert layout.n_inside == 0
    assert torch.equal(bake(torch.rand(3, 3), torch.tensor([[0, 1, 2]]), layout).texture, torch.zeros(8, 8, 3))


def test_texture_size_limit_is_enforced_and_its_memory_stated(capsys):
    from mvinvert_cli.cli import main
    from mvinvert_cli.config import MAX_TEXTURE_SIZE, TEXTURE_SIZE_HELP
    from mvinvert_cli.errors import ExitCode

    assert MAX_TEXTURE_SIZE == 4096 and "GB at 4096" in TEXTURE_SIZE_HELP
    for command in ("recover", "batch"):
        assert main([command, "photo.jpg", "--texture-size", str(2 * MAX_TEXTURE_SIZE)]) == ExitCode.USAGE
    assert main(["recover", "--help"]) == 0
    assert "GB at 4096" in " ".join(capsys.readouterr().out.split())
