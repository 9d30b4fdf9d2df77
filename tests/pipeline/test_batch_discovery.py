"""batch.discover / is_complete / resume: recursion, symlink loops, hidden and output folders, stdin,
collisions (order-independent output names), and resume that checks the recorded input sha256."""

from __future__ import annotations

import json
import os

import pytest

from mvinvert_cli.batch import BatchLog, discover, is_complete
from mvinvert_cli.errors import ExitCode, UsageError
from mvinvert_cli.weights import file_sha256


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
    assert outs == ["a_jpg", "a_png", "b", "sub/c"]


def _done(out_dir, source):
    """A finished output folder recording ``source``'s sha256, as recover_to_directory writes it."""
    out_dir.mkdir(parents=True)
    (out_dir / "mesh.obj").write_text("")
    (out_dir / "result.json").write_text(json.dumps({"status": "ok", "input": {"sha256": file_sha256(source)},
                                                     "outputs": {"mesh": "mesh.obj"}}))


def test_added_photo_with_same_stem_is_not_skipped(tmp_path):
    """d/x.png done; adding d/x.jpg must not make x.jpg "skipped" with x.png's result."""
    root, out = tmp_path / "d", tmp_path / "out"
    png = _touch(root / "x.png")
    (first,) = discover([str(root)], out)
    _done(first.out_dir, png)
    jpg = root / "x.jpg"
    jpg.write_bytes(b"other photo")
    items = discover([str(root)], out)
    assert {i.source.name: i.out_dir.name for i in items} == {"x.jpg": "x_jpg", "x.png": "x_png"}
    log = BatchLog(out)
    assert [i.source.name for i in log.pending(items, force=False)] == ["x.jpg", "x.png"]
    assert log.results == []


def test_stdin_order_does_not_change_output_folders(tmp_path):
    a, b = _touch(tmp_path / "a" / "p.jpg"), _touch(tmp_path / "b" / "p.jpg")
    c = _touch(tmp_path / "a" / "q.jpg")
    forward = discover(["-"], tmp_path / "out", stdin_lines=[f"{a}\n", f"{b}\n", f"{c}\n", f"{a}\n"])
    backward = discover(["-"], tmp_path / "out", stdin_lines=[f"{c}\n", f"{b}\n", f"{a}\n"])
    assert len(forward) == 3  # a listed twice is processed once
    assert {i.source: i.out_dir for i in forward} == {i.source: i.out_dir for i in backward}
    assert len({i.out_dir for i in forward}) == 3
    assert {i.source: i.out_dir.name for i in forward}[c] == "q"


def test_resume_skips_only_the_recorded_input(tmp_path):
    root, out = tmp_path / "d", tmp_path / "out"
    photo = _touch(root / "x.png")
    (item,) = discover([str(root)], out)
    _done(item.out_dir, photo)
    log = BatchLog(out)
    assert log.pending([item], force=False) == []
    assert [r.status for r in log.results] == ["skipped"]
    photo.write_bytes(b"a different photo now")  # same name, other content
    log = BatchLog(out)
    assert log.pending([item], force=False) == []
    (result,) = log.results
    assert result.status == "failed" and result.exit_code == ExitCode.OUTPUT
    assert "sha256" in result.error and "--force" in result.error
    assert BatchLog(out).pending([item], force=True) == [item]


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
