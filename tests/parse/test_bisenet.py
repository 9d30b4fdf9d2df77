"""BiSeNet: manifest-exact state_dict, strict round trip of a tiny model, no download, parsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvinvert_cli.errors import WeightsError
from mvinvert_cli.parse.bisenet import BiSeNet, load_bisenet, parse_labels


def _shapes(module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_full_size_matches_manifest(manifest):
    expected = manifest("bisenet_face_parsing_79999")
    with torch.device("meta"):
        net = BiSeNet()
    assert _shapes(net) == expected


def test_no_download_at_construction(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    BiSeNet(base=8)


def test_tiny_round_trip_strict(tmp_path):
    net = BiSeNet(base=8).eval()
    path = tmp_path / "tiny.pth"
    torch.save(net.state_dict(), path)
    loaded = load_bisenet(path, base=8)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(net(x), loaded(x), strict=True):
            assert a.shape == (1, 19, 64, 64)
            torch.testing.assert_close(a, b)
    # a checkpoint of another width does not load
    torch.save(BiSeNet(base=4).state_dict(), tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="other shapes"):
        load_bisenet(tmp_path / "other.pth", base=8)
    state = net.state_dict()
    state.pop("ffm.conv1.weight")
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="missing"):
        load_bisenet(tmp_path / "missing.pth", base=8)


def test_parse_labels_maps_back_to_photo():
    net = BiSeNet(base=4).eval()
    rgb = np.random.default_rng(0).random((90, 120, 3)).astype(np.float32)
    labels = parse_labels(net, rgb, np.array([50, 30, 80, 60]), size=64)
    assert labels.shape == (90, 120) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < 19
    assert (labels[:5, :5] == 0).all()  # outside the parsed square: background


@pytest.mark.slow  # ~10 s: saves, loads and runs the full-size 13M-parameter network
def test_face_parser_bisenet_from_registry(tmp_path, monkeypatch, examples_dir):
    """A full-size random BiSeNet saved as 79999_iter.pth is picked by auto and fills the masks."""
    from mvinvert_cli.align import Aligner
    from mvinvert_cli.io.images import load_image
    from mvinvert_cli.parse import FaceParser

    torch.save(BiSeNet().state_dict(), tmp_path / "79999_iter.pth")
    monkeypatch.setenv("MVINVERT_WEIGHTS", str(tmp_path))
    parser = FaceParser("auto")
    assert parser.backend == "bisenet" and not parser.notes
    obs = parser.parse(Aligner("mediapipe").align(load_image(examples_dir / "skimage_astronaut.png")))
    assert obs.parser == "bisenet" and obs.face_mask.shape == (512, 512)
    assert set(obs.masks) == {"hair", "glasses", "hat", "occluder"}
    assert obs.crop_face_mask.shape == (224, 224)
