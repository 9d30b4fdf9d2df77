"""io.images: every PIL mode, EXIF orientation, animation, caps, and corrupt inputs."""

from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
from PIL import Image

from mvinvert_cli.errors import ExitCode, InputError
from mvinvert_cli.io import images
from mvinvert_cli.io.images import load_image

RNG = np.random.default_rng(0)
BASE = (RNG.random((48, 64, 3)) * 255).astype(np.uint8)


def _save(tmp_path, img: Image.Image, name: str, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


@pytest.mark.parametrize(
    "mode", ["RGB", "L", "P", "RGBA", "LA", "CMYK", "I", "F", "1", "I;16"]
)
def test_every_mode_becomes_rgb_float(tmp_path, mode):
    img = Image.fromarray(BASE)
    if mode == "I;16":
        img = Image.fromarray(BASE[..., 0].astype(np.uint16) * 257)
        assert img.mode.startswith("I;16")
    elif mode in ("I", "F"):
        img = img.convert("L").convert(mode)
    else:
        img = img.convert(mode)
    suffix = ".jpg" if mode == "CMYK" else (".tif" if mode in ("F", "I") else ".png")
    photo = load_image(_save(tmp_path, img, "x" + suffix))
    assert photo.rgb.shape == (48, 64, 3)
    assert photo.rgb.dtype == np.float32
    assert 0.0 <= photo.rgb.min() and photo.rgb.max() <= 1.0
    if mode == "I;16":
        np.testing.assert_allclose(photo.rgb[..., 0], BASE[..., 0] / 255.0, atol=1e-6)
        assert "16-bit grayscale" in photo.notes


def test_rgb_values_exact(tmp_path):
    photo = load_image(_save(tmp_path, Image.fromarray(BASE), "x.png"))
    np.testing.assert_allclose(photo.rgb, BASE / 255.0, atol=1e-7)


def test_alpha_composited_on_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left half
    rgba[:, 20:, 3] = 255
    photo = load_image(_save(tmp_path, Image.fromarray(rgba, "RGBA"), "a.png"))
    np.testing.assert_allclose(photo.rgb[0, 0], [1, 1, 1])
    np.testing.assert_allclose(photo.rgb[0, 30], [1, 0, 0])


def test_exif_orientation_applied(tmp_path):
    img = Image.fromarray(BASE)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    photo = load_image(_save(tmp_path, img, "r.jpg", exif=exif, quality=95))
    assert photo.rgb.shape == (64, 48, 3)
    assert "EXIF orientation 6 applied" in photo.notes


@pytest.mark.parametrize("orientation", [None, 1])
def test_upright_photo_has_no_orientation_note(tmp_path, orientation):
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    photo = load_image(_save(tmp_path, Image.fromarray(BASE), "u.jpg", exif=exif, quality=95))
    assert photo.rgb.shape == (48, 64, 3) and photo.notes == []


def test_multipage_tiff_is_not_called_animated(tmp_path):
    pages = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    photo = load_image(path)
    assert photo.rgb[0, 0, 0] > 0.9 and photo.notes == ["3-page TIFF file: first page used"]


def test_animated_first_frame(tmp_path):
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    photo = load_image(path)
    assert photo.rgb[0, 0, 0] > 0.9 and photo.rgb[0, 0, 2] < 0.1
    assert any("first frame" in n for n in photo.notes)


def test_downscale_cap(tmp_path):
    path = _save(tmp_path, Image.new("RGB", (600, 300), (10, 20, 30)), "big.png")
    photo = load_image(path, max_side=200)
    assert photo.size == (200, 100)
    assert photo.scale == pytest.approx(1 / 3)
    assert photo.original_size == (600, 300)


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    path = _save(tmp_path, Image.new("RGB", (100, 100)), "bomb.png")
    with pytest.raises(InputError, match="limit|decompression"):
        load_image(path)


@pytest.mark.parametrize(
    "name,data,match",
    [
        ("empty.jpg", b"", "empty file"),
        ("text.png", b"hello, not an image\n" * 10, "not an image"),
        ("trunc.png", None, "corrupt|truncated"),
        ("tiny.png", "tiny", "at least"),
    ],
)
def test_bad_files_raise_input_error(tmp_path, name, data, match):
    path = tmp_path / name
    if data is None:
        buf = io.BytesIO()
        Image.fromarray(BASE).save(buf, format="PNG")
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif data == "tiny":
        Image.new("RGB", (8, 8)).save(path)
    else:
        path.write_bytes(data)
    with pytest.raises(InputError, match=match) as info:
        load_image(path)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert "\n" not in str(info.value)


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="directory"):
        load_image(tmp_path)


