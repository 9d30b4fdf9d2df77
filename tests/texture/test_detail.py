"""texture.detail: the chunked, inside-texel detail bake equals the whole-image formula it replaced."""

from __future__ import annotations

import torch

from mvinvert_cli.render import bake as bake_module
from mvinvert_cli.render.bake import bake, pad_islands, uv_layout
from mvinvert_cli.texture.detail import DETAIL_GAIN, bake_with_detail, photo_detail
from mvinvert_cli.texture.sample import sample_uv_texture
from tests.texture.conftest import grid_mesh, smooth_field


def _scene():
    verts, faces = grid_mesh(13)
    uvs = ((verts[:, :2] + 1) / 2 * 0.9 + 0.05).float()
    screen = torch.cat([(verts[:, :2] + 1.2) * 40, verts[:, 2:] + 10], -1).float()[None]  # photo pixels
    photo = torch.rand(1, 3, 100, 100)
    t_uv = smooth_field(verts).float()
    scores = torch.linspace(0, 1, len(verts)) * (verts[:, 0] > -0.5)
    return photo, screen, t_uv, scores.float(), faces, uvs


def _whole_image_reference(colors, photo, screen, t_uv, scores, faces, layout):
    """The previous formula on full S×S images: bake + sampled photo texels + pad."""
    base_uv = bake(t_uv, faces, layout).texture
    texels, weight = sample_uv_texture(photo, screen, faces, layout, scores[None])
    residual = (weight[0] * DETAIL_GAIN).clamp(0, 1)[..., None] * (texels[0] - base_uv)
    return pad_islands((bake(colors, faces, layout).texture + residual).clamp(0, 1), layout.nearest)


def test_detail_bake_matches_the_whole_image_formula(monkeypatch):
    photo, screen, t_uv, scores, faces, uvs = _scene()
    layout = uv_layout(uvs, faces, 48)
    colors = (t_uv * 0.8 + 0.1).clamp(0, 1)
    expected = _whole_image_reference(colors, photo, screen, t_uv, scores, faces, layout).numpy()
    texture, mask = bake_with_detail(colors, faces, layout, photo_detail(photo, screen, t_uv, scores, faces, layout))
    assert (texture == expected).all() and (mask == layout.mask.numpy()).all()
    monkeypatch.setattr(bake_module, "CHUNK_TEXELS", 100)  # many chunks: same bytes
    detail = photo_detail(photo, screen, t_uv, scores, faces, layout)
    assert (bake_with_detail(colors, faces, layout, detail)[0] == expected).all()


def test_detail_is_zero_where_the_photo_does_not_see():
    photo, screen, t_uv, _, faces, uvs = _scene()
    layout = uv_layout(uvs, faces, 32)
    detail = photo_detail(photo, screen, t_uv, torch.zeros(len(t_uv)), faces, layout)
    assert detail.residual.shape == (layout.n_inside, 3) and (detail.residual == 0).all()
    texture, _ = bake_with_detail(t_uv, faces, layout, detail)
    assert (texture == bake(t_uv, faces, layout).texture.clamp(0, 1).numpy()).all()
