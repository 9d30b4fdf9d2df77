"""Multi-photo stitching on a synthetic head with a known texture seen from three yaws."""

from __future__ import annotations

import math

import pytest
import torch

from mvinvert_cli.render.bake import uv_layout
from mvinvert_cli.render.camera import Camera, transform
from mvinvert_cli.render.renderer import Renderer
from mvinvert_cli.texture.multiview import (
    exposure_gains,
    source_map,
    stitch_photos,
    texel_sources,
    triangle_shares,
)
from mvinvert_cli.texture.poisson import PoissonSolver
from mvinvert_cli.texture.sample import sample_vertices
from mvinvert_cli.texture.visibility import vertex_scores

YAWS = (0.0, -40.0, 40.0)  # reference first
EXPOSURE = ((1.0, 1.0, 1.0), (0.8, 0.85, 0.9), (1.15, 1.1, 1.05))  # per-view camera gain
VIEW_THRESHOLD = 3.0  # Eq. 4's T (px at 224), the coarse/view threshold


def head(rows: int = 40, cols: int = 48) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A closed ellipsoid head (model units, front +z) with a nose bump, its faces and spherical UVs."""
    v, u = torch.meshgrid(torch.linspace(0.02, 0.98, rows), torch.linspace(0, 1, cols + 1)[:-1], indexing="ij")
    theta, phi = (u - 0.5) * 2 * math.pi, (0.5 - v) * math.pi
    x, y, z = torch.sin(theta) * torch.cos(phi), torch.sin(phi), torch.cos(theta) * torch.cos(phi)
    nose = 0.25 * torch.exp(-((theta / 0.35) ** 2 + ((phi + 0.05) / 0.3) ** 2))
    radius = 1.0 + nose
    verts = torch.stack([0.75 * x * radius, 0.95 * y * radius, 0.85 * z * radius], -1).reshape(-1, 3).double()
    idx = torch.arange(rows * cols).reshape(rows, cols)
    a, b = idx[:-1], idx[:-1].roll(-1, dims=1)
    c, d = idx[1:], idx[1:].roll(-1, dims=1)
    faces = torch.cat([torch.stack([a, c, b], -1).reshape(-1, 3), torch.stack([b, c, d], -1).reshape(-1, 3)])
    uvs = torch.stack([u, 1 - v], -1).reshape(-1, 2).double()
    return verts, faces, uvs


def known_texture(verts: torch.Tensor) -> torch.Tensor:
    """(V, 3) a textured field in [0.1, 0.9]: smooth colour plus fine stripes."""
    x, y, z = verts.unbind(-1)
    base = torch.stack([0.55 + 0.2 * x, 0.45 + 0.15 * y, 0.4 + 0.1 * z], -1)
    detail = 0.12 * torch.sin(9 * x + 4 * y)[:, None] * torch.tensor([1.0, 0.7, 0.4], dtype=verts.dtype)
    return (base + detail).clamp(0.1, 0.9)


def observe(verts: torch.Tensor, faces: torch.Tensor, truth: torch.Tensor, yaw: float,
            exposure: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the head at ``yaw`` with a camera gain, re-sample it: per-vertex colours and Eq. 4 scores."""
    angles = torch.tensor([[0.0, math.radians(yaw), 0.0]], dtype=verts.dtype)
    world = transform(verts[None], angles, torch.zeros(1, 3, dtype=verts.dtype))
    normals = transform(torch.nn.functional.normalize(verts, dim=-1)[None], angles, torch.zeros(1, 3, dtype=verts.dtype))
    image = Renderer(size=224, background=0.0).render(world.float(), faces, truth[None].float()).image
    image = (image * torch.tensor(exposure).view(1, 3, 1, 1)).clamp(0, 1)
    screen = Camera().project(world.float())
    sampled = sample_vertices(image, screen, faces)
    scores = vertex_scores(normals.float(), world.float(), sampled.visible, sampled.boundary_distance, VIEW_THRESHOLD)
    return sampled.colors[0].double(), scores[0].double()


@pytest.fixture(scope="module")
def scene():
    verts, faces, uvs = head()
    truth = known_texture(verts)
    observed = [observe(verts, faces, truth, yaw, gain) for yaw, gain in zip(YAWS, EXPOSURE, strict=True)]
    colors = torch.stack([c for c, _ in observed])
    scores = torch.stack([s for _, s in observed])
    return verts, faces, uvs, truth, colors, scores


def _error(estimate: torch.Tensor, target: torch.Tensor, where: torch.Tensor) -> float:
    return float((estimate - target)[where].abs().mean())


