"""io.meshes writers: OBJ text as the per-line formatting wrote it, GLB assembled here with the shared PNG."""

from __future__ import annotations

import json
import struct

import numpy as np
import trimesh

from mvinvert_cli.io.meshes import TexturedMesh, glb_bytes, read_mesh, write_glb, write_obj
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
