"""weights: registry lookup, safe loading, strict state-dict errors, `mvinvert weights`."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from mvinvert_cli import weights
from mvinvert_cli.cli import main
from mvinvert_cli.errors import ExitCode, WeightsError


def test_every_asset_missing_on_empty_dir(capsys):
    assert main(["weights", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {a["key"] for a in data["assets"]} == set(weights.ASSET_BY_KEY)
    assert all(a["state"] == "missing" for a in data["assets"])
    assert all(a["source"] for a in data["assets"])
    names = {d["key"] for d in data["embedded_defaults"]}
    assert {"mediapipe_landmarker", "polygon_parser", "canonical_mesh"} <= names


def test_table_names_defaults(capsys):
    assert main(["weights"]) == 0
    out = capsys.readouterr().out  # results on stdout: `mvinvert weights | grep missing` works
    assert "missing" in out and "Embedded defaults" in out and "MediaPipe" in out


def test_locate_in_subfolder_and_size_check(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MVINVERT_WEIGHTS", str(tmp_path))
    (tmp_path / "bfm").mkdir()
    bad = tmp_path / "bfm" / "std_exp.txt"
    bad.write_text("1 2 3")
    assert weights.locate("std_exp") == bad
    with pytest.raises(WeightsError, match="expected 615"):
        weights.verify("std_exp", bad)
    assert main(["weights", "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)["assets"]}
    assert rows["std_exp"]["state"] == "bad"


def test_require_message():
    with pytest.raises(WeightsError, match="79999_iter.pth") as info:
        weights.require("bisenet")
    assert info.value.exit_code == ExitCode.WEIGHTS


def test_load_checkpoint_safe(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2)}, good)
    assert torch.equal(weights.load_checkpoint(good)["w"], torch.ones(2))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_load_checkpoint_refuses_code(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil, pickle_module=pickle)
    with pytest.raises(WeightsError, match="trust-pickle"):
        weights.load_checkpoint(evil)
    pkl = tmp_path / "network.pkl"
    pkl.write_bytes(b"whatever")
    with pytest.raises(WeightsError, match="execute code"):
        weights.load_checkpoint(pkl)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"\x80\x02truncated"])
def test_load_checkpoint_corrupt(tmp_path, content):
    path = tmp_path / "c.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError) as info:
        weights.load_checkpoint(path)
    assert str(path) in str(info.value)


def test_truncated_real_checkpoint(tmp_path):
    path = tmp_path / "t.pt"
    torch.save({"w": torch.randn(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        weights.load_checkpoint(path)


def test_strict_load_reports_mismatch():
    module = torch.nn.Linear(3, 2)
    with pytest.raises(WeightsError, match="missing.*bias|other shapes"):
        weights.load_state_dict_strict(module, {"weight": torch.zeros(2, 4)}, "x.pt", "linear")
    weights.load_state_dict_strict(module, {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}, "x.pt", "linear")
