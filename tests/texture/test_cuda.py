"""The texture stages on CUDA agree with the CPU (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from mvinvert_cli.render.bake import bake, uv_layout
from mvinvert_cli.render.camera import Camera
from mvinvert_cli.texture.coarse import coarse_texture
from mvinvert_cli.texture.poisson import PoissonSolver
from mvinvert_cli.texture.sample import sample_uv_texture, sample_vertices
from mvinvert_cli.texture.stitch import stitch

from .conftest import grid_mesh, smooth_field

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _on(device: str):
    verts, faces = grid_mesh(12)
    field = smooth_field(verts)
    x = verts[:, 0]
    photo_scores = (x < 0.2).double()
    view_scores = torch.stack([(x > -0.3).double() * 0.8, (x > 0.5).double()])
    views = torch.stack([field + 0.1, field - 0.2]) + 0.01 * torch.randn(2, *field.shape, dtype=field.dtype,
                                                                         generator=torch.Generator().manual_seed(0))
    solver = PoissonSolver(verts, faces)
    move = lambda t: t.to(device)  # noqa: E731
    views_dev = move(views).requires_grad_()
    stitched = stitch(solver, move(field), move(photo_scores), views_dev, move(view_scores))
    stitched.colors.sum().backward()
    coarse = coarse_texture(solver, move(field), move(photo_scores), move(field * 0.8))
    image = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    screen = Camera().project((verts * 0.8).float())[None]
    sampled = sample_vertices(move(image), move(screen), move(faces))
    layout = uv_layout(move((verts[:, :2].float() + 1) / 2), move(faces), 64)
    uv_tex, _ = sample_uv_texture(move(image), move(screen), move(faces), layout)
    baked = bake(stitched.colors.detach().float(), move(faces), layout)
    return [stitched.colors.detach(), views_dev.grad, coarse.colors, sampled.colors, sampled.visible,
            sampled.boundary_distance, uv_tex, baked.texture]


def test_cuda_matches_cpu():
    for cpu, gpu in zip(_on("cpu"), _on("cuda"), strict=True):
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
