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


def _rows(capsys) -> dict:
    assert main(["weights", "--json"]) == 0
    return {r["key"]: r for r in json.loads(capsys.readouterr().out)["assets"]}


def test_empty_and_random_files_are_bad_for_every_entry(tmp_path, monkeypatch, capsys):
    """Before: zero-byte or random files were "present / unverified"; every entry now checks them."""
    monkeypatch.setenv("MVINVERT_WEIGHTS", str(tmp_path))
    for kind, data in (("empty", b""), ("random", os.urandom(4096))):
        for asset in weights.ASSETS:
            (tmp_path / asset.filenames[0]).write_bytes(data)
        rows = _rows(capsys)
        assert {k: r["state"] for k, r in rows.items()} == {a.key: "bad" for a in weights.ASSETS}, kind
        assert all(str(tmp_path) in r["check"] for r in rows.values())


def _fake(path, head: bytes, size: int) -> None:
    path.write_bytes(head + b"\0" * (size - len(head)))


def test_format_checks_with_plausible_sizes(tmp_path, monkeypatch):
    big = weights.ASSET_BY_KEY["bisenet"].min_size
    mat = tmp_path / "BFM_front_idx.mat"
    _fake(mat, b"MATLAB 5.0 MAT-file, Platform: GLNXA64", 44_880)
    assert weights.verify("bfm_front_idx", mat) == "ok: size 44880, format mat"
    _fake(mat, b"<html>404 not found</html>", 44_880)
    with pytest.raises(WeightsError, match="not a MATLAB"):
        weights.verify("bfm_front_idx", mat)
    uv = tmp_path / "BFM_UV.mat"
    for size in (779_401, 784_333):
        _fake(uv, b"MATLAB 5.0 MAT-file", size)
        assert weights.verify("bfm_uv", uv).startswith("ok: size")
    _fake(uv, b"MATLAB 5.0 MAT-file", 700_000)
    with pytest.raises(WeightsError, match="779401 or 784333"):
        weights.verify("bfm_uv", uv)
    exp = tmp_path / "Exp_Pca.bin"
    _fake(exp, (79).to_bytes(4, "little"), 51_086_404)
    assert weights.verify("exp_pca", exp) == "ok: size 51086404, format exp-basis"
    _fake(exp, (80).to_bytes(4, "little"), 51_086_404)
    with pytest.raises(WeightsError, match="exp_dim = 79"):
        weights.verify("exp_pca", exp)
    std = tmp_path / "std_exp.txt"
    numbers = " ".join(["1.5"] * 78 + ["2"])  # 79 numbers ...
    std.write_text(numbers + " " * (615 - len(numbers)))  # ... in the published 615 bytes
    assert weights.verify("std_exp", std) == "ok: size 615, format text"
    net = tmp_path / "79999_iter.pth"
    state = {"w": torch.zeros(big // 4 + 16)}
    torch.save(state, net)
    assert weights.verify("bisenet", net) == f"ok: size ≥ {big}, format torch"
    torch.save(state, net, _use_new_zipfile_serialization=False)
    assert weights.verify("bisenet", net) == f"ok: size ≥ {big}, format torch (legacy)"
    torch.save({"w": torch.zeros(16)}, net)
    with pytest.raises(WeightsError, match="at least"):
        weights.verify("bisenet", net)
    _fake(net, b"PK\x03\x04", big + 10)
    with pytest.raises(WeightsError, match="damaged zip"):
        weights.verify("bisenet", net)


def test_hash_prefix_published_in_file_names(tmp_path, monkeypatch):
    """face-alignment's files follow torch.hub's name-<sha256 prefix>.ext convention; a file with that
    name whose sha256 does not start with the prefix is bad (unless hashing is skipped)."""
    import dataclasses

    assert weights.hash_prefix_in_name("s3fd-619a316812.pth") == "619a316812"
    assert weights.hash_prefix_in_name("2DFAN4-11f355bf06.pth.tar") == "11f355bf06"
    assert weights.hash_prefix_in_name("79999_iter.pth") is None
    small = dataclasses.replace(weights.ASSET_BY_KEY["sfd"], min_size=100)
    monkeypatch.setitem(weights.ASSET_BY_KEY, "sfd", small)
    path = tmp_path / "s3fd-619a316812.pth"
    torch.save({"w": torch.zeros(64)}, path)
    with pytest.raises(WeightsError, match="does not match the published 619a316812"):
        weights.verify("sfd", path)
    assert weights.verify("sfd", path, hash_check=False) == "ok: size ≥ 100, format torch"
    digest = weights.file_sha256(path)
    renamed = tmp_path / f"s3fd-{digest[:10]}.pth"
    path.rename(renamed)
    assert weights.verify("sfd", renamed).endswith("sha256 prefix from the file name")
    script = tmp_path / "2DFAN4-cd938726ad.zip"
    torch.save({"w": torch.zeros(64)}, script)  # a torch.save zip, not a TorchScript archive
    small_fan = dataclasses.replace(weights.ASSET_BY_KEY["fan2d"], min_size=100)
    monkeypatch.setitem(weights.ASSET_BY_KEY, "fan2d", small_fan)
    with pytest.raises(WeightsError, match="not a TorchScript"):
        weights.verify("fan2d", script, hash_check=False)


@pytest.mark.parametrize("what", ["missing", "file"])
def test_weights_option_must_be_a_folder(tmp_path, capsys, what):
    target = tmp_path / "w"
    if what == "file":
        target.write_text("x")
    for command in (["weights"], ["recover", "photo.jpg", "-o", str(tmp_path / "out")]):
        assert main(["--weights", str(target), *command]) == ExitCode.USAGE, command
        err = capsys.readouterr().err
        assert str(target) in err and ("does not exist" if what == "missing" else "is a file") in err
