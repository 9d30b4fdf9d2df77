"""Mesh gradient operator G and the screened Poisson solver (MvInvert Eq. 6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvinvert_cli.texture.poisson import (
    PoissonSolver,
    apply_gradient,
    basis_gradients,
    gradient_operator,
    screened_poisson,
    screened_poisson_reference,
)

from .conftest import grid_mesh, smooth_field


def test_cardinality(mesh):
    verts, faces = mesh
    G = gradient_operator(verts, faces)
    assert G.shape == (3 * faces.shape[0], verts.shape[0])
    assert G.dtype == verts.dtype
    assert G._nnz() == 9 * faces.shape[0]


def test_gradient_of_linear_function_is_exact():
    verts, faces = grid_mesh(7, curved=False)
    coeff = torch.tensor([0.7, -1.3, 0.0], dtype=verts.dtype)
    values = verts @ coeff + 0.25
    grads = torch.sparse.mm(gradient_operator(verts, faces), values[:, None]).reshape(-1, 3)
    torch.testing.assert_close(grads, coeff.expand_as(grads), atol=1e-12, rtol=0)


def test_gradient_lies_in_the_triangle_plane(mesh):
    verts, faces = mesh
    values = smooth_field(verts)[:, :1]
    grads = torch.sparse.mm(gradient_operator(verts, faces), values).reshape(-1, 3)
    x = verts[faces]
    normal = torch.linalg.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0])
    assert (grads * normal).sum(-1).abs().max() < 1e-12
    # the gradient reproduces the value differences along every edge
    diffs = values[faces[:, 1], 0] - values[faces[:, 0], 0]
    torch.testing.assert_close((grads * (x[:, 1] - x[:, 0])).sum(-1), diffs, atol=1e-12, rtol=0)


def test_degenerate_triangles_get_zero_rows(mesh):
    verts, faces = mesh
    faces = torch.cat([faces, torch.tensor([[0, 0, 1], [2, 3, 4]])])  # repeated vertex; collinear
    verts = verts.clone()
    verts[2:5] = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [1.0, 0, 0]], dtype=verts.dtype)
    dense = gradient_operator(verts, faces).to_dense()
    assert torch.isfinite(dense).all()
    assert dense[-6:].abs().max() == 0


def test_solver_matches_reference(mesh):
    verts, faces = mesh
    solver = PoissonSolver(verts, faces, lam=0.1)
    g = torch.Generator().manual_seed(1)
    targets = torch.randn(3 * faces.shape[0], 3, generator=g, dtype=torch.float64)
    weights = (torch.rand(verts.shape[0], generator=g) > 0.5).double()
    anchors = torch.rand(verts.shape[0], 3, generator=g, dtype=torch.float64)
    colors, info = solver.solve(targets.numpy(), weights.numpy(), anchors.numpy())
    reference = screened_poisson_reference(verts, faces, targets, weights, anchors, lam=0.1)
    np.testing.assert_allclose(colors, reference.numpy(), atol=1e-6)
    assert info.backend == "superlu-pcg" and info.iterations <= 10 and info.floating == 0


def test_unanchored_component_needs_fallback(mesh):
    verts, faces = mesh
    solver = PoissonSolver(verts, faces)
    targets = np.zeros((3 * faces.shape[0], 3))
    with pytest.raises(ValueError, match="fallback"):
        solver.solve(targets, np.zeros(verts.shape[0]), np.zeros((verts.shape[0], 3)))
    fallback = np.full((verts.shape[0], 3), 0.3)
    colors, info = solver.solve(targets, np.zeros(verts.shape[0]), np.zeros((verts.shape[0], 3)), fallback)
    assert info.floating == verts.shape[0]
    np.testing.assert_allclose(colors, 0.3, atol=1e-9)


def test_isolated_vertex_and_degenerate_triangle_give_finite_colours(mesh):
    verts, faces = mesh
    verts = torch.cat([verts, torch.tensor([[5.0, 5, 5], [float("nan"), 0, 0]], dtype=verts.dtype)])
    faces = torch.cat([faces, torch.tensor([[81, 81, 82]])])  # zero-area triangle on the two extras
    solver = PoissonSolver(verts, faces)
    field = smooth_field(verts[:81])
    targets = torch.sparse.mm(gradient_operator(verts, faces), torch.cat([field, torch.zeros(2, 3, dtype=field.dtype)]))
    weights = torch.zeros(verts.shape[0], dtype=verts.dtype)
    weights[:10] = 1
    anchors = torch.cat([field, torch.zeros(2, 3, dtype=field.dtype)])
    fallback = torch.full((verts.shape[0], 3), 0.5, dtype=verts.dtype)
    colors, info = solver.solve(targets.numpy(), weights.numpy(), anchors.numpy(), fallback.numpy())
    assert np.isfinite(colors).all()
    assert info.floating == 2
    np.testing.assert_allclose(colors[:81], field.numpy(), atol=1e-6)
    np.testing.assert_allclose(colors[81:], 0.5, atol=1e-6)


def test_gradcheck():
    verts, faces = grid_mesh(4)
    solver = PoissonSolver(verts, faces, lam=0.1, rtol=1e-14)
    g = torch.Generator().manual_seed(2)
    targets = torch.randn(3 * faces.shape[0], 2, generator=g, dtype=torch.float64, requires_grad=True)
    weights = (0.2 + torch.rand(verts.shape[0], generator=g, dtype=torch.float64)).requires_grad_()
    anchors = torch.rand(verts.shape[0], 2, generator=g, dtype=torch.float64, requires_grad=True)

    def fn(t, w, a):
        return screened_poisson(solver, t, w, a)[0]

    assert torch.autograd.gradcheck(fn, (targets, weights, anchors), eps=1e-6, atol=1e-6)


def test_gradcheck_fallback_of_floating_part():
    verts, faces = grid_mesh(4)
    solver = PoissonSolver(verts, faces, rtol=1e-14)
    targets = torch.randn(3 * faces.shape[0], 1, dtype=torch.float64, requires_grad=True)
    weights = torch.zeros(verts.shape[0], dtype=torch.float64)
    anchors = torch.zeros(verts.shape[0], 1, dtype=torch.float64)
    fallback = torch.rand(verts.shape[0], 1, dtype=torch.float64, requires_grad=True)

    def fn(t, f):
        return screened_poisson(solver, t, weights, anchors, f)[0]

    assert torch.autograd.gradcheck(fn, (targets, fallback), eps=1e-6, atol=1e-6)


def test_apply_gradient_matches_the_sparse_operator(mesh):
    verts, faces = mesh
    values = smooth_field(verts)
    dense = apply_gradient(basis_gradients(verts, faces), faces, values)
    torch.testing.assert_close(dense, torch.sparse.mm(gradient_operator(verts, faces), values))
