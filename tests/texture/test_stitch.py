"""Multi-view stitch (Eq. 5 + Eq. 6): exactness, seams, bad inputs, gradients."""

from __future__ import annotations

import torch

from mvinvert_cli.texture.poisson import PoissonSolver, gradient_operator
from mvinvert_cli.texture.stitch import gradient_targets, stitch

from .conftest import grid_mesh, smooth_field


def _setup(n: int = 15):
    verts, faces = grid_mesh(n)
    return verts, faces, PoissonSolver(verts, faces, lam=0.1), smooth_field(verts)


def _garbage_where_unseen(colors: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    noise = torch.rand(colors.shape, generator=torch.Generator().manual_seed(3), dtype=colors.dtype)
    return torch.where(scores[..., None] > 0, colors, noise)


def test_smoke_and_cardinality():
    verts, faces, solver, field = _setup(6)
    out = stitch(solver, field, torch.ones(len(verts), dtype=field.dtype), field[None] + 0.1,
                 torch.full((1, len(verts)), 0.5, dtype=field.dtype))
    assert out.colors.shape == field.shape and out.colors.dtype == field.dtype
    assert out.selection.shape == (faces.shape[0],) and out.selection.dtype == torch.long
    assert (out.selection == 0).all()  # the photo's confidence is higher everywhere
    assert out.notes == ()


def test_gradient_targets_follow_the_selection():
    verts, faces, solver, field = _setup(5)
    colors = torch.stack([field, 2 * field, -field])
    selection = torch.randint(-1, 3, (faces.shape[0],), generator=torch.Generator().manual_seed(0))
    targets = gradient_targets(solver.basis("cpu", field.dtype), faces, colors, selection).reshape(-1, 3, 3)
    G = gradient_operator(verts, faces).to_dense()
    for t in range(faces.shape[0]):
        expected = torch.zeros(3, 3, dtype=field.dtype) if selection[t] < 0 else \
            (G @ colors[selection[t]]).reshape(-1, 3, 3)[t]
        torch.testing.assert_close(targets[t], expected)


def test_smooth_field_is_reproduced_exactly():
    verts, faces, solver, field = _setup()
    x, y = verts[:, 0], verts[:, 1]
    photo_scores = torch.where(x < 0.2, 0.9 - 0.3 * y.abs(), torch.zeros_like(x))
    view_scores = torch.stack([torch.where(x > -0.4, 0.5 + 0.4 * x, torch.zeros_like(x)),
                               torch.where(y > -0.1, 0.95 * torch.ones_like(y), torch.zeros_like(y))])
    views = _garbage_where_unseen(field.expand(2, -1, -1), view_scores)
    photo = _garbage_where_unseen(field, photo_scores)
    out = stitch(solver, photo, photo_scores, views, view_scores)
    assert set(out.selection.unique().tolist()) == {0, 1, 2}  # every view contributes triangles
    assert (out.colors - field).abs().max() < 1e-6


def test_constant_offset_views_leave_no_seam_and_keep_the_photo():
    verts, faces, solver, field = _setup()
    x = verts[:, 0]
    photo_scores = torch.where(x < 0.0, torch.full_like(x, 0.6), torch.zeros_like(x))
    view_scores = torch.stack([torch.where(x > -0.5, torch.full_like(x, 0.9), torch.zeros_like(x)),
                               torch.where(x > 0.3, torch.full_like(x, 1.0), torch.zeros_like(x))])
    views = torch.stack([field + 0.2, field - 0.15])  # the GAN views are off by a constant
    out = stitch(solver, field, photo_scores, views, view_scores)
    assert set(out.selection.unique().tolist()) == {0, 1, 2}
    seen = photo_scores > 0
    assert (out.colors[seen] - field[seen]).abs().max() < 1e-6  # reference colours kept
    G = gradient_operator(verts, faces)
    jump = torch.sparse.mm(G, out.colors - field)  # gradient error, across selection boundaries too
    assert jump.abs().max() < 1e-5
    # a plain per-vertex best-view copy has the seam the stitch removes
    best = torch.cat([photo_scores[None], view_scores]).argmax(0)
    naive = torch.stack([field, *views]).gather(0, best.view(1, -1, 1).expand(1, -1, 3))[0]
    assert torch.sparse.mm(G, naive - field).abs().max() > 0.1


def test_all_invisible_view_is_ignored():
    verts, faces, solver, field = _setup(8)
    photo_scores = torch.ones(len(verts), dtype=field.dtype)
    views = torch.rand(1, len(verts), 3, dtype=field.dtype)
    out = stitch(solver, field, photo_scores, views, torch.zeros(1, len(verts), dtype=field.dtype))
    assert (out.selection == 0).all()
    assert (out.colors - field).abs().max() < 1e-6


def test_all_invisible_photo_and_views_give_finite_fill():
    verts, faces, solver, field = _setup(8)
    zeros = torch.zeros(len(verts), dtype=field.dtype)
    out = stitch(solver, field, zeros, field[None], zeros[None])
    assert torch.isfinite(out.colors).all()
    assert (out.selection == -1).all()
    assert out.info.floating == len(verts)
    assert any("seen by no view" in note for note in out.notes)


def test_unanchored_photo_uses_the_views_and_fallback():
    verts, faces, solver, field = _setup(8)
    zeros = torch.zeros(len(verts), dtype=field.dtype)
    out = stitch(solver, field, zeros, (field + 0.1)[None], zeros[None] + 1, fallback=field + 0.1)
    assert (out.colors - (field + 0.1)).abs().max() < 1e-6
    assert any("does not anchor" in note for note in out.notes)


def test_nan_samples_are_ignored():
    verts, faces, solver, field = _setup(10)
    photo = field.clone()
    photo[::7] = float("nan")
    views = (field + 0.3).expand(2, -1, -1).clone()
    views[0, 3:40] = float("nan")
    scores = torch.ones(2, len(verts), dtype=field.dtype)
    photo_scores = torch.ones(len(verts), dtype=field.dtype)
    photo_scores[5] = float("nan")
    out = stitch(solver, photo, photo_scores, views, scores)
    assert torch.isfinite(out.colors).all()
    assert any("non-finite" in note for note in out.notes)
    assert (out.colors - field).abs().max() < 1e-6  # gradients agree; the finite photo anchors


def test_zero_area_triangles_give_no_nans():
    verts, faces = grid_mesh(8)
    verts = verts.clone()
    verts[9] = verts[10]  # collapse an edge: two triangles become degenerate
    faces = torch.cat([faces, torch.tensor([[3, 3, 3]])])
    solver = PoissonSolver(verts, faces)
    field = smooth_field(verts)
    ones = torch.ones(len(verts), dtype=field.dtype)
    out = stitch(solver, field, ones * (verts[:, 0] < 0), (field + 0.2)[None], ones[None] * 0.5)
    assert torch.isfinite(out.colors).all()
    assert (out.colors - field).abs().max() < 1e-6


def test_gradients_flow_to_the_views():
    verts, faces, solver, field = _setup(6)
    x = verts[:, 0]
    photo_scores = (x < 0).to(field.dtype)
    views = (field + 0.1).clone().requires_grad_()
    out = stitch(solver, field, photo_scores, views[None], torch.ones(1, len(verts), dtype=field.dtype))
    out.colors[x > 0.5].sum().backward()
    assert torch.isfinite(views.grad).all() and views.grad.abs().sum() > 0


def test_gradcheck_through_selection_and_solve():
    verts, faces = grid_mesh(3)
    solver = PoissonSolver(verts, faces, rtol=1e-14)
    field = smooth_field(verts)
    x = verts[:, 0]
    photo_scores = (x < 0).to(field.dtype)
    view_scores = torch.stack([torch.full_like(x, 0.5), (x > 0.3).to(field.dtype)])
    views = (field + 0.1).expand(2, -1, -1).clone().requires_grad_()
    photo = field.clone().requires_grad_()

    def fn(p, v):
        return stitch(solver, p, photo_scores, v, view_scores).colors

    assert torch.autograd.gradcheck(fn, (photo, views), eps=1e-6, atol=1e-6)


def test_matches_the_previous_implementation_on_a_fixture():
    """tests/texture/data/stitch_694016d.npz: inputs and outputs of ``stitch`` as implemented at
    commit 694016d (before issue 20's bookkeeping rewrite) on a 24² curved grid plus a separate,
    unanchored 4² component, with a non-finite sample, triangles no view sees, float64 and float32,
    with and without fallback colours."""
    from pathlib import Path

    import numpy as np

    data = np.load(Path(__file__).parent / "data" / "stitch_694016d.npz")
    t = {k: torch.from_numpy(data[k]) for k in ("verts", "faces", "photo", "photo_scores", "view_colors",
                                                "view_scores", "fallback")}
    solver = PoissonSolver(t["verts"], t["faces"], lam=0.1)
    for name in ("fallback", "none"):
        for dtype in (torch.float64, torch.float32):
            key = f"{name}_{str(dtype).split('.')[-1]}"
            out = stitch(solver, t["photo"].to(dtype), t["photo_scores"].to(dtype), t["view_colors"].to(dtype),
                         t["view_scores"].to(dtype), fallback=t["fallback"].to(dtype) if name == "fallback" else None)
            assert torch.equal(out.selection, torch.from_numpy(data[f"selection_{key}"])), key
            expected = torch.from_numpy(data[f"colors_{key}"])
            tolerance = 1e-12 if dtype == torch.float64 else 1e-6
            assert (out.colors - expected).abs().max() <= tolerance, key
            assert list(out.notes) == data[f"notes_{key}"].tolist(), key


def test_stitch_runs_on_one_cpu_thread_and_restores_the_pool(monkeypatch):
    verts, faces, solver, field = _setup(6)
    seen = []
    import mvinvert_cli.texture.stitch as stitch_module

    original = stitch_module.poisson_blend
    monkeypatch.setattr(stitch_module, "poisson_blend",
                        lambda *a, **k: seen.append(torch.get_num_threads()) or original(*a, **k))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        stitch(solver, field, torch.ones(len(verts), dtype=field.dtype), field[None],
               torch.full((1, len(verts)), 0.5, dtype=field.dtype))
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