def test_non_utf8_name(tmp_path):
    raw = bytes(tmp_path) + b"/caf\xe9.png"
    Image.fromarray(BASE).save(raw.decode("utf-8", "surrogateescape"))
    photo = load_image(raw.decode("utf-8", "surrogateescape"))
    assert photo.rgb.shape == (48, 64, 3)


def test_16bit_rgb_png(tmp_path):
    # hand-written 16-bit RGB PNG: PIL reads it as RGB (8-bit) – values must still be right
    import zlib

    h, w = 34, 34
    rows = b"".join(b"\x00" + struct.pack(">" + "H" * (3 * w), *([65535, 0, 32768] * w)) for _ in range(h))
    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path = tmp_path / "rgb16.png"
    path.write_bytes(png)
    photo = load_image(path)
    np.testing.assert_allclose(photo.rgb[0, 0], [1.0, 0.0, 0.5], atol=0.01)


def test_save_image_roundtrip(tmp_path):
    out = images.save_image(tmp_path / "o.png", BASE / 255.0)
    np.testing.assert_allclose(load_image(out).rgb, BASE / 255.0, atol=1 / 255)
    assert not list(tmp_path.glob(".*tmp*"))


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(BASE).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(BASE).save(buf, format="JPEG")
    return buf.getvalue()


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600), suffix=st.sampled_from([".jpg", ".png", ".gif", ".webp", ".bmp"]))
def test_fuzz_random_bytes(tmp_path, data, suffix):
    path = tmp_path / f"f{suffix}"
    path.write_bytes(data)
    try:
        photo = load_image(path)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert photo.rgb.ndim == 3 and np.isfinite(photo.rgb).all()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["png", "jpg"]), pos=st.integers(0, 10**6), byte=st.integers(0, 255),
       keep=st.floats(0.05, 1.0))
def test_fuzz_mutated_images(tmp_path, kind, pos, byte, keep):
    raw = bytearray(_png_bytes() if kind == "png" else _jpeg_bytes())
    raw[pos % len(raw)] = byte
    raw = raw[: max(1, int(len(raw) * keep))]
    path = tmp_path / f"m.{kind}"
    path.write_bytes(bytes(raw))
    try:
        photo = load_image(path)
    except InputError:
        return
    assert photo.rgb.shape[2] == 3 and np.isfinite(photo.rgb).all()


def _load_in_child(path, timeout: float = 60) -> tuple[int, str]:
    """load_image in a subprocess, so a blocking open fails the test instead of hanging it."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    code = ("import sys\nfrom mvinvert_cli.io.images import load_image\nfrom mvinvert_cli.errors import InputError\n"
            "try:\n    load_image(sys.argv[1])\nexcept InputError as e:\n    print(e); sys.exit(int(e.exit_code))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=timeout,
                          env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
    return proc.returncode, proc.stdout.strip()


def test_fifo_is_named_and_never_blocks(tmp_path):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)  # no writer: a blocking open() would wait for ever
    code, message = _load_in_child(fifo)
    assert code == ExitCode.BAD_INPUT and "named pipe (FIFO)" in message, message


@pytest.mark.parametrize("device, kind", [("/dev/null", "character device"), ("/dev/zero", "character device")])
def test_devices_are_named(tmp_path, device, kind):
    if not os.path.exists(device):
        pytest.skip(f"{device} not present")
    link = tmp_path / "photo.png"
    link.symlink_to(device)
    code, message = _load_in_child(link)
    assert code == ExitCode.BAD_INPUT and kind in message, message


def test_socket_is_named(tmp_path):
    import socket

    path = tmp_path / "s.png"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(InputError, match="is a socket, not an image"):
            load_image(path)
    finally:
        server.close()
