"""run.evaluate_folder: a folder of photos → eval.csv, summary.json, HTML/PNG report; failures are rows."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mvinvert_cli.errors import InputError, NoFaceError, OutputError
from mvinvert_cli.eval.run import evaluate_folder
from mvinvert_cli.io.images import save_image

from .test_photo import _inputs


def test_folder_report(tmp_path, head):
    photos = tmp_path / "photos"
    for name in ("a_front.png", "b_turned.png", "c_noface.png"):
        save_image(photos / name, np.zeros((8, 8, 3), dtype=np.float32))
    yaws = {"a_front.png": 3.0, "b_turned.png": 35.0}

    def make_inputs(path):
        if path.name not in yaws:
            raise NoFaceError(f"{path.name}: no face found")
        return _inputs(head, yaw_deg=yaws[path.name])

    lines = []
    out = tmp_path / "report"
    rows, summary = evaluate_folder([str(photos)], out, make_inputs, identity_note="none: test", cases=1,
                                    progress=lines.append)
    assert [r["status"] for r in rows] == ["ok", "ok", "error: c_noface.png: no face found"]
    assert len(lines) == 3 and "hold-out PSNR full" in lines[0]
    assert summary.photos == 3 and summary.failed == 1 and summary.holdout["full"]["n"] == 1
    assert summary.recon_n == 2 and summary.id_backend == "none: test"
    with open(out / "eval.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [r["image"] for r in table] == ["a_front.png", "b_turned.png", "c_noface.png"]
    assert table[1]["holdout_pixels"] == "" and "no hold-out" in table[1]["notes"]
    data = json.loads((out / "summary.json").read_text())
    assert data["holdout"]["mirror"]["n"] == 1 and data["recon"]["id_cos"] is None
    assert data["settings"]["yaw_deg"] == 45.0
    html = (out / "index.html").read_text()
    assert "a_front.png" in html and "best 1" in html and (out / "report.png").is_file()
    with pytest.raises(OutputError):  # exists, no --force
        evaluate_folder([str(photos)], out, make_inputs)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        evaluate_folder([str(tmp_path / "empty")], tmp_path / "r2", make_inputs)


def test_check_paths_discovery(tmp_path):
    from mvinvert_cli.errors import UsageError
    from mvinvert_cli.eval.run import check_paths

    img = np.zeros((8, 8, 3), dtype=np.float32)
    for rel in ("b.png", "sub/a.jpg", ".hidden/c.png", "report/old.png"):
        save_image(tmp_path / "in" / rel, img)
    (tmp_path / "in" / "notes.txt").write_text("not a photo")
    found = check_paths([str(tmp_path / "in")], tmp_path / "in" / "report", force=True)
    assert [name for _, name in found] == ["b.png", "sub/a.jpg"]  # sorted, no hidden, no output folder
    assert check_paths([str(tmp_path / "in" / "b.png")], tmp_path / "r", False)[0][1] == "b.png"
    with pytest.raises(UsageError):
        check_paths([str(tmp_path / "missing")], tmp_path / "r", False)
    (tmp_path / "file_out").write_text("")
    with pytest.raises(OutputError):
        check_paths([str(tmp_path / "in")], tmp_path / "file_out", True)
