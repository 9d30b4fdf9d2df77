"""io.atomic: files and directories appear whole or not at all."""

from __future__ import annotations

import pytest

from mvinvert_cli.errors import OutputError
from mvinvert_cli.io.atomic import atomic_dir, atomic_open, atomic_write_text, remove_stale_temporaries


def test_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failed_writer_keeps_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(ZeroDivisionError):
        with atomic_open(target) as handle:
            handle.write("new")
            raise ZeroDivisionError
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_commit_and_abort(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as stage:
        (stage / "f").write_text("x")
        assert not out.exists()
    assert (out / "f").read_text() == "x"
    with pytest.raises(OutputError, match="--force"):
        with atomic_dir(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic_dir(out, overwrite=True) as stage:
            (stage / "g").write_text("y")
            raise RuntimeError
    assert sorted(p.name for p in out.iterdir()) == ["f"]
    with atomic_dir(out, overwrite=True) as stage:
        (stage / "g").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["g"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_unwritable_location(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError):
        atomic_write_text(blocker / "sub" / "x.txt", "data")


def test_remove_stale(tmp_path):
    (tmp_path / ".x.tmp-123").write_text("")
    (tmp_path / ".d.tmp-9").mkdir()
    assert remove_stale_temporaries(tmp_path) == 2
    assert not list(tmp_path.iterdir())
