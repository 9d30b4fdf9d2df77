"""Multi-photo blending on a synthetic head with a known albedo seen from three yaws, each view under
its own SH light and camera exposure."""

from __future__ import annotations

import math

import pytest
import torch

from mvinvert_cli.render.bake import uv_layout
from mvinvert_cli.render.camera import Camera, transform
from mvinvert_cli.render.renderer import Renderer
from mvinvert_cli.texture.detail import photo_detail
from mvinvert_cli.texture.multiview import (
    SHADING_FLOOR,
    blend_photos,
    exposure_gains,
    multi_photo_detail,
    photo_shading,
    relight,
    source_map,
    texel_sources,
    triangle_shares,
)
from mvinvert_cli.texture.poisson import PoissonSolver
from mvinvert_cli.texture.sample import sample_vertices
from mvinvert_cli.texture.visibility import vertex_scores

YAWS = (0.0, -40.0, 40.0)  # reference first
EXPOSURE = ((1.0, 1.0, 1.0), (0.8, 0.85, 0.9), (1.15, 1.1, 1.05))  # per-view camera gain
LIGHTS = ((0.1, 0.0, 0.3), (-0.2, 0.1, 0.1), (0.25, -0.1, 0.2))  # per view: SH x, y, z band-1 terms
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


def light(x: float, y: float, z: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(27,) a monochrome SH light with band-1 terms (x, y, z) (``render.lighting`` order: −y, z, −x)."""
    gamma = torch.zeros(9, dtype=dtype)
    gamma[1], gamma[2], gamma[3] = -y, z, -x
    return gamma.repeat(3)


def observe(verts: torch.Tensor, faces: torch.Tensor, truth: torch.Tensor, yaw: float, exposure: tuple[float, ...],
            sh: tuple[float, float, float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render the albedo ``truth`` lit by ``sh`` at ``yaw`` with a camera gain and re-sample it:
    per-vertex colours, Eq. 4 scores, and the view's (known) SH irradiance."""
    angles = torch.tensor([[0.0, math.radians(yaw), 0.0]], dtype=verts.dtype)
    world = transform(verts[None], angles, torch.zeros(1, 3, dtype=verts.dtype))
    normals = transform(torch.nn.functional.normalize(verts, dim=-1)[None], angles, torch.zeros(1, 3, dtype=verts.dtype))
    shading = photo_shading(normals[0], light(*sh))
    image = Renderer(size=224, background=0.0).render(world.float(), faces, (truth * shading)[None].float()).image
    image = (image * torch.tensor(exposure).view(1, 3, 1, 1)).clamp(0, 1)
    screen = Camera().project(world.float())
    sampled = sample_vertices(image, screen, faces)
    scores = vertex_scores(normals.float(), world.float(), sampled.visible, sampled.boundary_distance, VIEW_THRESHOLD)
    return sampled.colors[0].double(), scores[0].double(), shading


@pytest.fixture(scope="module")
def scene():
    verts, faces, uvs = head()
    truth = known_texture(verts)
    observed = [observe(verts, faces, truth, yaw, gain, sh) for yaw, gain, sh in zip(YAWS, EXPOSURE, LIGHTS, strict=True)]
    colors = torch.stack([c for c, _, _ in observed])
    scores = torch.stack([s for _, s, _ in observed])
    shading = torch.stack([h for _, _, h in observed])
    return verts, faces, uvs, truth, colors, scores, shading


def _error(estimate: torch.Tensor, target: torch.Tensor, where: torch.Tensor) -> float:
    return float((estimate - target)[where].abs().mean())


def _blended(scene, remove_gain: bool = True, delight: bool = True):
    verts, faces, _, _, colors, scores, shading = scene
    albedos = colors / shading if delight else colors
    gains = [exposure_gains(albedos[0], scores[0], a, s).gain if remove_gain else torch.ones(3, dtype=a.dtype)
             for a, s in zip(albedos, scores, strict=True)]
    corrected = albedos * torch.stack(gains)[:, None, :]
    fill = corrected[0][scores[0] > 0].mean(0).expand_as(corrected[0])
    return blend_photos(PoissonSolver(verts, faces), corrected, scores, fill)


def _single_errors(scene) -> list[float]:
    """Each view alone: its de-lit albedo (own light, own exposure) against the truth in its exposure."""
    _, _, _, truth, colors, scores, shading = scene
    return [_error(colors[i] / shading[i], truth * torch.tensor(EXPOSURE[i], dtype=truth.dtype), scores[i] > 0)
            for i in range(len(YAWS))]


def test_stitched_error_within_best_single_view(scene):
    """Acceptance: the blended texture's error on vertices seen by any view is within 1.2× the best
    single view's error on its own visible vertices (each single view in its own exposure)."""
    _, _, _, truth, _, scores, _ = scene
    seen_any = (scores > 0).any(0)
    singles = _single_errors(scene)
    error = _error(_blended(scene).albedo, truth, seen_any)
    coverage = [float((scores[i] > 0).double().mean()) for i in range(len(YAWS))]
    assert float(seen_any.double().mean()) > max(coverage) + 0.15  # the views add real coverage
    assert error <= 1.2 * min(singles), (error, singles)


def test_gain_removal_is_needed(scene):
    """Without the per-channel gains the other views' exposure shows in the blend (the test above fails)."""
    _, _, _, truth, _, scores, _ = scene
    seen_any = (scores > 0).any(0)
    with_gain = _error(_blended(scene).albedo, truth, seen_any)
    without = _error(_blended(scene, remove_gain=False).albedo, truth, seen_any)
    assert without > 1.2 * min(_single_errors(scene)) and without > 1.5 * with_gain


def test_delighting_is_needed(scene):
    """Blending photo colours (each view's light baked in) instead of albedo misses the bound too."""
    _, _, _, truth, _, scores, _ = scene
    seen_any = (scores > 0).any(0)
    lit = _error(_blended(scene, delight=False).albedo, truth, seen_any)
    assert lit > 1.2 * min(_single_errors(scene)) and lit > 1.5 * _error(_blended(scene).albedo, truth, seen_any)


def test_blend_is_the_weighted_mean_where_seen_and_the_fill_elsewhere(scene):
    verts, faces, _, _, colors, scores, _ = scene
    fill = torch.full_like(colors[0], 0.3)
    blended = blend_photos(PoissonSolver(verts, faces), colors, scores, fill)
    w = scores.clamp_min(0)
    mean = (colors * w[..., None]).sum(0) / w.sum(0).clamp_min(1e-12)[:, None]
    assert torch.equal(blended.seen, (scores > 0).any(0)) and not bool(blended.seen.all())
    assert torch.allclose(blended.albedo[blended.seen], mean[blended.seen])
    unseen = blended.albedo[~blended.seen]  # the flat fill's zero gradient continued: harmonic, no overshoot
    assert bool((unseen >= mean[blended.seen].amin(0) - 1e-6).all() & (unseen <= mean[blended.seen].amax(0) + 1e-6).all())


def test_relight_clamps_the_extrapolated_light():
    albedo = torch.full((20, 3), 0.5, dtype=torch.float64)
    shading = torch.linspace(0.5, 1.5, 20, dtype=torch.float64)[:, None].expand(20, 3).clone()
    seen = torch.zeros(20, dtype=torch.bool)
    seen[:10] = True
    lit = relight(albedo, shading, seen)
    low, high = shading[:10, 0].quantile(0.25), shading[:10, 0].quantile(0.75)
    assert torch.allclose(lit[10:], (0.5 * high).expand(10, 3))  # unseen normals keep the seen range
    assert torch.allclose(lit[:2], (0.5 * low).expand(2, 3))
    assert torch.allclose(lit[3:7], 0.5 * shading[3:7])
    assert abs(float(photo_shading(torch.tensor([[0.0, 0.0, 1.0]]), light(0, 0, -2.0)).min()) - SHADING_FLOOR) < 1e-6


def test_exposure_gains_recover_the_camera_gain(scene):
    _, _, _, _, colors, scores, shading = scene
    albedos = colors / shading
    for i in (1, 2):
        gain = exposure_gains(albedos[0], scores[0], albedos[i], scores[i])
        expected = 1.0 / torch.tensor(EXPOSURE[i], dtype=colors.dtype)
        assert gain.common >= 50 and not gain.note
        assert torch.allclose(gain.gain, expected, rtol=0.03)


def test_exposure_gains_need_common_vertices():
    colors = torch.rand(100, 3)
    gain = exposure_gains(colors, torch.ones(100), colors, torch.zeros(100))
    assert torch.equal(gain.gain, torch.ones(3)) and gain.common == 0 and "gain 1" in gain.note


def test_every_view_contributes_and_the_map_shows_it(scene):
    verts, faces, uvs, *_ = scene
    selection = _blended(scene).selection
    shares = triangle_shares(selection, len(YAWS))
    assert all(s > 0.05 for s in shares) and sum(shares) <= 1.0
    assert sum(shares) < 0.99  # the back of the head: no view, fill
    layout = uv_layout(uvs.float(), faces, 64)
    sources = texel_sources(selection, layout)
    assert sources.shape == (layout.n_inside,) and set(sources.unique().tolist()) <= set(range(-1, len(YAWS)))
    texture = torch.full((64, 64, 3), 0.5)
    sheet = source_map(selection, layout, texture, len(YAWS))
    assert sheet.shape == (64, 64, 3) and bool((sheet[~layout.mask] == 0).all())
    red = layout.pad((sources == 0)[:, None].float())[..., 0].bool() & layout.mask
    assert bool(red.any()) and bool((sheet[red][:, 0] > sheet[red][:, 2]).all())  # photo 0 tinted red


def test_detail_comes_from_each_triangles_main_photo(scene):
    verts, faces, uvs, _, colors, scores, _ = scene
    layout = uv_layout(uvs.float(), faces, 64)
    images = [torch.rand(1, 3, 32, 32, dtype=torch.float64) for _ in YAWS]
    screens = [torch.rand(1, len(verts), 3, dtype=torch.float64) * 31 for _ in YAWS]
    selection = _blended(scene).selection
    scales = torch.stack([torch.full_like(colors[0], 1.0 + i) for i in range(len(YAWS))])
    detail = multi_photo_detail(images, screens, colors, scores, scales, faces, layout, selection).residual
    sources = texel_sources(selection, layout)
    for i in range(len(YAWS)):
        own = photo_detail(images[i], screens[i], colors[i], scores[i], faces, layout).residual
        mine = sources == i
        assert torch.allclose(detail[mine], (1.0 + i) * own[mine])
    assert bool((detail[sources < 0] == 0).all())


def test_sample_image_of_head_is_consistent(scene):
    """Sanity of the synthetic scene: the reference view's de-lit samples match the truth where seen."""
    _, _, _, truth, colors, scores, shading = scene
    assert _error(colors[0] / shading[0], truth, scores[0] > 0) < 0.02
