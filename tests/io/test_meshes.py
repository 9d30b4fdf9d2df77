"""io.meshes: OBJ text as the per-line formatting wrote it, GLB assembled here with the shared PNG; our writers
round-trip through our reader and through trimesh; bad files → InputError."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import trimesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mvinvert_cli.errors import InputError
from mvinvert_cli.io.meshes import (
    TexturedMesh,
    glb_bytes,
    read_mesh,
    sample_texture,
    write_glb,
    write_obj,
    write_ply,
)
from mvinvert_cli.io.png import encode_png

RNG = np.random.default_rng(5)


def _mesh(textured: bool = True) -> TexturedMesh:
    verts = RNG.standard_normal((30, 3))
    faces = RNG.integers(0, 30, (40, 3))
    return TexturedMesh(verts, faces, RNG.random((30, 2)), RNG.random((8, 8, 3)) if textured else None,
                        RNG.random((30, 3)))


def _per_line_obj(mesh: TexturedMesh) -> str:
    """The writer's format, one line at a time (what it did before the one-call formatting)."""
    lines = [f"# mvinvert mesh: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces", "mtllib mesh.mtl"]
    lines += [("v" + " %.6f" * 6) % tuple(row) for row in np.concatenate([mesh.vertices, mesh.vertex_colors], 1)]
    lines += [("vt" + " %.6f" * 2) % tuple(row) for row in mesh.uvs]
    lines.append("usemtl face")
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in mesh.faces + 1]
    return "\n".join(lines) + "\n"


def _glb(data: bytes) -> tuple[dict, bytes]:
    magic, version, total = struct.unpack("<4sII", data[:12])
    assert (magic, version, total) == (b"glTF", 2, len(data))
    length, kind = struct.unpack("<I4s", data[12:20])
    assert kind == b"JSON" and length % 4 == 0
    tree = json.loads(data[20:20 + length])
    bin_length, bin_kind = struct.unpack("<I4s", data[20 + length:28 + length])
    assert bin_kind == b"BIN\0" and bin_length == tree["buffers"][0]["byteLength"]
    return tree, data[28 + length:28 + length + bin_length]


def test_obj_text_is_the_per_line_format(tmp_path):
    mesh = _mesh()
    png = encode_png(mesh.texture)
    write_obj(tmp_path / "mesh.obj", mesh, texture_png=png)
    assert (tmp_path / "mesh.obj").read_text() == _per_line_obj(mesh)
    assert (tmp_path / "texture.png").read_bytes() == png


def test_glb_embeds_the_given_png_bytes_and_round_trips(tmp_path):
    mesh = _mesh()
    png = encode_png(mesh.texture)
    tree, binary = _glb(glb_bytes(mesh, png))
    view = tree["bufferViews"][tree["images"][0]["bufferView"]]
    assert binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]] == png
    assert all(v["byteOffset"] % 4 == 0 for v in tree["bufferViews"])
    write_glb(tmp_path / "mesh.glb", mesh, png)
    back = read_mesh(tmp_path / "mesh.glb")
    np.testing.assert_array_equal(back.faces, mesh.faces)
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_allclose(back.uvs, mesh.uvs, atol=1e-6)  # v flipped for glTF and back
    np.testing.assert_allclose(back.texture, mesh.texture, atol=0.5 / 255 + 1e-6)
    scene = trimesh.load(tmp_path / "mesh.glb")
    assert isinstance(scene, trimesh.Scene) and len(scene.geometry) == 1


def test_glb_without_texture_carries_vertex_colours(tmp_path):
    mesh = _mesh(textured=False)
    write_glb(tmp_path / "mesh.glb", mesh)
    back = read_mesh(tmp_path / "mesh.glb")
    assert back.texture is None
    np.testing.assert_allclose(back.vertex_colors, mesh.vertex_colors, atol=0.5 / 255 + 1e-6)


GRID_RNG = np.random.default_rng(1)


def _grid_mesh() -> TexturedMesh:
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 5), np.linspace(0, 1, 5)), -1).reshape(-1, 2)
    verts = np.concatenate([grid, GRID_RNG.random((25, 1))], 1)
    faces = []
    for r in range(4):
        for c in range(4):
            i = r * 5 + c
            faces += [[i, i + 1, i + 6], [i, i + 6, i + 5]]
    return TexturedMesh(verts, np.array(faces), grid.copy(), GRID_RNG.random((32, 32, 3)))


def test_obj_roundtrip(tmp_path):
    mesh = _grid_mesh()
    written = write_obj(tmp_path / "mesh.obj", mesh)
    assert {p.name for p in written} == {"mesh.obj", "mesh.mtl", "texture.png"}
    back = read_mesh(tmp_path / "mesh.obj")
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-5)
    np.testing.assert_array_equal(back.faces, mesh.faces)
    np.testing.assert_allclose(back.uvs, mesh.uvs, atol=1e-5)
    np.testing.assert_allclose(back.texture, mesh.texture, atol=1 / 255 + 1e-6)
    tm = trimesh.load(tmp_path / "mesh.obj", process=False)
    assert tm.visual.uv.shape == (25, 2)


def test_ply_has_vertex_colours(tmp_path):
    mesh = _grid_mesh()
    write_ply(tmp_path / "mesh.ply", mesh)
    back = read_mesh(tmp_path / "mesh.ply")
    expected = sample_texture(mesh.texture, mesh.uvs)
    np.testing.assert_allclose(back.vertex_colors, expected, atol=1 / 255 + 1e-6)


def test_glb_embeds_texture(tmp_path):
    mesh = _grid_mesh()
    write_glb(tmp_path / "mesh.glb", mesh)
    back = read_mesh(tmp_path / "mesh.glb")
    assert back.texture is not None and back.uvs.shape == (25, 2)
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-6)


def test_sample_texture_corners():
    tex = np.zeros((2, 2, 3), np.float32)
    tex[0, 0] = [1, 0, 0]  # top-left texel = v near 1
    out = sample_texture(tex, np.array([[0.25, 0.75], [0.75, 0.25]], np.float32))
    np.testing.assert_allclose(out[0], [1, 0, 0])
    np.testing.assert_allclose(out[1], [0, 0, 0])


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("e.obj", b"", "empty"),
        ("x.obj", b"v 0 0 0\nv 1 0 0\n", "no triangles|cannot parse|not a triangle"),
        ("x.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "range|cannot parse|no triangles|not a triangle"),
        ("x.ply", b"ply\nformat ascii 1.0\nelement vertex 99\nend_header\n1 2\n", "cannot parse|no triangles|not a triangle"),
        ("x.glb", b"glTF\x02\x00\x00\x00garbage", "cannot parse|no triangle"),
        ("x.xyz", b"1 2 3", "unsupported"),
        ("x.obj", b"v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "non-finite|cannot parse"),
    ],
)
def test_bad_meshes(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_mesh(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".obj", ".ply", ".glb"]))
def test_fuzz_reader_only_raises_input_error(tmp_path, data, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        mesh = read_mesh(path)
    except InputError:
        return
    assert mesh.faces.max() < len(mesh.vertices)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=1, max_value=2000), flip=st.integers(min_value=0, max_value=2000))
def test_fuzz_mutated_obj(tmp_path, cut, flip):
    write_obj(tmp_path / "m.obj", _grid_mesh())
    raw = bytearray((tmp_path / "m.obj").read_bytes())
    raw[flip % len(raw)] ^= 0x5A
    (tmp_path / "m.obj").write_bytes(bytes(raw[: max(1, len(raw) - cut)]))
    try:
        read_mesh(tmp_path / "m.obj")
    except InputError:
        pass
