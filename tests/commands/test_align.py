"""commands/align: the real face count, a notice when there are several, absolute --json output."""

from __future__ import annotations

import json
from pathlib import Path

from mvinvert_cli.cli import main


def test_two_faces_counted_and_noticed(faces_dir, tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["align", str(faces_dir / "3ddfav2_trump_hillary.jpg"), "-o", str(out), "--json",
                 "--face-index", "1"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["faces_found"] == 2 and doc["face_index"] == 1
    assert Path(doc["output"]).is_absolute() and Path(doc["output"]) == out.resolve()
    assert "2 faces found" in captured.err
    saved = json.loads((out / "landmarks.json").read_text())
    assert saved["faces_found"] == 2 and saved["index"] == 1


def test_one_face_no_notice(examples_dir, tmp_path, capsys):
    assert main(["align", str(examples_dir / "skimage_astronaut.png"), "-o", str(tmp_path / "b"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["faces_found"] == 1 and "faces found" not in captured.err
