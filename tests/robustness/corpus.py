"""A generated bad-input corpus: each case builds its files in a temp folder and names the exit code
``mvinvert recover`` must give (issue: bad input, faults and untrusted files)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mvinvert_cli.errors import ExitCode


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, Path], list[str]]  # (workdir, face_photo) -> recover argv (after "recover")
    expected: ExitCode
    weights: Callable[[Path], None] | None = None  # fills a weights dir for this case


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)


def _bomb_png() -> bytes:
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + _png_chunk(b"IEND", b""))


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _file(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path, Path], list[str]]:
    def build(work: Path, face: Path) -> list[str]:
        path = work / name
        path.write_bytes(data() if callable(data) else data)
        return [str(path), "-o", str(work / "out")]
    return build


def _image(name: str, img: Callable[[], Image.Image], fmt: str, **kw) -> Callable[[Path, Path], list[str]]:
    return _file(name, lambda: _encode(img(), fmt, **kw))


def _grey() -> Image.Image:
    return Image.new("RGB", (320, 320), (128, 128, 128))


def _noise() -> Image.Image:
    return Image.fromarray((np.random.default_rng(3).random((300, 300, 3)) * 255).astype(np.uint8))


def _gradient() -> Image.Image:
    x = np.linspace(0, 1, 400)[None, :, None] * np.ones((300, 1, 3))
    return Image.fromarray((x * 255).astype(np.uint8))


def _face_args(*extra: str) -> Callable[[Path, Path], list[str]]:
    def build(work: Path, face: Path) -> list[str]:
        return [str(face), "-o", str(work / "out"), *extra]
    return build


def _truncated(fmt: str) -> bytes:
    data = _encode(_noise(), fmt)
    return data[: len(data) // 3]


def _out_is_file(work: Path, face: Path) -> list[str]:
    (work / "taken").write_text("x")
    return [str(face), "-o", str(work / "taken")]


def _out_exists(work: Path, face: Path) -> list[str]:
    (work / "out").mkdir()
    (work / "out" / "keep.txt").write_text("x")
    return [str(face), "-o", str(work / "out")]


def _out_under_file(work: Path, face: Path) -> list[str]:
    (work / "blocker").write_text("x")
    return [str(face), "-o", str(work / "blocker" / "sub")]


def _clobber_input(work: Path, face: Path) -> list[str]:
    local = work / "photos"
    local.mkdir()
    copy = local / face.name
    copy.write_bytes(face.read_bytes())
    return [str(copy), "-o", str(local), "--force"]


def _non_utf8(work: Path, face: Path) -> list[str]:
    raw = bytes(work) + b"/gr\xe9y.png"
    name = raw.decode("utf-8", "surrogateescape")
    _grey().save(name, format="PNG")
    return [name, "-o", str(work / "out")]


def _symlink_loop(work: Path, face: Path) -> list[str]:
    (work / "a.jpg").symlink_to(work / "b.jpg")
    (work / "b.jpg").symlink_to(work / "a.jpg")
    return [str(work / "a.jpg"), "-o", str(work / "out")]


def _garbage_weights(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    def fill(wdir: Path) -> None:
        (wdir / name).write_bytes(data() if callable(data) else data)
    return fill


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


_TASK_MEMBERS = ("face_detector.tflite", "face_landmarks_detector.tflite", "geometry_pipeline_metadata_landmarks.binarypb")


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _evil_pickle() -> bytes:
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    buf = io.BytesIO()
    torch.save({"x": Evil()}, buf, pickle_module=pickle)
    return buf.getvalue()


def _encoder_arg(name: str, data: Callable[[], bytes]) -> Callable[[Path, Path], list[str]]:
    def build(work: Path, face: Path) -> list[str]:
        path = work / name
        path.write_bytes(data())
        return [str(face), "-o", str(work / "out"), "--encoder", str(path)]
    return build


CASES: list[Case] = [
    Case("zero-byte jpeg", _file("empty.jpg", b""), ExitCode.BAD_INPUT),
    Case("text named png", _file("text.png", b"not an image at all\n" * 20), ExitCode.BAD_INPUT),
    Case("random bytes jpeg", _file("rand.jpg", bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8))),
         ExitCode.BAD_INPUT),
    Case("truncated png", _file("trunc.png", lambda: _truncated("PNG")), ExitCode.BAD_INPUT),
    Case("truncated jpeg", _file("trunc.jpg", lambda: _truncated("JPEG")), ExitCode.BAD_INPUT),
    Case("tiny image", _image("tiny.png", lambda: Image.new("RGB", (8, 8)), "PNG"), ExitCode.BAD_INPUT),
    Case("one-pixel-high strip", _image("strip.png", lambda: Image.new("RGB", (1000, 1)), "PNG"), ExitCode.BAD_INPUT),
    Case("decompression bomb", _file("bomb.png", _bomb_png), ExitCode.BAD_INPUT),
    Case("heic without decoder", _file("photo.heic", b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64), ExitCode.BAD_INPUT),
    Case("missing file", lambda w, f: [str(w / "nope.jpg"), "-o", str(w / "out")], ExitCode.BAD_INPUT),
    Case("directory as photo", lambda w, f: [str(w), "-o", str(w / "out")], ExitCode.BAD_INPUT),
    Case("symlink loop", _symlink_loop, ExitCode.BAD_INPUT),
    Case("flat grey", _image("grey.png", _grey, "PNG"), ExitCode.NO_FACE),
    Case("noise", _image("noise.png", _noise, "PNG"), ExitCode.NO_FACE),
    Case("gradient landscape", _image("grad.jpg", _gradient, "JPEG"), ExitCode.NO_FACE),
    Case("cmyk jpeg no face", _image("cmyk.jpg", lambda: _grey().convert("CMYK"), "JPEG"), ExitCode.NO_FACE),
    Case("palette gif no face", _image("p.gif", lambda: _gradient().convert("P"), "GIF"), ExitCode.NO_FACE),
    Case("16-bit grey no face", _image("g16.png", lambda: Image.fromarray(np.full((200, 200), 30000, np.uint16)), "PNG"),
         ExitCode.NO_FACE),
    Case("non-utf8 file name", _non_utf8, ExitCode.NO_FACE),
    Case("face index out of range", _face_args("--face-index", "7"), ExitCode.NO_FACE),
    Case("unknown option", _face_args("--no-such-flag"), ExitCode.USAGE),
    Case("bad views", _face_args("--views", "left,right"), ExitCode.USAGE),
    Case("texture size too small", _face_args("--texture-size", "8"), ExitCode.USAGE),
    Case("cuda without gpu", _face_args("--device", "cuda:7"), ExitCode.USAGE),
    Case("output is a file", _out_is_file, ExitCode.OUTPUT),
    Case("output exists without --force", _out_exists, ExitCode.OUTPUT),
    Case("output under a file", _out_under_file, ExitCode.OUTPUT),
    Case("output would clobber the input", _clobber_input, ExitCode.OUTPUT),
    Case("garbage bisenet weights", _face_args("--parser", "bisenet"), ExitCode.WEIGHTS,
         _garbage_weights("79999_iter.pth", b"garbage" * 100)),
    Case("wrong-architecture bisenet weights", _face_args("--parser", "bisenet"), ExitCode.WEIGHTS,
         _garbage_weights("79999_iter.pth", lambda: _torch_bytes({"fc.weight": torch.zeros(2, 2)}))),
    Case("truncated generator", _face_args(), ExitCode.WEIGHTS,
         _garbage_weights("stylegan2-ffhq-config-f.pt", lambda: _torch_bytes({"g_ema": {"w": torch.zeros(4000)}})[:3000])),
    Case("random-bytes face_landmarker.task", _face_args(), ExitCode.WEIGHTS,
         _garbage_weights("face_landmarker.task", bytes(np.random.default_rng(5).integers(0, 256, 5000, dtype=np.uint8)))),
    Case("face_landmarker.task without its landmark model", _face_args(), ExitCode.WEIGHTS,
         _garbage_weights("face_landmarker.task", lambda: _zip_bytes({"face_detector.tflite": b"x" * 100}))),
    Case("face_landmarker.task with garbage models", _face_args(), ExitCode.WEIGHTS,
         _garbage_weights("face_landmarker.task", lambda: _zip_bytes({m: b"garbage" * 50 for m in _TASK_MEMBERS}))),
    Case("code-executing encoder pickle", _encoder_arg("enc.pt", _evil_pickle), ExitCode.WEIGHTS),
    Case("encoder .pkl without trust", _encoder_arg("enc.pkl", lambda: b"\x80\x04garbage"), ExitCode.WEIGHTS),
]
