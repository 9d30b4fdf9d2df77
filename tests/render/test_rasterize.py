"""Rasteriser: exact coverage on hand-made triangles, agreement with the brute-force reference,
per-mesh face indices, depth order, chunking, differentiable interpolation (gradcheck)."""

from __future__ import annotations

import pytest
import torch

from mvinvert_cli.render.rasterize import Fragments, interpolate, rasterize

from .reference import rasterize_reference

RIGHT = torch.tensor([[[0.0, 0.0, 2.0], [4.0, 0.0, 2.0], [0.0, 4.0, 2.0]]])  # legs along x and y
ONE_FACE = torch.tensor([[0, 1, 2]])


def random_mesh(n_mesh: int, n_verts: int, n_faces: int, size: tuple[int, int], seed: int):
    """Random faces over shared random vertices, without duplicate faces (no exact depth ties)."""
    g = torch.Generator().manual_seed(seed)
    height, width = size
    scale = torch.tensor([width + 6.0, height + 6.0, 2.0])
    verts = torch.rand(n_mesh, n_verts, 3, generator=g) * scale + torch.tensor([-3.0, -3.0, 0.5])
    faces = torch.stack([torch.randperm(n_verts, generator=g)[:3] for _ in range(4 * n_faces)])
    faces = torch.unique(faces.sort(dim=1).values, dim=0)
    faces = faces[torch.randperm(faces.shape[0], generator=g)[:n_faces]]
    return verts, faces


def test_cardinality():
    frags = rasterize(RIGHT.repeat(2, 1, 1), ONE_FACE, (5, 7), faces_per_pixel=2)
    assert isinstance(frags, Fragments)
    assert frags.pix_to_face.shape == (2, 5, 7, 2) and frags.pix_to_face.dtype == torch.long
    assert frags.bary_coords.shape == (2, 5, 7, 2, 3)
    assert frags.zbuf.shape == (2, 5, 7, 2)
    assert (frags.pix_to_face[..., 1] == -1).all()  # one face: the second layer is empty


def test_feature_exact_coverage_and_barycentrics():
    frags = rasterize(RIGHT, ONE_FACE, (6, 6))
    i, j = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    px, py = j + 0.5, i + 0.5
    inside = px + py <= 4.0  # hypotenuse x + y = 4, edges inclusive: (0.5, 3.5) etc. are covered
    assert torch.equal(frags.pix_to_face[0, ..., 0] >= 0, inside)
    assert int(inside.sum()) == 10
    expect = torch.stack([1 - px / 4 - py / 4, px / 4, py / 4], dim=-1)
    torch.testing.assert_close(frags.bary_coords[0, ..., 0, :][inside], expect[inside].float())
    assert (frags.bary_coords[0, ..., 0, :][~inside] == 0).all()
    assert (frags.zbuf[0, ..., 0][inside] == 2.0).all() and (frags.zbuf[0, ..., 0][~inside] == -1).all()


def test_feature_winding_does_not_matter():
    a = rasterize(RIGHT, ONE_FACE, (6, 6))
    b = rasterize(RIGHT, ONE_FACE.flip(1), (6, 6))
    assert torch.equal(a.pix_to_face, b.pix_to_face)
    torch.testing.assert_close(a.bary_coords.flip(-1), b.bary_coords)


def test_feature_shared_edge_no_gap_lower_index_wins():
    # Square [0,4]² split along the diagonal y = x, which passes through the pixel centres (k+.5, k+.5).
    verts = torch.tensor([[[0.0, 0.0, 1.0], [4.0, 0.0, 1.0], [4.0, 4.0, 1.0], [0.0, 4.0, 1.0]]])
    faces = torch.tensor([[0, 2, 3], [0, 1, 2]])  # face 0 below the diagonal (y ≥ x), face 1 above
    p2f = rasterize(verts, faces, (4, 4)).pix_to_face[0, ..., 0]
    i, j = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    assert torch.equal(p2f, torch.where(i >= j, 0, 1))  # diagonal centres: tie → face 0


def test_feature_depth_order_and_k():
    near = RIGHT.clone()
    far = RIGHT.clone()
    far[..., 2] = 3.0
    verts = torch.cat([far, near], dim=1)  # face 0 far, face 1 near
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    frags = rasterize(verts, faces, (4, 4), faces_per_pixel=2)
    covered = frags.pix_to_face[0, ..., 0] >= 0
    assert (frags.pix_to_face[0, ..., 0][covered] == 1).all()
    assert (frags.pix_to_face[0, ..., 1][covered] == 0).all()
    assert (frags.zbuf[0, ..., 0][covered] == 2.0).all() and (frags.zbuf[0, ..., 1][covered] == 3.0).all()


def test_feature_clipping_and_undrawable():
    verts = torch.tensor(
        [
            [
                [-10.0, -10.0, 1.0],
                [30.0, -10.0, 1.0],
                [-10.0, 30.0, 1.0],  # covers the whole image
                [0.0, 0.0, 0.5],
                [4.0, 0.0, -0.1],
                [0.0, 4.0, 0.5],  # a vertex behind the camera
                [0.0, 0.0, 0.2],
                [2.0, 2.0, 0.2],
                [4.0, 4.0, 0.2],  # zero area
            ]
        ]
    )
    faces = torch.arange(9).reshape(3, 3)
    p2f = rasterize(verts, faces, (5, 3)).pix_to_face
    assert (p2f[..., 0] == 0).all()


