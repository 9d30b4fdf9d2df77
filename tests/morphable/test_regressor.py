"""Deep3DFaceRecon regressor: manifest-exact state_dict, strict loading, coefficient split."""

from __future__ import annotations

import pytest
import torch

from mvinvert_cli.errors import WeightsError
from mvinvert_cli.morphable.regressor import NUM_COEFFS, ReconNet, load_regressor, split_coefficients

from ..conftest import state_dict_shapes


def test_state_dict_matches_manifest(manifest):
    expected = manifest("deep3dfacerecon_resnet50")
    with torch.device("meta"):
        net = ReconNet()
    assert state_dict_shapes(net) == expected


def test_forward_shape():
    out = ReconNet().eval()(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, NUM_COEFFS) == (2, 257) and torch.isfinite(out).all()


def test_split_layout():
    coeffs = torch.arange(257.0)[None]
    parts = split_coefficients(coeffs)
    assert parts["id"][0, 0] == 0 and parts["exp"][0, 0] == 80 and parts["tex"][0, 0] == 144
    assert parts["angles"][0].tolist() == [224, 225, 226]
    assert parts["gamma"][0, 0] == 227 and parts["trans"][0].tolist() == [254, 255, 256]


def test_wrong_checkpoint_rejected(tmp_path):
    path = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": {"backbone.conv1.weight": torch.zeros(64, 3, 7, 7)}}, path)
    with pytest.raises(WeightsError, match="missing"):
        load_regressor(path)
    torch.save([1, 2], path)
    with pytest.raises(WeightsError, match="dict"):
        load_regressor(path)


def test_missing_file():
    with pytest.raises(WeightsError, match="epoch_20.pth"):
        load_regressor()


@pytest.mark.slow
def test_roundtrip_nested_under_net_recon(tmp_path):
    net = ReconNet().eval()
    path = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": net.state_dict(), "opt_00": {}}, path)
    loaded = load_regressor(path)
    x = torch.rand(1, 3, 224, 224)
    torch.testing.assert_close(loaded.predict(x), net(x))
