"""`mvinvert eval` command: fast failures before any model loads; the full run is a slow test."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

from mvinvert_cli.cli import main
from mvinvert_cli.errors import ExitCode
from mvinvert_cli.io.images import save_image


def test_help_is_instant():
    code = ("import sys; from mvinvert_cli.cli import main; rc = main(['eval', '--help']); "
            "assert 'torch' not in sys.modules, 'torch imported by --help'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "hold-out" in done.stdout and "--yaw" in done.stdout


def test_missing_folder_is_usage_error(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope"), "-o", str(tmp_path / "r")]) == ExitCode.USAGE
    assert "no such file or folder" in capsys.readouterr().err


def test_existing_output_fails_fast(tmp_path, capsys):
    save_image(tmp_path / "p" / "a.png", np.zeros((8, 8, 3), dtype=np.float32))
    (tmp_path / "r").mkdir()
    assert main(["eval", str(tmp_path / "p"), "-o", str(tmp_path / "r")]) == ExitCode.OUTPUT
    assert "--force" in capsys.readouterr().err


def test_empty_folder_is_input_error(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    assert main(["eval", str(tmp_path / "p"), "-o", str(tmp_path / "r")]) == ExitCode.BAD_INPUT


@pytest.mark.slow
def test_eval_two_faces_end_to_end(faces_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("skimage_astronaut.png", "aflw2000_image00181.jpg"):  # frontal + profile
        (photos / name).write_bytes((faces_dir / name).read_bytes())
    out = tmp_path / "report"
    assert main(["eval", str(photos), "-o", str(out)]) == ExitCode.OK
    printed = capsys.readouterr().out
    assert "Occlusion hold-out" in printed and "mirror (baseline)" in printed
    with open(out / "eval.csv") as handle:
        rows = {r["image"]: r for r in csv.DictReader(handle)}
    front = rows["skimage_astronaut.png"]
    assert front["status"] == "ok" and int(front["holdout_pixels"]) > 200
    for method in ("statistical", "mirror", "coarse", "full", "ceiling"):
        assert 5 < float(front[f"holdout_{method}_psnr"]) < 60
    assert float(front["recon_psnr"]) > 18
    assert (out / "index.html").is_file() and (out / "report.png").is_file()


def test_a_photo_that_fails_gives_exit_1_and_its_row(tmp_path, capsys):
    photos = tmp_path / "p"
    photos.mkdir()
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "r"
    assert main(["eval", "--no-refine", str(photos), "-o", str(out)]) == ExitCode.SOME_FAILED
    assert "broken.jpg: error:" in capsys.readouterr().err
    with open(out / "eval.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["image"] for r in rows] == ["broken.jpg"] and rows[0]["status"].startswith("error")