def test_feature_batch_indices_are_per_mesh():
    verts = torch.cat([RIGHT, RIGHT + torch.tensor([2.0, 0.0, 0.0])])
    frags = rasterize(verts, ONE_FACE, (4, 8))
    assert set(frags.pix_to_face.unique().tolist()) == {-1, 0}
    assert not torch.equal(frags.pix_to_face[0], frags.pix_to_face[1])


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("perspective_correct", [False, True])
@pytest.mark.parametrize("chunk_size", [7, 1 << 20])
def test_feature_matches_reference(k, perspective_correct, chunk_size):
    verts, faces = random_mesh(2, 20, 40, (17, 23), seed=k + 10 * perspective_correct)
    got = rasterize(verts, faces, (17, 23), k, perspective_correct=perspective_correct, chunk_size=chunk_size)
    ref = rasterize_reference(verts, faces, (17, 23), k, perspective_correct=perspective_correct)
    assert (ref.pix_to_face >= 0).sum() > 100
    assert torch.equal(got.pix_to_face, ref.pix_to_face)
    torch.testing.assert_close(got.bary_coords, ref.bary_coords.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(got.zbuf, ref.zbuf.float(), atol=1e-5, rtol=1e-5)


def test_feature_elementwise_coverage_path_matches_reference(monkeypatch):
    # The path non-CPU devices take (no GEMM, so TF32 settings cannot blur coverage), run on CPU.
    import mvinvert_cli.render.rasterize as module

    monkeypatch.setattr(module, "_GEMM_DEVICES", frozenset())
    verts, faces = random_mesh(2, 20, 40, (17, 23), seed=4)
    got = rasterize(verts, faces, (17, 23), 2, perspective_correct=True)
    ref = rasterize_reference(verts, faces, (17, 23), 2, perspective_correct=True)
    assert torch.equal(got.pix_to_face, ref.pix_to_face)


def test_feature_far_from_origin_subpixel_triangles():
    # Tiny triangles near (1000, 1000): local coordinates keep float32 coverage exact.
    verts, faces = random_mesh(1, 60, 80, (6, 6), seed=3)
    verts = verts * torch.tensor([0.5, 0.5, 1.0])
    shift = torch.tensor([1000.0, 1000.0, 0.0])
    got = rasterize(verts + shift, faces, (1006, 1006)).pix_to_face[:, 1000:, 1000:]
    ref = rasterize_reference(verts, faces, (6, 6)).pix_to_face
    assert torch.equal(got, ref)


def test_feature_interpolate_affine_attribute_is_exact():
    verts, faces = random_mesh(1, 15, 30, (12, 12), seed=5)
    frags = rasterize(verts, faces, (12, 12))
    xy = interpolate(frags, faces, verts[..., :2])  # screen position interpolates to the pixel centre
    covered = frags.mask[0]
    i, j = torch.nonzero(covered, as_tuple=True)
    torch.testing.assert_close(xy[0][covered], torch.stack([j + 0.5, i + 0.5], -1).float(), atol=1e-4, rtol=0)
    assert (xy[0][~covered] == 0).all()


def test_gradcheck_interpolate():
    verts = torch.tensor(
        [[[0.3, 0.2, 2.0], [5.7, 0.9, 2.5], [1.1, 5.6, 3.0], [6.2, 6.1, 2.2]]], dtype=torch.float64
    ).requires_grad_()
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    attrs = torch.rand(1, 4, 2, dtype=torch.float64, requires_grad=True)

    def run(v, a):
        frags = rasterize(v, faces, (6, 6), perspective_correct=True)
        return interpolate(frags, faces, a)

    assert torch.autograd.gradcheck(run, (verts, attrs), eps=1e-6, atol=1e-6)


def test_feature_empty_mesh():
    verts = torch.rand(2, 5, 3) + 1
    no_faces = torch.zeros(0, 3, dtype=torch.long)
    frags = rasterize(verts, no_faces, (4, 5))
    assert (frags.pix_to_face == -1).all() and (frags.zbuf == -1).all() and (frags.bary_coords == 0).all()
    assert (interpolate(frags, no_faces, torch.rand(2, 5, 3)) == 0).all()


def test_exception():
    with pytest.raises(ValueError):
        rasterize(RIGHT[0], ONE_FACE, (4, 4))
    with pytest.raises(ValueError):
        rasterize(RIGHT, ONE_FACE[0], (4, 4))
    frags = rasterize(RIGHT, ONE_FACE, (4, 4))
    with pytest.raises(ValueError):
        interpolate(frags, ONE_FACE, torch.rand(2, 3, 3))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    verts, faces = random_mesh(2, 40, 80, (31, 29), seed=7)
    cpu = rasterize(verts, faces, (31, 29), 2, perspective_correct=True)
    gpu = rasterize(verts.cuda(), faces.cuda(), (31, 29), 2, perspective_correct=True)
    assert gpu.pix_to_face.is_cuda
    assert torch.equal(cpu.pix_to_face, gpu.pix_to_face.cpu())
    torch.testing.assert_close(cpu.bary_coords, gpu.bary_coords.cpu(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("k", [1, 2])
def test_feature_big_triangles_match_reference(k):
    # Boxes wider than the last bucket edge go through exact enumeration (chunked).
    verts, faces = random_mesh(1, 10, 12, (70, 45), seed=11)
    for chunk in (50, 1 << 20):
        got = rasterize(verts, faces, (70, 45), k, chunk_size=chunk)
        ref = rasterize_reference(verts, faces, (70, 45), k)
        assert torch.equal(got.pix_to_face, ref.pix_to_face)
        torch.testing.assert_close(got.bary_coords, ref.bary_coords.float(), atol=1e-5, rtol=0)
