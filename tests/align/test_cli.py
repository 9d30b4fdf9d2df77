"""``mvinvert align`` in-process: outputs, --face-index, no face, existing output."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from mvinvert_cli.cli import main
from mvinvert_cli.errors import ExitCode


def test_align_writes_outputs(examples_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["align", str(examples_dir / "skimage_astronaut.png"), "-o", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["aligner"] == "mediapipe" and result["parser"] == "polygon" and result["faces_found"] == 1
    record = json.loads((out / "landmarks.json").read_text())
    assert len(record["landmarks68"]) == 68 and len(record["dense478"]) == 478 and len(record["head_pose"]) == 4
    crop = np.asarray(Image.open(out / "crop.png"))
    mask = np.asarray(Image.open(out / "mask.png"))
    assert crop.shape == (224, 224, 3) and mask.shape == (512, 512)
    assert 0.02 < (mask > 0).mean() < 0.3
    assert np.asarray(Image.open(out / "overlay.png")).shape == (512, 512, 3)
    assert sorted(p.name for p in out.iterdir()) == ["crop.png", "crop_mask.png", "landmarks.json", "mask.png",
                                                     "overlay.png"]
    # second run without --force refuses
    assert main(["align", str(examples_dir / "skimage_astronaut.png"), "-o", str(out)]) == ExitCode.OUTPUT


def test_face_index(faces_dir, tmp_path, capsys):
    photo = faces_dir / "3ddfav2_trump_hillary.jpg"
    boxes = []
    for index in (0, 1):
        assert main(["align", str(photo), "-o", str(tmp_path / str(index)), "--face-index", str(index), "--json"]) == 0
        boxes.append(json.loads(capsys.readouterr().out)["box"])
    assert np.abs(np.subtract(*boxes)).max() > 50
    assert main(["align", str(photo), "-o", str(tmp_path / "2"), "--face-index", "2"]) == ExitCode.NO_FACE


def test_no_face_is_one_line(tmp_path, capsys):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((200, 300, 3), 128, dtype=np.uint8)).save(grey)
    code = main(["align", str(grey), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == ExitCode.NO_FACE == 4
    assert len(err.splitlines()) == 1 and "no face" in err
    assert not (tmp_path / "out").exists()


def test_unknown_backend_is_usage_error(examples_dir, tmp_path):
    code = main(["align", str(examples_dir / "skimage_astronaut.png"), "-o", str(tmp_path / "o"), "--aligner", "dlib"])
    assert code == ExitCode.USAGE


def test_missing_bisenet_is_weights_error(examples_dir, tmp_path, capsys):
    code = main(["align", str(examples_dir / "skimage_astronaut.png"), "-o", str(tmp_path / "o"), "--parser", "bisenet"])
    err = capsys.readouterr().err.strip()
    assert code == ExitCode.WEIGHTS and len(err.splitlines()) == 1 and "79999_iter.pth" in err
