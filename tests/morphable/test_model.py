"""MorphableModel: Eq. 1, normals, adjacency, device moves, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvinvert_cli.morphable.model import MorphableModel, build_point_buf, model_from_arrays, vertex_normals

from .conftest import grid_face, landmark_vertices, smooth_basis


@pytest.fixture
def small():
    verts, tris, uvs = grid_face(8, 9)
    rng = np.random.default_rng(0)
    return model_from_arrays(
        "small", verts, smooth_basis(verts, 4, 0.05, rng), smooth_basis(verts, 3, 0.05, rng),
        np.full((len(verts), 3), 0.6), smooth_basis(verts, 2, 0.1, rng), tris, uvs, landmark_vertices(verts)[:68]
        if len(verts) >= 68 else np.arange(68), mirror_ids=None,
    )


def test_eq1_shape_and_albedo(small):
    a = torch.randn(2, small.n_id)
    e = torch.randn(2, small.n_exp)
    t = torch.randn(2, small.n_tex)
    s = small.shape(a, e)
    ref = small.mean_shape + (small.id_base @ a[1]) + (small.exp_base @ e[1])
    torch.testing.assert_close(s[1], ref)
    torch.testing.assert_close(small.shape()[0], small.mean_shape)
    torch.testing.assert_close(small.albedo(t)[0], small.mean_albedo + small.albedo_base @ t[0])
    assert small.landmarks(s).shape == (2, 68, 3)


def test_point_buf_and_normals_match_scatter(small):
    v = small.shape(torch.randn(1, small.n_id))
    fn = torch.cross(v[0, small.triangles[:, 0]] - v[0, small.triangles[:, 1]],
                     v[0, small.triangles[:, 1]] - v[0, small.triangles[:, 2]], dim=-1)
    fn = torch.nn.functional.normalize(fn, dim=-1)
    acc = torch.zeros_like(v[0]).index_add_(0, small.triangles.reshape(-1), fn.repeat_interleave(3, 0))
    torch.testing.assert_close(small.normals(v)[0], torch.nn.functional.normalize(acc, dim=-1), atol=1e-5, rtol=0)


def test_build_point_buf_padding():
    buf = build_point_buf(np.array([[0, 1, 2], [0, 2, 3]]), 5)
    assert buf.shape == (5, 2)
    assert sorted(buf[0]) == [0, 1] and buf[1].tolist() == [0, 2] and buf[4].tolist() == [2, 2]
    n = vertex_normals(torch.rand(1, 5, 3), torch.tensor([[0, 1, 2], [0, 2, 3]]), torch.from_numpy(buf))
    assert torch.all(n[0, 4] == 0)  # isolated vertex: zero normal


def test_to_and_dtype(small):
    moved = small.to("cpu", torch.float64)
    assert moved.mean_shape.dtype == torch.float64 and moved.triangles.dtype == torch.int64
    assert isinstance(moved, MorphableModel) and moved.name == "small"
    assert small.to("meta").mean_shape.device.type == "meta"


def test_validation(small):
    with pytest.raises(ValueError, match="uvs"):
        model_from_arrays("bad", small.mean_shape.numpy(), np.zeros((small.num_vertices, 3, 0)),
                          np.zeros((small.num_vertices, 3, 0)), None, None, small.triangles.numpy(),
                          np.zeros((3, 2)), np.arange(68))
    with pytest.raises(ValueError, match="out of range"):
        model_from_arrays("bad", np.zeros((4, 3)), np.zeros((4, 3, 0)), np.zeros((4, 3, 0)), None, None,
                          np.array([[0, 1, 9]]), np.zeros((4, 2)), np.zeros(68))
    with pytest.raises(ValueError, match="no PCA albedo"):
        model_from_arrays("noalb", np.zeros((4, 3)), np.zeros((4, 3, 0)), np.zeros((4, 3, 0)), None, None,
                          np.array([[0, 1, 2]]), np.zeros((4, 2)), np.zeros(68)).albedo()
