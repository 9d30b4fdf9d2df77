"""T_coarse (§3.1): the photo Poisson-blended into T_pca."""

from __future__ import annotations

import torch

from mvinvert_cli.texture.coarse import PCA, PHOTO, coarse_texture
from mvinvert_cli.texture.poisson import PoissonSolver, gradient_operator, screened_poisson_reference

from .conftest import grid_mesh, smooth_field


def _setup(n: int = 12):
    verts, faces = grid_mesh(n)
    return verts, faces, PoissonSolver(verts, faces), smooth_field(verts)


def test_consistent_pca_reproduces_the_field():
    verts, faces, solver, field = _setup()
    scores = (verts[:, 0] < 0.3).to(field.dtype) * 0.7
    t_uv = torch.where(scores[:, None] > 0, field, torch.rand_like(field))
    out = coarse_texture(solver, t_uv, scores, field - 0.25)  # PCA texture off by a constant
    assert set(out.selection.unique().tolist()) == {PHOTO, PCA}
    assert (out.colors - field).abs().max() < 1e-6


def test_matches_the_dense_eq6_reference():
    verts, faces, solver, field = _setup()
    scores = (verts[:, 0] < 0).to(field.dtype)
    t_pca = torch.stack([0.2 + 0.1 * verts[:, 1]] * 3, -1)
    out = coarse_texture(solver, field, scores, t_pca)
    photo_triangles = scores[faces].amin(-1) > 0
    assert torch.equal(out.selection == PHOTO, photo_triangles) and (out.selection >= 0).all()
    G = gradient_operator(verts, faces).to_dense()
    targets = torch.where(photo_triangles.repeat_interleave(3)[:, None], G @ field, G @ t_pca)
    expected = screened_poisson_reference(verts, faces, targets, scores, field)
    assert (out.colors - expected).abs().max() < 1e-6


def test_invisible_photo_keeps_t_pca_and_nan_is_ignored():
    verts, faces, solver, field = _setup(8)
    t_pca = field * 0.5
    out = coarse_texture(solver, field, torch.zeros(len(verts), dtype=field.dtype), t_pca)
    assert (out.colors - t_pca).abs().max() < 1e-6 and (out.selection == PCA).all()
    assert out.info.floating == len(verts) and out.notes
    t_uv = field.clone()
    t_uv[::5] = float("nan")
    out = coarse_texture(solver, t_uv, torch.ones(len(verts), dtype=field.dtype), t_pca)
    assert torch.isfinite(out.colors).all()
