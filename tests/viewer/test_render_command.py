"""`mvinvert render` and viewer.render_views: colours come from the texture / vertex colours, views rotate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mvinvert_cli.cli import main
from mvinvert_cli.errors import ExitCode
from mvinvert_cli.io.meshes import TexturedMesh, write_obj, write_ply
from mvinvert_cli.viewer import render_views, turntable_views


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


def test_turntable_views_loop():
    views = turntable_views(10, 60)
    assert views[0] == (-60.0, 0.0) and max(v[0] for v in views) == 60.0 and len(views) == 8


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
    assert Image.open(tmp_path / "spin.gif").n_frames >= 4
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
