"""`mvinvert render` and viewer.render_views: colours come from the texture / vertex colours, views rotate."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from mvinvert_cli.cli import main
from mvinvert_cli.errors import ExitCode
from mvinvert_cli.io.meshes import TexturedMesh, write_obj, write_ply
from mvinvert_cli.viewer import has_back, render_views, turntable_views


def _quad(texture: np.ndarray | None = None, colors: np.ndarray | None = None) -> TexturedMesh:
    verts = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uvs = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    return TexturedMesh(verts, faces, uvs if texture is not None else None, texture, colors)


def test_texture_orientation_and_colour():
    tex = np.zeros((64, 64, 3), np.float32)
    tex[:32] = [1, 0, 0]  # top half of the texture (v > 0.5) red
    tex[32:] = [0, 0, 1]
    front, = render_views(_quad(tex), [(0, 0)], size=64, shading=0.0, ssaa=1)
    np.testing.assert_allclose(front[20, 32], [1, 0, 0], atol=1e-4)  # upper image half = v up = red
    np.testing.assert_allclose(front[44, 32], [0, 0, 1], atol=1e-4)


def test_vertex_colours_and_background():
    colors = np.array([[0, 1, 0]] * 4, np.float32)
    img, = render_views(_quad(colors=colors), [(0, 0)], size=64, shading=0.0, ssaa=1, background=(1, 1, 1))
    np.testing.assert_allclose(img[32, 32], [0, 1, 0], atol=1e-5)
    side, = render_views(_quad(colors=colors), [(89.9, 0)], size=64, shading=0.0, ssaa=1)
    assert (np.abs(side - 1) < 1e-6).all(axis=-1).mean() > 0.95  # edge-on quad: almost all background


def test_shading_darkens_oblique_views():
    colors = np.ones((4, 3), np.float32)
    front, oblique = render_views(_quad(colors=colors), [(0, 0), (60, 0)], size=64, shading=1.0, ssaa=1)
    assert front[32, 32].mean() > 0.95
    assert 0.3 < oblique[32, 32].mean() < 0.7  # cos 60° = 0.5


def test_turntable_views_exact_frames_and_loop():
    sweep = turntable_views(10, 60)
    assert len(sweep) == 10 and sweep[0] == (-60.0, 0.0) and max(v[0] for v in sweep) == 60.0
    steps = np.diff([v[0] for v in sweep] + [sweep[0][0]])  # the loop closes with the same step size
    assert np.allclose(np.abs(steps), 24.0)
    spin = turntable_views(36, pitch=-5, full_spin=True)
    assert len(spin) == 36 and spin[0] == (0.0, -5.0) and spin[-1][0] == 350.0


def _sphere(n: int = 12) -> TexturedMesh:
    theta, phi = np.meshgrid(np.linspace(0.1, np.pi - 0.1, n), np.linspace(0, 2 * np.pi, 2 * n, endpoint=False),
                             indexing="ij")
    verts = np.stack([np.sin(theta) * np.cos(phi), np.cos(theta), np.sin(theta) * np.sin(phi)], -1).reshape(-1, 3)
    faces = []
    for i in range(n - 1):
        for j in range(2 * n):
            a, b = i * 2 * n + j, i * 2 * n + (j + 1) % (2 * n)
            faces += [[a, b + 2 * n, b], [a, a + 2 * n, b + 2 * n]]
    return TexturedMesh(verts.astype(np.float32), np.array(faces), vertex_colors=np.full((len(verts), 3), 0.5, np.float32))


def test_has_back_tells_a_closed_mesh_from_a_face_mask():
    assert not has_back(_quad(colors=np.ones((4, 3), np.float32)))
    assert has_back(_sphere())
    flipped = _sphere()
    assert has_back(TexturedMesh(flipped.vertices, flipped.faces[:, ::-1].copy(), vertex_colors=flipped.vertex_colors))


def test_turntable_frames_and_motion(tmp_path, capsys):
    tex = np.random.default_rng(1).random((32, 32, 3)).astype(np.float32)
    write_obj(tmp_path / "face.obj", _quad(tex))
    write_ply(tmp_path / "ball.ply", _sphere())
    assert main(["render", str(tmp_path / "face.obj"), "--size", "32", "-o", str(tmp_path / "a"),
                 "--turntable", str(tmp_path / "a.gif"), "--frames", "36", "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["turntable"]["motion"] == "sweep" and "sweep (face-only mesh)" in captured.err
    assert Image.open(tmp_path / "a.gif").n_frames == 36
    assert main(["render", str(tmp_path / "ball.ply"), "--size", "32", "-o", str(tmp_path / "b"),
                 "--turntable", str(tmp_path / "b.gif"), "--frames", "7", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["turntable"]["motion"] == "spin" and "360° spin (the mesh has a back)" in captured.err
    assert main(["render", str(tmp_path / "face.obj"), "--size", "32", "-o", str(tmp_path / "c"),
                 "--turntable", str(tmp_path / "c.gif"), "--frames", "5", "--motion", "spin", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["turntable"]["motion"] == "spin"


@pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is None, reason="imageio-ffmpeg not installed")
def test_turntable_mp4_through_ffmpeg(tmp_path):
    import imageio_ffmpeg

    write_obj(tmp_path / "face.obj", _quad(np.random.default_rng(2).random((16, 16, 3)).astype(np.float32)))
    assert main(["render", str(tmp_path / "face.obj"), "--size", "32", "-o", str(tmp_path / "v"),
                 "--turntable", str(tmp_path / "spin.mp4"), "--frames", "12"]) == 0
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "spin.mp4"))
    assert frames == 12


def test_turntable_mp4_without_encoder_says_how(tmp_path, capsys, monkeypatch):
    from mvinvert_cli.commands import render

    real = importlib.util.find_spec
    monkeypatch.setattr(render.importlib.util, "find_spec", lambda name: None if name == "imageio_ffmpeg" else real(name))
    write_obj(tmp_path / "face.obj", _quad(np.ones((4, 4, 3), np.float32)))
    assert main(["render", str(tmp_path / "face.obj"), "--size", "32", "-o", str(tmp_path / "v"),
                 "--turntable", str(tmp_path / "spin.mp4")]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "pip install 'mvinvert[video]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "v").exists()  # refused before rendering anything


def test_render_command(tmp_path, capsys):
    tex = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    write_obj(tmp_path / "mesh.obj", _quad(tex))
    write_ply(tmp_path / "mesh.ply", _quad(tex))
    code = main(["render", str(tmp_path / "mesh.obj"), "--views", "0,30:10", "--size", "48", "-o",
                 str(tmp_path / "shots"), "--turntable", str(tmp_path / "spin.gif"), "--frames", "6", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["colour_source"] == "texture" and len(data["files"]) == 3
    assert Image.open(tmp_path / "shots" / "mesh_yaw+30_pitch+10.png").size == (48, 48)
    assert Image.open(tmp_path / "spin.gif").n_frames == 6
    assert main(["render", str(tmp_path / "mesh.ply"), "--size", "32", "-o", str(tmp_path / "p")]) == 0


@pytest.mark.parametrize("content,code", [(b"", ExitCode.BAD_INPUT), (b"garbage", ExitCode.BAD_INPUT)])
def test_render_bad_mesh(tmp_path, capsys, content, code):
    path = tmp_path / "bad.obj"
    path.write_bytes(content)
    assert main(["render", str(path)]) == code
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_render_bad_turntable_name(tmp_path):
    write_obj(tmp_path / "mesh.obj", _quad(np.ones((4, 4, 3), np.float32)))
    assert main(["render", str(tmp_path / "mesh.obj"), "--size", "32", "--turntable", str(tmp_path / "x.txt")]) \
        == ExitCode.USAGE
