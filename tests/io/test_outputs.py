"""io.outputs.write_outputs: every file written, PNGs decoded equal to their images, the texture encoded
once for texture.png and mesh.glb, and an unrefined coarse texture encoded once."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
from PIL import Image

from mvinvert_cli.io import png as png_module
from mvinvert_cli.io.images import to_uint8
from mvinvert_cli.io.meshes import TexturedMesh
from mvinvert_cli.io.outputs import write_outputs

RNG = np.random.default_rng(7)


def test_write_outputs_files_and_shared_encodings(tmp_path, monkeypatch):
    texture = RNG.random((32, 32, 3)).astype(np.float32)
    mesh = TexturedMesh(RNG.standard_normal((20, 3)), RNG.integers(0, 20, (30, 3)), RNG.random((20, 2)), texture,
                        RNG.random((20, 3)))
    renders = {"front": RNG.random((24, 24, 3)), "side": RNG.random((24, 24, 3))}
    panels = [("a", texture), ("b", renders["front"])]
    encoded = []
    encode = png_module.encode_png
    monkeypatch.setattr(png_module, "encode_png", lambda image, level: encoded.append(image.shape) or encode(image, level))
    outputs = write_outputs(tmp_path, mesh, texture, renders, panels)  # coarse texture = final texture
    assert len(encoded) == 4  # texture (once), two renders, preview
    for rel in outputs.values():
        assert (tmp_path / rel).is_file(), rel
    assert (tmp_path / "texture.png").read_bytes() == (tmp_path / "coarse_texture.png").read_bytes()
    decoded = np.asarray(Image.open(tmp_path / "renders" / "side.png").convert("RGB"))
    assert (decoded == to_uint8(renders["side"])).all()
    glb = (tmp_path / "mesh.glb").read_bytes()
    length = struct.unpack("<I", glb[12:16])[0]
    tree = json.loads(glb[20:20 + length])
    view = tree["bufferViews"][tree["images"][0]["bufferView"]]
    start = 28 + length + view["byteOffset"]
    assert glb[start:start + view["byteLength"]] == (tmp_path / "texture.png").read_bytes()
    assert Image.open(io.BytesIO((tmp_path / "preview.png").read_bytes())).size[0] > 0
