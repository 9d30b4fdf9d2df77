"""batch.discover / is_complete: recursion, symlink loops, hidden and output folders, stdin, collisions."""

from __future__ import annotations

import json
import os

import pytest

from mvinvert_cli.batch import discover, is_complete
from mvinvert_cli.errors import UsageError


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_recursive_sorted_with_collisions(tmp_path):
    root = tmp_path / "in"
    for rel in ["b.jpg", "a.png", "a.jpg", "sub/c.JPEG", "sub/notes.txt", ".hidden/d.jpg"]:
        _touch(root / rel)
    items = discover([str(root)], tmp_path / "out")
    assert [i.display for i in items] == ["a.jpg", "a.png", "b.jpg", "sub/c.JPEG"]
    outs = [i.out_dir.relative_to(tmp_path / "out").as_posix() for i in items]
    assert outs == ["a", "a_png", "b", "sub/c"]


def test_symlink_loop_and_output_folder_skipped(tmp_path):
    root = tmp_path / "in"
    _touch(root / "x.jpg")
    os.symlink(root, root / "loop")
    _touch(root / "out" / "y.jpg")
    items = discover([str(root)], root / "out")
    assert [i.display for i in items] == ["x.jpg"]


def test_stdin_and_missing(tmp_path):
    a = _touch(tmp_path / "p1.jpg")
    items = discover(["-"], tmp_path / "out", stdin_lines=[f"{a}\n", "\n"])
    assert [i.source for i in items] == [a]
    with pytest.raises(UsageError):
        discover([str(tmp_path / "missing")], tmp_path / "out")


def test_non_utf8_names(tmp_path):
    raw = bytes(tmp_path) + b"/in/caf\xe9.jpg"
    os.makedirs(bytes(tmp_path) + b"/in")
    with open(raw, "wb") as handle:
        handle.write(b"x")
    items = discover([str(tmp_path / "in")], tmp_path / "out")
    assert len(items) == 1 and "\\xe9" in items[0].display


def test_is_complete(tmp_path):
    out = tmp_path / "o"
    assert not is_complete(out)
    out.mkdir()
    (out / "result.json").write_text(json.dumps({"status": "ok", "outputs": {"mesh": "mesh.obj"}}))
    assert not is_complete(out)
    (out / "mesh.obj").write_text("")
    assert is_complete(out)
    (out / "result.json").write_text("{truncated")
    assert not is_complete(out)
