"""holdout: the self-occluded split on a synthetic head, the baselines, and region scoring."""

from __future__ import annotations

import math

import pytest
import torch

from mvinvert_cli.eval import holdout
from mvinvert_cli.eval.score import region_scores
from mvinvert_cli.render.camera import Camera, transform

SIZE = (112, 112)  # small crop: the camera is Deep3DFaceRecon's, resized
CAMERA = Camera().resized(112)


def _screen(verts: torch.Tensor, yaw_deg: float = 0.0) -> torch.Tensor:
    angles = holdout.turned_angles(torch.zeros(3), yaw_deg)
    return CAMERA.project(transform(verts[None], angles[None], torch.zeros(1, 3)))[0]


def _split(head, yaw=45.0, face_mask=None):
    verts, faces, _ = head
    photo = _screen(verts)
    visible = holdout.zbuffer_visible(photo, faces, SIZE)
    return photo, visible, holdout.split(photo, _screen(verts, yaw), faces, visible, SIZE, yaw, face_mask)


def test_zbuffer_visible_front_and_nose_shadow(head):
    verts, faces, _ = head
    normal = verts / verts.norm(dim=1, keepdim=True)  # radial: the sphere's normal (the nose is radial too)
    frontal = holdout.zbuffer_visible(_screen(verts), faces, SIZE)
    assert frontal[normal[:, 2] > 0.3].all()  # everything not grazing is visible at yaw 0
    turned = holdout.zbuffer_visible(_screen(verts, 45.0), faces, SIZE)
    facing = -math.sin(math.radians(45)) * normal[:, 0] + math.cos(math.radians(45)) * normal[:, 2]
    assert not turned[facing < -0.05].any()  # back-facing after the turn: hidden
    assert turned[facing > 0.2].float().mean() > 0.95
    # the nose casts an occlusion on its far (+x) side: front-facing vertices there are hidden
    sphere = verts.norm(dim=1) < 0.901
    shadow = ~turned & (facing > 0.2) & sphere & (normal[:, 1].abs() < 0.5)
    assert shadow.sum() >= 5 and (verts[shadow, 0] > 0).all()


def test_split_is_consistent(head):
    verts, faces, _ = head
    _, visible, s = _split(head)
    assert torch.equal(s.keep | s.hidden, visible) and not (s.keep & s.hidden).any()
    assert 0.1 < s.hidden.float().mean() < 0.6
    body = (verts[:, 1] / verts.norm(dim=1)).abs() < 0.9  # away from the grazing poles of the grid
    assert (verts[s.hidden & body, 0] > 0).all()  # a +45° turn hides the +x side
    cols = torch.nonzero(s.region)[:, 1].float() + 0.5
    assert s.region_pixels > 100 and (cols > 56).all()  # +x model side → right half of the crop
    mask = torch.zeros(SIZE, dtype=torch.bool)
    mask[:, :80] = True
    assert holdout.split(_screen(verts), _screen(verts, 45.0), faces, visible, SIZE, 45.0, mask).region_pixels < \
        s.region_pixels
    # the opposite turn hides the other side
    _, _, other = _split(head, yaw=-45.0)
    assert (verts[other.hidden & body, 0] < 0).all()


def test_mirror_fill_exact_on_symmetric_texture(head):
    verts, faces, mirror = head
    colours = torch.stack([verts[:, 0].abs(), verts[:, 1] * 0.5 + 0.5, verts[:, 2].clamp(0, 1)], 1)
    prior = torch.full_like(colours, 0.5)
    _, _, s = _split(head)
    filled, mirrored = holdout.mirror_fill(colours, s.keep, mirror, prior)
    assert mirrored[s.hidden].float().mean() > 0.8 and not mirrored[s.keep].any()
    hidden_with_mirror = s.hidden & s.keep[mirror]
    assert torch.allclose(filled[hidden_with_mirror], colours[hidden_with_mirror])
    assert torch.equal(filled[s.keep], colours[s.keep])
    stat = holdout.statistical_fill(colours, s.keep, prior)
    assert torch.equal(stat[s.hidden], prior[s.hidden]) and torch.equal(stat[s.keep], colours[s.keep])


def test_region_scores_rank_methods(head):
    verts, faces, mirror = head
    colours = torch.stack([0.3 + 0.4 * verts[:, 0].abs(), 0.5 + 0.3 * verts[:, 1], 0.4 + 0.1 * verts[:, 2]], 1)
    photo_screen, _, s = _split(head)
    photo = holdout.render_colours(photo_screen, faces, colours, SIZE)
    photo = torch.where(photo.sum(0, keepdim=True) > 0, photo, torch.full_like(photo, 0.2))  # background
    prior = torch.full_like(colours, 0.5)
    region = s.region[None]
    results = {}
    for name, filled in {
        "truth": colours,
        "mirror": holdout.mirror_fill(colours, s.keep, mirror, prior)[0],
        "statistical": holdout.statistical_fill(colours, s.keep, prior),
    }.items():
        candidate = holdout.composite(photo, holdout.render_colours(photo_screen, faces, filled, SIZE), s.region)
        results[name] = {k: v.item() for k, v in region_scores(photo[None], candidate[None], region).items()}
    assert results["truth"]["psnr"] == math.inf and results["truth"]["ssim"] == pytest.approx(1.0)
    assert results["mirror"]["psnr"] > 40  # exact wherever the mirror was kept
    assert results["statistical"]["psnr"] < 25 and results["statistical"]["l1"] > 0.05
    assert results["mirror"]["ssim"] > results["statistical"]["ssim"]


def test_empty_region_scores_nan():
    photo = torch.rand(1, 3, 32, 32)
    scores = region_scores(photo, photo, torch.zeros(1, 32, 32, dtype=torch.bool))
    assert all(math.isnan(v.item()) for v in scores.values())


def test_larger_turn_hides_more(head):
    hidden = [int(_split(head, yaw=yaw)[2].hidden.sum()) for yaw in (30.0, 45.0, 60.0)]
    assert hidden[0] < hidden[1] < hidden[2]


def test_hidden_pixels_cover_every_hidden_vertex(head):
    verts, faces, _ = head
    photo, _, s = _split(head)
    blind = holdout.hidden_pixels(photo, faces, s.hidden, SIZE)
    assert (blind & s.region).sum() == s.region.sum()  # the scored region is inside
    xy = photo[s.hidden, :2].floor().long()
    assert blind[xy[:, 1], xy[:, 0]].all()  # every hidden vertex's pixel is masked
    assert blind.sum() < 0.6 * SIZE[0] * SIZE[1]
