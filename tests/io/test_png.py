"""io.png: lossless fast PNGs, parallel encoding of many images, one encoding per distinct array."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mvinvert_cli.io import png
from mvinvert_cli.io.images import to_uint8

RNG = np.random.default_rng(3)


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_encode_png_is_lossless_at_the_fast_level():
    image = RNG.random((40, 30, 3)).astype(np.float32)
    data = png.encode_png(image)
    assert (_decode(data) == to_uint8(image)).all()
    smooth = np.tile(np.linspace(0, 1, 256, dtype=np.float32)[None, :, None], (256, 1, 3))
    fast, default = png.encode_png(smooth), png.encode_png(smooth, compress_level=6)
    assert (_decode(fast) == _decode(default)).all() and len(fast) < smooth.size  # compressed


def test_encode_pngs_in_parallel_equals_serial_and_shares_identical_arrays(monkeypatch):
    shared = RNG.random((64, 64, 3)).astype(np.float32)
    images = {"a.png": shared, "b.png": RNG.random((16, 16, 3)), "c.png": shared,
              "d.png": (RNG.random((8, 8, 3)) * 255).astype(np.uint8)}
    calls = []
    encode = png.encode_png
    monkeypatch.setattr(png, "encode_png", lambda image, level: calls.append(id(image)) or encode(image, level))
    parallel = png.encode_pngs(images, threads=3)
    assert list(parallel) == list(images) and len(calls) == 3  # the shared array is encoded once
    assert parallel["a.png"] is parallel["c.png"]
    serial = png.encode_pngs(images, threads=1)
    assert parallel == serial
    assert all((_decode(parallel[name]) == to_uint8(image)).all() for name, image in images.items()
               if name != "d.png")
