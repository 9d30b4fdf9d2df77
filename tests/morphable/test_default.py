"""The embedded default model: canonical mesh decoding (FORMATS.md §8), subdivision, embedding."""

from __future__ import annotations

import struct
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mvinvert_cli.errors import WeightsError
from mvinvert_cli.morphable.default import (
    DIFFERENCES_FROM_BFM,
    METADATA_NAME,
    canonical_points,
    decode_canonical_mesh,
    load_default_model,
    read_canonical_mesh,
    subdivide,
)


@pytest.fixture(scope="module")
def model(landmarker_task):
    return load_default_model(task_path=landmarker_task)


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _message(verts_uv: np.ndarray, tris: np.ndarray, packed: bool) -> bytes:
    """A GeometryPipelineMetadata with field 1 = Mesh3d(vertex_buffer=3, index_buffer=4)."""
    if packed:
        floats = verts_uv.astype("<f4").tobytes()
        idx = b"".join(_varint(int(i)) for i in tris.reshape(-1))
        mesh = b"\x08\x00\x10\x00" + b"\x1a" + _varint(len(floats)) + floats + b"\x22" + _varint(len(idx)) + idx
    else:
        mesh = b"\x08\x00" + b"".join(b"\x1d" + struct.pack("<f", f) for f in verts_uv.reshape(-1))
        mesh += b"".join(b"\x20" + _varint(int(i)) for i in tris.reshape(-1))
    return b"\x0a" + _varint(len(mesh)) + mesh + b"\x18\x01"


class TestDecode:
    @pytest.mark.parametrize("packed", [False, True])
    def test_roundtrip_both_encodings(self, packed):
        rng = np.random.default_rng(0)
        table = rng.normal(size=(7, 5)).astype(np.float32)
        tris = np.array([[0, 1, 2], [2, 3, 300 % 7], [4, 5, 6]])
        verts, uvs, got = decode_canonical_mesh(_message(table, tris, packed))
        np.testing.assert_array_equal(verts, table[:, :3])
        np.testing.assert_array_equal(uvs, table[:, 3:])
        np.testing.assert_array_equal(got, tris)

    def test_bad_messages(self):
        with pytest.raises(ValueError):
            decode_canonical_mesh(b"\x0a\x05\x1d\x00")  # truncated
        with pytest.raises(ValueError, match="bad mesh"):
            decode_canonical_mesh(_message(np.zeros(11), np.array([[0, 1, 1]]), True))  # 11 floats
        with pytest.raises(ValueError, match="out of range"):
            decode_canonical_mesh(_message(np.zeros((2, 5)), np.array([[0, 1, 2]]), False))
        with pytest.raises(ValueError, match="canonical_mesh"):
            decode_canonical_mesh(b"\x18\x01")

    def test_real_task_file(self, landmarker_task):
        verts, uvs, tris = read_canonical_mesh(landmarker_task)
        assert verts.shape == (468, 3) and uvs.shape == (468, 2) and tris.shape == (898, 3)
        np.testing.assert_allclose(verts[0], [0.0, -3.406404, 5.979507], atol=1e-5)
        np.testing.assert_allclose(uvs[0], [0.49998, 0.65253], atol=1e-4)
        assert 0.0076 - 1e-4 <= uvs.min() and uvs.max() <= 0.9924 + 1e-4

    def test_not_a_task_file(self, tmp_path):
        bad = tmp_path / "face_landmarker.task"
        bad.write_bytes(b"not a zip")
        with pytest.raises(WeightsError, match="canonical face mesh"):
            read_canonical_mesh(bad)
        with zipfile.ZipFile(tmp_path / "empty.task", "w") as z:
            z.writestr("other.txt", "x")
        with pytest.raises(WeightsError):
            read_canonical_mesh(tmp_path / "empty.task")
        assert METADATA_NAME.endswith(".binarypb")


class TestSubdivide:
    def test_counts_and_midpoints(self):
        tris = np.array([[0, 1, 2], [0, 2, 3]])
        emb = sp.identity(4, format="csr")
        new_tris, new_emb = subdivide(tris, emb)
        assert new_tris.shape == (8, 3) and new_emb.shape == (4 + 5, 4)  # 5 unique edges
        pts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
        new_pts = new_emb @ pts
        np.testing.assert_allclose(new_pts[:4], pts)
        mids = {tuple(np.round(p, 6)) for p in new_pts[4:]}
        assert (0.5, 0.5, 0.0) in mids and (0.5, 0.0, 0.0) in mids
        # winding preserved: all normals +z
        e1 = new_pts[new_tris[:, 1]] - new_pts[new_tris[:, 0]]
        e2 = new_pts[new_tris[:, 2]] - new_pts[new_tris[:, 0]]
        assert (np.cross(e1, e2)[:, 2] > 0).all()


