"""Training data: a folder of face photos whose per-image preparation (alignment, fit) is cached
to disk, and a folder of real UV textures for the texture discriminator (Eq. 10).

Preparing a photo (detect, align, fit the 3DMM) costs seconds; training revisits each photo many
times, so :class:`FaceImageFolder` runs the caller's ``prepare`` function once per photo and keeps
its arrays in ``cache_dir/<stem>-<key>.npz``. The key hashes the photo's path, size and mtime and
the preparation's ``version`` string, so an edited photo or a changed preparation is redone and a
stale entry is never read. Photos that cannot be prepared (no face, unreadable) are skipped and
reported in :attr:`FaceImageFolder.skipped`, never silently dropped.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError, MvInvertError, UsageError
from ..io.atomic import atomic_write
from ..io.images import IMAGE_SUFFIXES, Photo, load_image

Prepare = Callable[[Photo], dict[str, np.ndarray]]
"""Per-photo preparation: a decoded photo → named arrays (e.g. ``crop`` (224,224,3), ``mask``)."""


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Image files under ``directory`` (recursive, hidden entries ignored), sorted by path.

    Raises:
        InputError: the directory is missing or holds no image.
    """
    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory of images")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise InputError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def cache_key(path: Path, version: str) -> str:
    """12 hex digits identifying (photo path, size, mtime, preparation version)."""
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{version}"
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    atomic_write(path, writer)


class FaceImageFolder(torch.utils.data.Dataset):
    """Face photos with their preparation cached to disk.

    Args:
        images_dir: folder of photos (searched recursively).
        cache_dir: where the ``.npz`` preparations are kept (created if needed).
        prepare: photo → dict of arrays; raise a :class:`~mvinvert_cli.errors.MvInvertError`
            (e.g. ``NoFaceError``) for a photo that cannot be used.
        version: identifies ``prepare`` (backends, sizes); part of the cache key.
        on_item: optional callback ``(index, total, path, status)`` with status "cached",
            "prepared" or "skipped: <reason>" (progress display).

    Items are dicts of float32/int64 tensors named as ``prepare`` named its arrays, plus ``index``.

    Attributes:
        paths: the usable photos, in order.
        skipped: (photo, one-line reason) for every photo that could not be prepared.
        cached / prepared: how many came from the cache / were prepared now.
    """

    def __init__(self, images_dir: str | os.PathLike, cache_dir: str | os.PathLike, prepare: Prepare,
                 version: str, on_item: Callable[[int, int, Path, str], None] | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.paths: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []
        self.cached = self.prepared = 0
        self._entries: list[Path] = []
        photos = list_images(images_dir)
        for i, path in enumerate(photos):
            entry = self.cache_dir / f"{path.stem}-{cache_key(path, version)}.npz"
            status = "cached"
            if entry.is_file():
                self.cached += 1
            else:
                try:
                    arrays = prepare(load_image(path))
                except MvInvertError as exc:
                    self.skipped.append((path, str(exc)))
                    if on_item:
                        on_item(i, len(photos), path, f"skipped: {exc}")
                    continue
                _write_npz(entry, {k: np.asarray(v) for k, v in arrays.items()})
                self.prepared += 1
                status = "prepared"
            self.paths.append(path)
            self._entries.append(entry)
            if on_item:
                on_item(i, len(photos), path, status)
        if not self.paths:
            reasons = "; ".join(f"{p.name}: {r}" for p, r in self.skipped[:3])
            raise InputError(f"{images_dir}: none of the {len(photos)} images could be prepared ({reasons})")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        with np.load(self._entries[index]) as data:
            item = {k: _to_tensor(data[k]) for k in data.files}
        item["index"] = torch.tensor(index)
        return item


def _to_tensor(array: np.ndarray) -> Tensor:
    if array.dtype == np.bool_:
        return torch.from_numpy(array.astype(np.float32))
    if np.issubdtype(array.dtype, np.floating):
        return torch.from_numpy(array.astype(np.float32))
    return torch.from_numpy(array.astype(np.int64))


def resize_square(image: Tensor, size: int) -> Tensor:
    """(3,H,W) → (3,size,size), area-averaged when shrinking, bilinear when enlarging."""
    if image.shape[-2:] == (size, size):
        return image
    shrink = min(image.shape[-2:]) > size
    return F.interpolate(image[None], size=(size, size), mode="area" if shrink else "bilinear",
                         **({} if shrink else {"align_corners": False}))[0]


class TextureFolder(torch.utils.data.Dataset):
    """Real UV textures (the "real" side of Eq. 10), each a (3,size,size) float tensor in [0,1].

    Textures must share the layout of the model's UV map (u right, v up, as written to
    texture.png). Non-square files are resized to a square. All textures are decoded when the
    folder is opened (3·size²·4 bytes each, 0.75 MB at 256), so an unreadable file raises
    :class:`~mvinvert_cli.errors.InputError` up front rather than mid-training.
    """

    def __init__(self, directory: str | os.PathLike, size: int = 256) -> None:
        self.size = size
        self.paths = list_images(directory)
        self._textures = [self._load(p) for p in self.paths]

    def _load(self, path: Path) -> Tensor:
        photo = load_image(path, max_side=max(4 * self.size, 1024))
        return resize_square(torch.from_numpy(photo.rgb).permute(2, 0, 1).contiguous(), self.size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor:
        return self._textures[index]


def stack_items(items: Iterable[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Collate :class:`FaceImageFolder` items into a batch (every field stacked on dim 0)."""
    items = list(items)
    if not items:
        raise UsageError("empty batch")
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
