"""End to end: `mvinvert recover` on embedded defaults, and with tiny official-format weights for every
stage (BFM-layout model, BiSeNet, StyleGAN2 + ReStyle) where the refine stage runs and changes the
texture. Also --json on stdout, --all-faces, resume in batch, and SIGTERM leaving nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from mvinvert_cli.cli import main
from mvinvert_cli.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "skimage_astronaut.png"
OUTPUT_FILES = {"mesh.obj", "mesh.mtl", "texture.png", "mesh.ply", "mesh.glb", "coarse_texture.png",
                "preview.png", "result.json", "renders"}


def _tiny_official_weights(directory: Path) -> None:
    """Tiny random networks and a tiny BFM saved under the official file names and layouts."""
    sys.path.insert(0, str(REPO))
    from mvinvert_cli.invert.encoder import restyle_checkpoint
    from mvinvert_cli.parse.bisenet import BiSeNet
    from tests.invert.conftest import tiny_encoder, tiny_generator
    from tests.morphable.conftest import make_tiny_bfm

    make_tiny_bfm(directory)
    torch.manual_seed(0)
    torch.save(BiSeNet(base=8).state_dict(), directory / "79999_iter.pth")
    generator = tiny_generator()
    latent = generator.mean_latent(500)
    torch.save({"g_ema": generator.state_dict(), "latent_avg": latent}, directory / "stylegan2-ffhq-config-f.pt")
    torch.save(restyle_checkpoint(tiny_encoder(), generator, latent[None].repeat(generator.n_latent, 1)),
               directory / "restyle_psp_ffhq_encode.pt")


def _uv_island(obj_path: Path, size: int) -> np.ndarray:
    """bool (size, size): texels covered by the mesh's UV triangles (image rows top-down, v up)."""
    from PIL import ImageDraw

    mesh = trimesh.load(obj_path, process=False)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    uv = np.asarray(mesh.visual.uv, dtype=np.float64) * size
    for face in mesh.faces:
        draw.polygon([(uv[i, 0], size - uv[i, 1]) for i in face], fill=255)
    return np.asarray(canvas) > 0


def _check_outputs(out: Path) -> dict:
    assert OUTPUT_FILES <= {p.name for p in out.iterdir()}
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok"
    for rel in result["outputs"].values():
        assert (out / rel).is_file(), rel
    tex = np.asarray(Image.open(out / "texture.png").convert("RGB"), dtype=np.float32) / 255
    assert tex.shape == (result["texture"]["size"],) * 2 + (3,)
    assert result["texture"]["filled_fraction"] == 1.0
    obj = trimesh.load(out / "mesh.obj", process=False)
    assert obj.visual.uv is not None and len(obj.visual.uv) == len(obj.vertices)
    ply = trimesh.load(out / "mesh.ply", process=False)
    assert ply.visual.vertex_colors.shape[0] == len(ply.vertices)
    glb = trimesh.load(out / "mesh.glb", force="mesh", process=False)
    assert glb.visual.uv is not None
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    return result