def _stitched(scene, remove_gain: bool) -> tuple[torch.Tensor, torch.Tensor]:
    verts, faces, _, _, colors, scores = scene
    solver = PoissonSolver(verts, faces)
    gains = [exposure_gains(colors[0], scores[0], c, s).gain if remove_gain else torch.ones(3, dtype=c.dtype)
             for c, s in zip(colors, scores, strict=True)]
    corrected = colors * torch.stack(gains)[:, None, :]
    fill = corrected[0].mean(0).expand_as(corrected[0])
    result = stitch_photos(solver, corrected, scores, fill[None], torch.ones_like(scores[:1]), fill)
    return result.colors, result.selection


def test_stitched_error_within_best_single_view(scene):
    """Acceptance: the stitched texture's error on vertices seen by any view is within 1.2× the best
    single view's error on its own visible vertices (each single view in its own exposure)."""
    _, _, _, truth, colors, scores = scene
    seen_any = (scores > 0).any(0)
    singles = [_error(colors[i], truth * torch.tensor(EXPOSURE[i], dtype=truth.dtype), scores[i] > 0)
               for i in range(len(YAWS))]
    stitched, _ = _stitched(scene, remove_gain=True)
    error = _error(stitched, truth, seen_any)
    coverage = [float((scores[i] > 0).double().mean()) for i in range(len(YAWS))]
    assert float(seen_any.double().mean()) > max(coverage) + 0.15  # the views add real coverage
    assert error <= 1.2 * min(singles), (error, singles)


def test_gain_removal_is_needed(scene):
    """Without the per-channel gains the other views' exposure shows in the stitch (the test above can fail)."""
    _, _, _, truth, _, scores = scene
    seen_any = (scores > 0).any(0)
    with_gain = _error(_stitched(scene, True)[0], truth, seen_any)
    without = _error(_stitched(scene, False)[0], truth, seen_any)
    assert without > 1.5 * with_gain


def test_exposure_gains_recover_the_camera_gain(scene):
    _, _, _, _, colors, scores = scene
    for i in (1, 2):
        gain = exposure_gains(colors[0], scores[0], colors[i], scores[i])
        expected = 1.0 / torch.tensor(EXPOSURE[i], dtype=colors.dtype)
        assert gain.common >= 50 and not gain.note
        assert torch.allclose(gain.gain, expected, rtol=0.03)


def test_exposure_gains_need_common_vertices():
    colors = torch.rand(100, 3)
    gain = exposure_gains(colors, torch.ones(100), colors, torch.zeros(100))
    assert torch.equal(gain.gain, torch.ones(3)) and gain.common == 0 and "gain 1" in gain.note


def test_every_view_contributes_and_the_map_shows_it(scene):
    verts, faces, uvs, *_ = scene
    _, selection = _stitched(scene, True)
    shares = triangle_shares(selection, len(YAWS))
    assert all(s > 0.05 for s in shares) and sum(shares) <= 1.0
    layout = uv_layout(uvs.float(), faces, 64)
    sources = texel_sources(selection, layout)
    assert set(sources[layout.mask].unique().tolist()) <= set(range(-1, len(YAWS) + 1))
    assert bool((sources[~layout.mask] == -1).all())
    texture = torch.full((64, 64, 3), 0.5)
    sheet = source_map(selection, layout, texture, len(YAWS))
    assert sheet.shape == (64, 64, 3) and bool((sheet[~layout.mask] == 0).all())
    red = (sources == 0) & layout.mask
    assert bool((sheet[red][:, 0] > sheet[red][:, 2]).all())  # photo 0 tinted red


def test_fill_views_only_fill_what_no_photo_sees(scene):
    verts, faces, _, truth, colors, scores = scene
    solver = PoissonSolver(verts, faces)
    fill = torch.zeros_like(colors[:1])
    result = stitch_photos(solver, colors, scores, fill, torch.ones_like(scores[:1]), colors[0])
    confidence = scores[:, faces].amin(-1)
    seen_by_photo = (confidence > 0).any(0)
    assert bool((result.selection[seen_by_photo] < len(YAWS)).all())
    assert bool((result.selection[~seen_by_photo] == len(YAWS)).all())


def test_sample_image_of_head_is_consistent(scene):
    """Sanity of the synthetic scene: the reference view's samples match the truth where seen."""
    _, _, _, truth, colors, scores = scene
    assert _error(colors[0], truth, scores[0] > 0) < 0.02
