"""Robust photo decoding: any file a user may point the tool at becomes an upright RGB float image
or a typed :class:`~mvinvert_cli.errors.InputError` with a one-line reason.

Handles EXIF orientation, every PIL mode (palette, RGBA/LA with transparency composited on white,
grayscale, 16-bit and 32-bit integer/float, CMYK JPEG), animated GIF/WebP/APNG (first frame),
HEIC/AVIF when ``pillow-heif`` is importable, decompression bombs (pixel cap), truncated and
zero-byte files, and very large photos (downscaled to ``max_side`` with a note).
"""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError

MAX_PIXELS = 100_000_000  # refuse to decode more than this (decompression-bomb guard)
DEFAULT_MAX_SIDE = 2048  # photos are downscaled so the long side is at most this
MIN_SIDE = 32  # smaller images cannot hold a face we can fit

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".heic",
     ".heif", ".avif", ".jfif"}
)

try:  # optional HEIC/AVIF support
    from pillow_heif import register_heif_opener  # type: ignore[import-not-found]

    register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - depends on the environment
    HEIF_SUPPORTED = False


@dataclass
class Photo:
    """A decoded photo.

    Attributes:
        rgb: float32 array (H, W, 3), RGB in [0, 1], EXIF-upright.
        path: where it came from (None for in-memory images).
        original_size: (width, height) of the file before any downscaling.
        scale: factor applied to the original (1.0 unless the size cap downscaled it).
        notes: human-readable remarks about the decoding (downscaled, alpha composited, ...).
    """

    rgb: np.ndarray
    path: Path | None = None
    original_size: tuple[int, int] = (0, 0)
    scale: float = 1.0
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of :attr:`rgb`."""
        return self.rgb.shape[1], self.rgb.shape[0]


def _to_rgb_array(img: Image.Image, notes: list[str]) -> np.ndarray:
    """Convert any PIL mode to float32 RGB in [0, 1]."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16).astype(np.float32) / 65535.0
        notes.append("16-bit grayscale")
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "I":
        arr = np.asarray(img, dtype=np.int64).astype(np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        notes.append("32-bit integer image")
        return np.repeat(np.clip(arr / top, 0, 1).astype(np.float32)[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise InputError("image contains non-finite pixel values")
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
        arr = (arr - lo) / (hi - lo) if hi > 1 or lo < 0 else arr
        return np.repeat(np.clip(arr, 0, 1)[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        arr = np.asarray(rgba, dtype=np.float32) / 255.0
        alpha = arr[..., 3:4]
        if float(alpha.min()) < 1.0:
            notes.append("transparency composited on white")
        return arr[..., :3] * alpha + (1.0 - alpha)
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


EXIF_ORIENTATION = 0x0112  # the EXIF tag; 1 = upright, 2-8 = mirrored and/or rotated


def decode_image(source: Image.Image, path: Path | None = None, max_side: int = DEFAULT_MAX_SIDE) -> Photo:
    """Turn an opened PIL image into a :class:`Photo` (first frame, upright, RGB, size-capped)."""
    notes: list[str] = []
    if getattr(source, "n_frames", 1) > 1:
        source.seek(0)
        pages = source.format in ("TIFF", "MPO", "PDF") or not getattr(source, "is_animated", True)
        notes.append(f"{source.n_frames}-page {source.format} file: first page used" if pages
                     else "animated image: first frame used")
    width, height = source.size
    if width * height > MAX_PIXELS:
        raise InputError(f"image is {width}x{height} = {width * height / 1e6:.0f} MP, over the "
                         f"{MAX_PIXELS / 1e6:.0f} MP limit (possible decompression bomb)")
    try:
        source.load()
        orientation = source.getexif().get(EXIF_ORIENTATION, 1)
        upright = ImageOps.exif_transpose(source) if orientation != 1 else source
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"corrupt or truncated image data ({exc})") from exc
    if orientation != 1:
        notes.append(f"EXIF orientation {orientation} applied")
    rgb = _to_rgb_array(upright, notes)
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputError(f"image is only {w}x{h} pixels; need at least {MIN_SIDE} on each side")
    scale = 1.0
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        new_size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb8 = Image.fromarray(to_uint8(rgb))
        rgb = np.asarray(rgb8.resize(new_size, Image.LANCZOS), dtype=np.float32) / 255.0
        notes.append(f"downscaled from {w}x{h} to {new_size[0]}x{new_size[1]} (max side {max_side})")
    return Photo(np.ascontiguousarray(rgb, dtype=np.float32), path, (width, height), scale, notes)


def load_image(path: str | os.PathLike, max_side: int = DEFAULT_MAX_SIDE) -> Photo:
    """Read a photo from disk.

    Raises:
        InputError: missing, unreadable, not a regular file (folder, FIFO, device, socket: named as
            such, never opened blocking), empty, not an image, unsupported, corrupt, truncated, too
            large (pixel cap) or too small.
    """
    path = Path(path)
    shown = os.fsencode(path).decode("utf-8", "backslashreplace")
    info = _stat_regular(path, shown)
    if info.st_size == 0:
        raise InputError(f"{shown}: empty file (0 bytes)")
    if path.suffix.lower() in (".heic", ".heif", ".avif") and not HEIF_SUPPORTED:
        raise InputError(f"{shown}: unsupported format {path.suffix} (install pillow-heif for HEIC/AVIF)")
    try:  # non-blocking open: a FIFO swapped in after the check cannot hang us
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except PermissionError as exc:
        raise InputError(f"{shown}: permission denied (cannot read the file)") from exc
    except OSError as exc:
        raise InputError(f"{shown}: cannot read ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "rb") as handle, warnings.catch_warnings():
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise InputError(f"{shown}: {file_kind(os.fstat(handle.fileno()).st_mode)}, not an image file")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(handle) as img:
                return decode_image(img, path, max_side)
        except InputError as exc:
            raise InputError(f"{shown}: {exc}") from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputError(f"{shown}: too many pixels (possible decompression bomb)") from exc
        except UnidentifiedImageError as exc:
            raise InputError(f"{shown}: not an image or unsupported format") from exc
        except PermissionError as exc:
            raise InputError(f"{shown}: permission denied") from exc
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
            raise InputError(f"{shown}: corrupt or truncated image ({type(exc).__name__})") from exc


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "is a character device"
    if stat.S_ISBLK(mode):
        return "is a block device"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    return "is not a regular file"


def _stat_regular(path: Path, shown: str) -> os.stat_result:
    """``stat`` that tells missing, unreachable (permission), folders, FIFOs and devices apart.

    Raises:
        InputError: anything but an existing regular file (following symlinks).
    """
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise InputError(f"{shown}: no such file") from exc
    except PermissionError as exc:
        raise InputError(f"{shown}: permission denied (a folder on its path cannot be searched)") from exc
    except OSError as exc:  # symlink loops, name too long, I/O errors
        raise InputError(f"{shown}: cannot read ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{shown}: is a directory, not an image (use `mvinvert batch` for folders)")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{shown}: {file_kind(info.st_mode)}, not an image file")
    return info


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float [0, 1] image (NaN → 0) to uint8, rounded."""
    return np.clip(np.nan_to_num(np.asarray(rgb, dtype=np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def save_image(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write float [0,1] or uint8 RGB(A) as PNG/JPEG atomically (format from the suffix)."""
    from .atomic import atomic_write

    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        arr = to_uint8(arr)
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    return atomic_write(path, lambda tmp: Image.fromarray(arr).save(tmp, format=fmt))