def test_defaults_complete_texture(tmp_path, capsys):
    out = tmp_path / "astro"
    assert main(["recover", str(EXAMPLE), "-o", str(out), "--texture-size", "256", "--json"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)  # stdout is exactly the JSON document
    result = _check_outputs(out)
    assert printed["outputs"] == result["outputs"]
    assert result["backends"]["align"].startswith("mediapipe")
    assert result["backends"]["parse"] == "polygon"
    assert result["backends"]["model"] == "mediapipe-canonical-dense"
    assert any("refine skipped" in d for d in result["degraded"])
    assert any("BFM" in d for d in result["degraded"])
    stages = {s["name"]: s["status"] for s in result["stages"]}
    assert stages["invert"] == "skipped" and stages["coarse"] == "ok"
    # every UV-island texel is coloured (none left black) and the island is not flat; the island is
    # rasterised here from mesh.obj's own UVs, independently of the writer's statistics
    island = _uv_island(out / "mesh.obj", result["texture"]["size"])
    assert abs(int(island.sum()) - result["texture"]["island_texels"]) < 0.02 * island.sum()
    tex = np.asarray(Image.open(out / "texture.png").convert("RGB"), dtype=np.float32) / 255
    inside = tex[island]
    assert (inside.sum(axis=1) > 0.05).all(), "uncoloured (black) texels inside the UV island"
    assert inside.std(axis=0).min() > 0.04
    # the texture shows the photo's skin tone: its island mean is close to the mean of the photo's
    # central face region, far closer than to the photo's overall mean, with the same channel order
    photo = np.asarray(Image.open(EXAMPLE).convert("RGB"), dtype=np.float32) / 255
    x1, y1, x2, y2 = result["face"]["box"]
    w, h = x2 - x1, y2 - y1
    skin = photo[int(y1 + 0.3 * h):int(y2 - 0.3 * h), int(x1 + 0.25 * w):int(x2 - 0.25 * w)].reshape(-1, 3).mean(0)
    tone = inside.mean(axis=0)
    assert np.abs(tone - skin).max() < 0.12, (tone, skin)
    assert np.linalg.norm(tone - skin) < 0.5 * np.linalg.norm(tone - photo.reshape(-1, 3).mean(0))
    assert list(np.argsort(tone)) == list(np.argsort(skin))
    assert 0.05 < result["texture"]["photo_seen_vertices"] < 0.95


def test_official_formats_refine_changes_texture(tmp_path, monkeypatch, capsys):
    weights = tmp_path / "weights"
    weights.mkdir()
    _tiny_official_weights(weights)
    monkeypatch.setenv("MVINVERT_WEIGHTS", str(weights))
    out = tmp_path / "refined"
    code = main(["-q", "recover", str(EXAMPLE), "-o", str(out), "--texture-size", "128", "--views", "0,30,-30"])
    assert code == 0, capsys.readouterr().err
    result = _check_outputs(out)
    assert result["backends"]["parse"] == "bisenet"
    assert result["backends"]["model"].startswith("bfm")
    assert result["backends"]["invert"] == "restyle-psp"
    assert result["texture"]["refined"] is True
    assert {s["name"]: s["status"] for s in result["stages"]}["stitch"] == "ok"
    assert (out / "renders" / "inverted_yaw+30_pitch+0.png").is_file()
    coarse = np.asarray(Image.open(out / "coarse_texture.png"), dtype=np.float32)
    final = np.asarray(Image.open(out / "texture.png"), dtype=np.float32)
    assert np.abs(coarse - final).mean() > 0.5  # the refine stage really changed the texture


def test_all_faces_and_batch_resume(tmp_path, faces_dir, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(faces_dir / "3ddfav2_trump_hillary.jpg", photos / "pair.jpg")
    shutil.copy(EXAMPLE, photos / "astro.png")
    (photos / "broken.jpg").write_bytes(b"not an image")
    (photos / "grey.png").write_bytes(b"")
    Image.new("RGB", (200, 200), (120, 120, 120)).save(photos / "grey.png")
    out = tmp_path / "out"
    args = ["batch", str(photos), "-o", str(out), "--texture-size", "128", "--json", "--all-faces"]
    code = main(args)
    summary = json.loads(capsys.readouterr().out)
    assert code == ExitCode.SOME_FAILED
    status = {Path(i["source"]).name: i for i in summary["items"]}
    assert status["pair.jpg"]["status"] == "ok" and status["pair.jpg"]["faces"] == 2
    assert status["astro.png"]["status"] == "ok"
    assert status["broken.jpg"]["exit_code"] == ExitCode.BAD_INPUT
    assert status["grey.png"]["exit_code"] == ExitCode.NO_FACE
    assert (out / "pair" / "face_1" / "mesh.obj").is_file()
    log = [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()]
    assert len(log) == 4
    code = main(args)
    again = json.loads(capsys.readouterr().out)
    assert code == ExitCode.SOME_FAILED  # the two bad photos fail again
    status = {i["display"]: (i["status"], i["exit_code"]) for i in again["items"]}
    assert status == {"pair.jpg": ("skipped", 0), "astro.png": ("skipped", 0),
                      "broken.jpg": ("failed", ExitCode.BAD_INPUT), "grey.png": ("failed", ExitCode.NO_FACE)}


def test_sigterm_leaves_no_partial_output(tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "MVINVERT_WEIGHTS": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "mvinvert_cli", "recover", str(EXAMPLE), "-o", str(out), "-q"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".killed.tmp-*")) and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, err.decode()
    assert not out.exists()
    assert not list(tmp_path.glob(".killed*"))
    assert len([line for line in err.decode().splitlines() if line.strip()]) == 1


@pytest.mark.slow
def test_two_concurrent_recovers_into_one_folder(tmp_path):
    """Two `recover` processes started together into the same -o: one exits 0, the other 6 (it fails
    at the start or at the exclusive final rename), and the folder holds one complete result."""
    out = tmp_path / "x"
    env = {**os.environ, "MVINVERT_WEIGHTS": str(tmp_path), "PYTHONPATH": str(REPO)}
    photos = [EXAMPLE, REPO / "examples" / "facerec_obama.jpg"]
    procs = [subprocess.Popen([sys.executable, "-m", "mvinvert_cli", "-q", "recover", str(photo), "-o", str(out),
                               "--texture-size", "64", "--no-refine", "--views", "0"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for photo in photos]
    outcomes = [(p.wait(timeout=600), p.communicate()[1]) for p in procs]
    assert sorted(code for code, _ in outcomes) == [0, ExitCode.OUTPUT], outcomes
    loser = next(err for code, err in outcomes if code)
    assert "another process" in loser or "already exists" in loser, loser
    winner = photos[[code for code, _ in outcomes].index(0)]
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok" and Path(result["input"]["path"]).name == winner.name
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