class TestDefaultModel:
    def test_sizes(self, model):
        assert 25_000 <= model.num_vertices <= 35_000
        assert model.num_triangles == 898 * 64
        assert model.n_id == model.n_exp == model.n_tex == 0 and not model.has_albedo
        assert model.point_buf.max() == model.num_triangles
        assert set(DIFFERENCES_FROM_BFM) <= set(model.notes)

    def test_uvs_interpolated(self, model, landmarker_task):
        verts, uvs, _ = read_canonical_mesh(landmarker_task)
        flipped = np.stack([uvs[:, 0], 1.0 - uvs[:, 1]], axis=1)  # MediaPipe v down → ours v up
        np.testing.assert_allclose(model.uvs[:468].numpy(), flipped, atol=1e-6)
        assert model.uvs.min() >= flipped.min() - 1e-6 and model.uvs.max() <= flipped.max() + 1e-6
        # v up: the forehead (top of the face, largest y) has larger v than the chin
        top, bottom = model.mean_shape[:, 1].argmax(), model.mean_shape[:, 1].argmin()
        assert model.uvs[top, 1] > model.uvs[bottom, 1]

    def test_embedding_reproduces_mean(self, model):
        points = torch.from_numpy(canonical_points())[None]
        torch.testing.assert_close(model.from_points(points), model.mean_shape[None], atol=1e-6, rtol=0)
        torch.testing.assert_close(model.embed_weights.sum(1), torch.ones(model.num_vertices))

    def test_units_and_orientation(self, model):
        v = model.mean_shape
        width = (v[:, 0].max() - v[:, 0].min()).item()
        assert 1.3 < width < 1.7  # ≈ 15 cm in decimetres
        assert v[4, 2] == v[:, 2].max()  # MediaPipe 4 = nose tip, nearest the camera (+z)
        assert v[33, 0] < 0 < v[263, 0]  # subject's right eye on the image left (x < 0)
        assert model.normals(v[None])[0, :, 2].mean() > 0.5  # outward, facing +z

    def test_landmarks_and_mirror(self, model):
        lm = model.mean_shape[model.landmark_ids]
        assert len(set(model.landmark_ids.tolist())) == 68
        assert lm[8, 1] < lm[30, 1] < lm[27, 1]  # chin below nose tip below nose bridge
        mirrored = model.mean_shape[model.mirror_ids] * torch.tensor([-1.0, 1.0, 1.0])
        assert (mirrored - model.mean_shape).norm(dim=1).max() < 1e-3
        assert 0.8 < model.skin_mask.float().mean() < 1.0  # eyes and mouth excluded
        v = model.mean_shape
        for ring in (range(36, 42), range(42, 48), range(60, 68)):  # eye / inner-mouth centres: not skin
            centre = lm[list(ring), :2].mean(0)
            assert not model.skin_mask[(v[:, :2] - centre).norm(dim=1).argmin()]
        cheek = (lm[2, :2] + lm[31, :2]) / 2
        assert model.skin_mask[(v[:, :2] - cheek).norm(dim=1).argmin()]

    def test_levels_zero(self, landmarker_task):
        coarse = load_default_model(levels=0, task_path=landmarker_task)
        assert coarse.num_vertices == 468 and coarse.num_triangles == 898


def test_smooth_normals_from_the_coarse_mesh(model, landmarker_task):
    from mvinvert_cli.morphable.model import vertex_normals

    coarse = load_default_model(levels=0, task_path=landmarker_task)
    v = model.mean_shape[None]
    dense_normals = model.normals(v)
    coarse_normals = vertex_normals(v[:, :468], coarse.triangles, coarse.point_buf)
    torch.testing.assert_close(dense_normals[:, :468], coarse_normals, atol=1e-5, rtol=0)
    # midpoints: the normalised mean of their end points' normals (smooth, not the flat facet normal)
    assert torch.allclose(dense_normals.norm(dim=-1), torch.ones(1, model.num_vertices), atol=1e-5)
    flat = vertex_normals(v, model.triangles, model.point_buf)
    assert (dense_normals - flat).norm(dim=-1).max() > 0.05
