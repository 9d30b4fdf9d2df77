"""BFM 2009 loaders on tiny synthetic files in the real layouts (FORMATS.md §1b–§1f)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch

from mvinvert_cli.errors import WeightsError
from mvinvert_cli.morphable import bfm
from mvinvert_cli.morphable.bfm import (
    UV_FIX,
    cache_path,
    convert_bfm09,
    front_uvs,
    load_bfm,
    load_bfm09_files,
    load_front_mat,
    read_exp_pca,
)

from .conftest import make_tiny_bfm, write_exp_pca


def _files(tiny):
    p = tiny.paths
    return (p["01_MorphableModel.mat"], p["Exp_Pca.bin"], p["BFM_front_idx.mat"], p["BFM_exp_idx.mat"],
            p["facemodel_info.mat"], p["std_exp.txt"], p["BFM_UV.mat"])


class TestExpPca:
    def test_layout_pc_major(self, tmp_path):
        n, k = 5, 3
        mu = np.arange(3 * n, dtype=np.float32)
        pc = np.arange(3 * n * k, dtype=np.float32).reshape(3 * n, k) * 0.5
        path = tmp_path / "Exp_Pca.bin"
        write_exp_pca(path, mu, pc)
        raw = path.read_bytes()
        assert len(raw) == 4 + 4 * 3 * n + 4 * 3 * n * k
        assert np.frombuffer(raw[:4], "<i4")[0] == k
        # PC-major: the first 3N floats after the mean are component 0 of every row
        np.testing.assert_array_equal(np.frombuffer(raw, "<f4", count=3 * n, offset=4 + 12 * n), pc[:, 0])
        got_mu, got_pc = read_exp_pca(path, num_vertices=n)
        np.testing.assert_array_equal(got_mu, mu)
        np.testing.assert_array_equal(got_pc, pc)

    def test_real_size_formula(self):
        assert 4 + 4 * 3 * 53215 + 4 * 79 * 3 * 53215 == 51_086_404

    @pytest.mark.parametrize("cut", [1, 4, 100])
    def test_truncated(self, tmp_path, cut):
        path = tmp_path / "Exp_Pca.bin"
        write_exp_pca(path, np.zeros(15, np.float32), np.zeros((15, 2), np.float32))
        path.write_bytes(path.read_bytes()[:-cut])
        with pytest.raises(WeightsError, match="expected"):
            read_exp_pca(path, num_vertices=5)


class TestConvert:
    @pytest.mark.parametrize("full_uv", [True, False])
    def test_front_model_matches_ground_truth(self, tmp_path, full_uv):
        tiny = make_tiny_bfm(tmp_path, full_uv=full_uv)
        model = load_bfm09_files(*_files(tiny), use_cache=False)
        v = len(tiny.mean)
        assert model.num_vertices == v and model.num_triangles == len(tiny.tri)
        mean = tiny.mean - tiny.mean.mean(0)  # recenter=True
        np.testing.assert_allclose(model.mean_shape.numpy(), mean, atol=1e-5)
        np.testing.assert_allclose(model.id_base.numpy(), tiny.id_base, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(model.exp_base.numpy(), tiny.exp_base, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(model.mean_albedo.numpy(), tiny.mean_tex / 255, atol=1e-5)
        np.testing.assert_allclose(model.albedo_base.numpy(), tiny.tex_base / 255, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(model.triangles.numpy(), tiny.tri)
        np.testing.assert_array_equal(model.landmark_ids.numpy(), tiny.keypoints)
        np.testing.assert_array_equal(model.skin_mask.numpy(), tiny.skin)
        np.testing.assert_allclose(model.uvs.numpy(), tiny.uvs, atol=1e-6)
        # point_buf: 1-based padding F+1 → F; every listed face touches its vertex
        pb = model.point_buf.numpy()
        assert pb.max() == model.num_triangles
        rows, cols = np.nonzero(pb < model.num_triangles)
        assert (tiny.tri[pb[rows, cols]] == rows[:, None]).any(axis=1).all()

    def test_component_counts_and_scaling(self, tiny_bfm):
        arrays = convert_bfm09(*_files(tiny_bfm)[:6])
        v = len(tiny_bfm.mean)
        assert arrays["meanshape"].shape == (1, 3 * v)
        assert arrays["idBase"].shape == (3 * v, 12) and arrays["exBase"].shape == (3 * v, 7)
        assert arrays["texBase"].shape == (3 * v, 9)
        # meanshape in decimetres: /1e5 of the micrometre file
        np.testing.assert_allclose(arrays["meanshape"].reshape(-1, 3), tiny_bfm.mean, atol=1e-5)

    def test_normals_point_out(self, tiny_bfm):
        model = load_bfm09_files(*_files(tiny_bfm), use_cache=False)
        n = model.normals(model.mean_shape[None])[0]
        assert n[:, 2].mean() > 0.7
        torch.testing.assert_close(n.norm(dim=1), torch.ones(model.num_vertices), atol=1e-5, rtol=0)

    def test_off_by_one_index_is_caught(self, tiny_bfm):
        path = tiny_bfm.paths["BFM_front_idx.mat"]
        idx = scipy.io.loadmat(path)["idx"]
        scipy.io.savemat(path, {"idx": idx - 1})  # 0-based by mistake: contains 0
        with pytest.raises(WeightsError, match="indices outside"):
            load_bfm09_files(*_files(tiny_bfm), use_cache=False)

    def test_missing_key(self, tiny_bfm):
        scipy.io.savemat(tiny_bfm.paths["facemodel_info.mat"], {"tri": np.ones((3, 3))})
        with pytest.raises(WeightsError, match="missing key"):
            load_bfm09_files(*_files(tiny_bfm), use_cache=False)

    def test_std_exp_mismatch(self, tiny_bfm):
        tiny_bfm.paths["std_exp.txt"].write_text("1 2 3\n")
        with pytest.raises(WeightsError, match="expression components"):
            load_bfm09_files(*_files(tiny_bfm), use_cache=False)


class TestUV:
    def test_three_vertex_fix_on_real_topology(self):
        rng = np.random.default_rng(1)
        n_full = 53490
        trim = rng.permutation(n_full)[:53215] + 1
        uv_full = rng.uniform(size=(n_full, 2))
        idx = np.arange(1, 53216)  # identity front selection to see every vertex
        out = front_uvs(uv_full, idx, trim)
        for bad, ring in UV_FIX:
            np.testing.assert_allclose(out[bad - 1], uv_full[trim[[r - 1 for r in ring]] - 1].mean(0), atol=1e-6)
        untouched = np.setdiff1d(np.arange(53215), [b - 1 for b, _ in UV_FIX])
        np.testing.assert_allclose(out[untouched], uv_full[trim[untouched] - 1], atol=1e-6)

    def test_exp_topology_file_used_directly(self):
        uv = np.random.default_rng(2).uniform(size=(53215, 2))
        trim = np.arange(1, 53216)
        out = front_uvs(uv, np.array([1, 10032, 53215]), trim)
        np.testing.assert_allclose(out, uv[[0, 10031, 53214]], atol=1e-6)  # no fix: already fixed


class TestCacheAndLocate:
    def test_cache_written_and_reused(self, tiny_bfm):
        files = _files(tiny_bfm)
        first = load_bfm09_files(*files)
        cache = cache_path(files[0])
        assert cache.is_file()
        assert any("cached" in n for n in first.notes)
        second = load_bfm09_files(*files)
        assert any("from cache" in n for n in second.notes)
        torch.testing.assert_close(first.id_base, second.id_base)

    def test_stale_cache_ignored(self, tiny_bfm, tmp_path):
        files = _files(tiny_bfm)
        load_bfm09_files(*files)
        make_tiny_bfm(tmp_path, seed=5)  # rewrites every file with other contents (same names)
        import os
        for p in files:
            os.utime(p, (1e9, 1e9))
        reloaded = load_bfm09_files(*files)
        assert not any("from cache" in n for n in reloaded.notes)

    def test_load_bfm_from_weights_dir(self, tiny_bfm, tmp_path, monkeypatch):
        monkeypatch.setenv("MVINVERT_WEIGHTS", str(tmp_path))
        model = load_bfm()
        assert model.name == "bfm09-front" and model.num_vertices == len(tiny_bfm.mean)

    def test_load_bfm_names_missing_files(self, tiny_bfm, tmp_path, monkeypatch):
        tiny_bfm.paths["Exp_Pca.bin"].unlink()
        monkeypatch.setenv("MVINVERT_WEIGHTS", str(tmp_path))
        with pytest.raises(WeightsError, match="Exp_Pca.bin"):
            load_bfm()

    def test_nothing_present(self):
        with pytest.raises(WeightsError, match="01_MorphableModel.mat"):
            load_bfm()
        assert not bfm.bfm_available()


class TestFrontMat:
    def _write_front(self, tiny, path, tcoords: bool):
        arrays = convert_bfm09(*_files(tiny)[:6])
        if tcoords:
            arrays["tcoords"] = tiny.uvs.astype(np.float32)
        scipy.io.savemat(path, arrays)

    def test_ready_front_with_tcoords(self, tiny_bfm, tmp_path):
        path = tmp_path / "front" / "BFM_model_front.mat"
        path.parent.mkdir()
        self._write_front(tiny_bfm, path, tcoords=True)
        model = load_front_mat(path, use_cache=False)
        np.testing.assert_allclose(model.uvs.numpy(), tiny_bfm.uvs, atol=1e-6)
        reference = load_bfm09_files(*_files(tiny_bfm), use_cache=False)
        torch.testing.assert_close(model.mean_shape, reference.mean_shape)
        torch.testing.assert_close(model.exp_base, reference.exp_base)

    def test_ready_front_uvs_from_bfm_uv(self, tiny_bfm, tmp_path, monkeypatch):
        self._write_front(tiny_bfm, tmp_path / "BFM_model_front.mat", tcoords=False)
        monkeypatch.setenv("MVINVERT_WEIGHTS", str(tmp_path))
        model = load_bfm(use_cache=False)
        assert model.name == "bfm-front"
        np.testing.assert_allclose(model.uvs.numpy(), tiny_bfm.uvs, atol=1e-6)

    def test_ready_front_without_uvs(self, tiny_bfm, tmp_path):
        path = tmp_path / "only" / "BFM_model_front.mat"
        path.parent.mkdir()
        self._write_front(tiny_bfm, path, tcoords=False)
        with pytest.raises(WeightsError, match="no tcoords"):
            load_front_mat(path, use_cache=False)

    def test_corrupt_mat(self, tmp_path):
        path = tmp_path / "BFM_model_front.mat"
        path.write_bytes(b"MATLAB 5.0 garbage" * 10)
        with pytest.raises(WeightsError):
            load_front_mat(path, use_cache=False)
