"""FAN backend: local files only (weights/ or torch hub cache), strict loading, 68 points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvinvert_cli.errors import WeightsError


def test_fan_files_in_weights_dir_and_hub_cache(tmp_path, monkeypatch):
    from mvinvert_cli.align.fan_backend import fan_files

    assert fan_files() is None  # the test weights dir is empty and TORCH_HOME points nowhere useful
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert fan_files() is None
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "2DFAN4-11f355bf06.pth.tar").write_bytes(b"x")
    assert fan_files() == (hub / "2DFAN4-11f355bf06.pth.tar", None)
    (hub / "s3fd-619a316812.pth").write_bytes(b"x")
    assert fan_files()[1] == hub / "s3fd-619a316812.pth"


def test_missing_or_corrupt_fan(tmp_path, monkeypatch):
    from mvinvert_cli.align import Aligner

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert Aligner("auto").backend == "mediapipe"
    with pytest.raises(WeightsError, match="FAN weights not found"):
        Aligner("fan")
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "2DFAN4-11f355bf06.pth.tar").write_bytes(b"not a checkpoint")
    monkeypatch.setenv("MVINVERT_WEIGHTS", str(weights))
    with pytest.raises(WeightsError, match="corrupt"):
        Aligner("auto")


@pytest.mark.slow  # builds and saves a full-size FAN (24M parameters)
def test_random_fan_strict_load_and_run(tmp_path, monkeypatch, examples_dir):
    from face_alignment.models import FAN

    from mvinvert_cli.align import Aligner
    from mvinvert_cli.io.images import load_image

    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(FAN(4).state_dict(), weights / "2DFAN4-11f355bf06.pth.tar")
    monkeypatch.setenv("MVINVERT_WEIGHTS", str(weights))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    aligner = Aligner("auto")
    assert aligner.backend == "fan" and any("SFD" in n for n in aligner.notes)
    obs = aligner.align(load_image(examples_dir / "skimage_astronaut.png"))
    assert obs.aligner == "fan" and obs.landmarks.shape == (68, 2) and obs.dense is None
    x1, y1, x2, y2 = obs.box
    # random weights put the points anywhere in FAN's input crop: side 200·(w+h)/195 around the centre
    half = 100 * ((x2 - x1) + (y2 - y1)) / 195 + 1
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2 - 0.12 * (y2 - y1)])
    assert np.all(np.abs(obs.landmarks - centre) <= half)
    state = FAN(4).state_dict()
    state.pop("conv1.weight")
    torch.save(state, weights / "2DFAN4-11f355bf06.pth.tar")
    with pytest.raises(WeightsError, match="missing"):
        Aligner("fan")
