"""train.data: cached preparation (hit, invalidation, skipped photos), texture folders, collation."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from mvinvert_cli.errors import InputError, NoFaceError
from mvinvert_cli.io.images import save_image
from mvinvert_cli.train import data


def _folder(tmp_path, n=3, size=40):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        save_image(folder / f"p{i}.png", rng.random((size, size, 3)).astype(np.float32))
    return folder


def test_prepare_once_then_cached(tmp_path):
    folder = _folder(tmp_path)
    calls = []

    def prepare(photo):
        calls.append(photo.path.name)
        return {"crop": photo.rgb[:8, :8], "mask": photo.rgb[:8, :8, 0] > 0.5, "n": np.array(len(calls))}

    ds = data.FaceImageFolder(folder, tmp_path / "cache", prepare, version="v1")
    assert len(ds) == 3 and ds.prepared == 3 and ds.cached == 0 and calls == ["p0.png", "p1.png", "p2.png"]
    item = ds[1]
    assert item["crop"].dtype == torch.float32 and item["crop"].shape == (8, 8, 3)
    assert item["mask"].dtype == torch.float32 and item["n"].dtype == torch.int64 and item["index"] == 1
    again = data.FaceImageFolder(folder, tmp_path / "cache", prepare, version="v1")
    assert again.cached == 3 and again.prepared == 0 and len(calls) == 3
    assert torch.equal(again[1]["crop"], item["crop"])
    data.FaceImageFolder(folder, tmp_path / "cache", prepare, version="v2")  # new version: redone
    assert len(calls) == 6
    os.utime(folder / "p0.png", ns=(1, 1))  # touched photo: redone
    data.FaceImageFolder(folder, tmp_path / "cache", prepare, version="v2")
    assert calls[-1] == "p0.png" and len(calls) == 7
    assert not list((tmp_path / "cache").glob(".*tmp*"))


def test_skipped_photos_are_reported(tmp_path):
    folder = _folder(tmp_path)
    (folder / "broken.jpg").write_bytes(b"not an image")
    seen = []

    def prepare(photo):
        if photo.path.name == "p1.png":
            raise NoFaceError("no face found")
        return {"x": np.zeros(2)}

    ds = data.FaceImageFolder(folder, tmp_path / "c", prepare, "v", on_item=lambda *a: seen.append(a[3]))
    assert [p.name for p in ds.paths] == ["p0.png", "p2.png"]
    assert [p.name for p, _ in ds.skipped] == ["broken.jpg", "p1.png"]
    assert "not an image" in ds.skipped[0][1] and "no face" in ds.skipped[1][1]
    assert sum(s.startswith("skipped") for s in seen) == 2


def test_nothing_usable(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match="none of the 1 images"):
        data.FaceImageFolder(folder, tmp_path / "c", lambda p: {"x": np.zeros(1)}, "v")


def test_list_images_exceptions(tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        data.list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        data.list_images(tmp_path / "empty")


def test_texture_folder(tmp_path):
    folder = tmp_path / "tex"
    folder.mkdir()
    save_image(folder / "a.png", np.full((64, 96, 3), 0.25, np.float32))
    save_image(folder / "b.png", np.full((32, 32, 3), 0.75, np.float32))
    ds = data.TextureFolder(folder, size=48)
    assert len(ds) == 2
    assert ds[0].shape == (3, 48, 48) and ds[1].shape == (3, 48, 48)
    assert ds[0].mean().item() == pytest.approx(0.25, abs=0.01)
    assert ds[1].mean().item() == pytest.approx(0.75, abs=0.01)


def test_stack_items():
    batch = data.stack_items([{"a": torch.zeros(2)}, {"a": torch.ones(2)}])
    assert batch["a"].shape == (2, 2)
