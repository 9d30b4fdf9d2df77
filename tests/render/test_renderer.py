"""Renderer: coverage of a known quad, colours, textures, symmetric views, UV-space bakes, gradients."""

from __future__ import annotations

import torch

from mvinvert_cli.render.camera import Camera, transform
from mvinvert_cli.render.renderer import Renderer, view_pose

QUAD = torch.tensor([[[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]]])
QUAD_FACES = torch.tensor([[0, 1, 2], [0, 2, 3]])


def test_render_quad_coverage_and_colour():
    # At 56 px: f = 253.75, c = 28, so x = ±1 at depth 10 lands on 28 ± 25.375 (centres 3.5 … 52.5).
    renderer = Renderer(size=56, background=0.25)
    colors = torch.tensor([[[0.1, 0.2, 0.3]]]).expand(1, 4, 3)
    out = renderer.render(QUAD, QUAD_FACES, colors)
    assert out.image.shape == (1, 3, 56, 56) and out.alpha.shape == (1, 1, 56, 56)
    assert out.backend == "torch"
    expect = torch.zeros(56, 56, dtype=torch.bool)
    expect[3:53, 3:53] = True
    assert torch.equal(out.alpha[0, 0] > 0, expect)
    torch.testing.assert_close(out.image[0, :, 30, 30], torch.tensor([0.1, 0.2, 0.3]))
    assert (out.image[0, :, 0, 0] == 0.25).all()
    torch.testing.assert_close(out.fragments.zbuf[0, 30, 30, 0], torch.tensor(10.0))


def test_render_textured_samples_uv():
    renderer = Renderer(size=32)
    uvs = (QUAD[0, :, :2] + 1) / 2  # u = (x + 1)/2, v = (y + 1)/2 (v up, like y)
    texture = torch.zeros(1, 3, 4, 4)
    texture[0, 0, 0, 3] = 1.0  # top-right texel: u ≈ 1, v ≈ 1 → world (+x, +y) → image top right
    out = renderer.render_textured(QUAD, QUAD_FACES, uvs, texture)
    red = out.image[0, 0]
    assert red[3, 28] > 0.99 and red[28, 3] < 0.01 and red[3, 3] < 0.01  # border padding: no darkening


def test_view_pose_symmetric_views(face_grid):
    verts, faces, _ = face_grid
    renderer = Renderer(size=64)
    colors = torch.ones(1, verts.shape[0], 3)
    masks = []
    for yaw in (30.0, -30.0):
        angles, t = view_pose(yaw)
        masks.append(
            renderer.render(transform(verts[None], angles[None], t[None]), faces, colors).alpha[0, 0]
        )
    assert masks[0].sum() > 500
    assert (masks[0] != masks[1].flip(-1)).sum() <= 4  # mirror images up to edge ties


def test_view_pose_directions(face_grid):
    verts, faces, _ = face_grid
    nose = verts[verts[:, 2].argmax()][None, None]
    cam = Camera()
    angles, t = view_pose(30.0)
    assert cam.project(transform(nose, angles[None], t[None]))[0, 0, 0] > 112 + 10  # nose moves right
    angles, t = view_pose(0.0, -15.0)
    assert cam.project(transform(nose, angles[None], t[None]))[0, 0, 1] < 112 - 10  # nose moves up


def test_render_gradients_flow(face_grid):
    verts, faces, _ = face_grid
    verts = verts[None].clone().requires_grad_()
    colors = torch.rand(1, verts.shape[1], 3, requires_grad=True)
    out = Renderer(size=48).render(verts, faces, colors)
    out.image.sum().backward()
    assert colors.grad.abs().sum() > 0 and verts.grad.abs().sum() > 0
    assert torch.isfinite(verts.grad).all()


def test_reused_face_map_recomputes_barycentrics(face_grid):
    verts, faces, _ = face_grid
    renderer = Renderer(size=48)
    world = transform(verts[None], *(x[None] for x in view_pose(20.0, -10.0)))
    colors = torch.rand(1, verts.shape[0], 3, generator=torch.Generator().manual_seed(0))
    fresh = renderer.render(world, faces, colors)
    reused = renderer.render(world, faces, colors, pix_to_face=fresh.fragments.pix_to_face)
    torch.testing.assert_close(reused.image, fresh.image)
    torch.testing.assert_close(reused.fragments.zbuf, fresh.fragments.zbuf)
    # moved vertices: same face map, barycentrics follow the vertices (differentiably)
    moved = (world + torch.tensor([0.01, 0.0, 0.0])).requires_grad_(True)
    shifted = renderer.render(moved, faces, colors, pix_to_face=fresh.fragments.pix_to_face)
    assert torch.equal(shifted.fragments.pix_to_face, fresh.fragments.pix_to_face)
    assert not torch.allclose(shifted.fragments.bary_coords, fresh.fragments.bary_coords)
    shifted.image.sum().backward()
    assert moved.grad is not None and moved.grad.abs().sum() > 0
