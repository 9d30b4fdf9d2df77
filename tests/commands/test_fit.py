"""``mvinvert fit`` in-process: outputs on a real portrait, error exits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mvinvert_cli.cli import main
from mvinvert_cli.weights import face_landmarker_task


@pytest.fixture
def portrait(examples_dir):
    path = examples_dir / "facerec_obama.jpg"
    if not path.is_file() or face_landmarker_task() is None:
        pytest.skip("example portrait or face_landmarker.task missing")
    return path


def test_fit_writes_everything(portrait, tmp_path, capsys):
    out = tmp_path / "fit"
    code = main(["fit", str(portrait), "-o", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "mediapipe-canonical-dense" and summary["backend"] == "dense-landmarks"
    for name in ("fit.npz", "fit.json", "overlay.png", "overlay_textured.png", "mesh.obj", "mesh.ply"):
        assert (out / name).is_file(), name
    data = np.load(out / "fit.npz")
    assert data["coefficients"].shape == (33,) and data["t_pca"].shape == data["vertices"].shape
    assert np.isfinite(data["world_vertices"]).all()
    assert 0 <= data["t_pca"].min() and data["t_pca"].max() <= 1
    record = json.loads((out / "fit.json").read_text())
    assert any("no PCA" in n for n in record["model"]["notes"])
    assert record["fit"]["losses"]["landmark_px"] < 2.0
    assert abs(record["fit"]["angles_deg"][1]) < 20  # a frontal portrait


def test_bfm_requested_but_missing(portrait, tmp_path, capsys):
    code = main(["fit", str(portrait), "-o", str(tmp_path / "x"), "--model", "bfm"])
    assert code == 5
    assert "01_MorphableModel.mat" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_no_face(tmp_path, capsys):
    from mvinvert_cli.io.images import save_image

    blank = tmp_path / "blank.png"
    save_image(blank, np.full((200, 200, 3), 0.5, np.float32))
    code = main(["fit", str(blank), "-o", str(tmp_path / "y")])
    assert code == 4
    assert not (tmp_path / "y").exists()
