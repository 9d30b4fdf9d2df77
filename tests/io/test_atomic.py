"""io.atomic: files and directories appear whole or not at all; of two concurrent writers of one output
folder exactly one wins (real processes); staging folders of killed processes are removed by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mvinvert_cli.errors import ExitCode, OutputError
from mvinvert_cli.io import atomic
from mvinvert_cli.io.atomic import atomic_dir, atomic_open, atomic_write_text, remove_stale_temporaries

REPO = Path(__file__).resolve().parents[2]

# one writer: stage `target`, write its name into it, announce `ready`, wait for `go`, publish
_WRITER = """
import sys, time
from pathlib import Path
from mvinvert_cli.cli import main  # noqa: F401  (same import path as the CLI)
from mvinvert_cli.errors import OutputError
from mvinvert_cli.io.atomic import atomic_dir
target, ready, go, name = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
try:
    with atomic_dir(target) as stage:
        (stage / "writer").write_text(name)
        ready.write_text("")
        while not go.exists():
            time.sleep(0.01)
except OutputError as exc:
    print(exc, file=sys.stderr)
    sys.exit(int(exc.exit_code))
"""


def _spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", _WRITER, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(paths: list[Path], procs: list[subprocess.Popen], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not all(p.exists() for p in paths):
        assert time.time() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.02)


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


def test_two_processes_one_output_exactly_one_wins(tmp_path):
    """Both writers stage at the same time and publish at once: one exits 0, the other exit 6 saying why,
    and the folder holds the winner's files only (before: both exited 0 and the second replaced the first)."""
    target, go = tmp_path / "x", tmp_path / "go"
    procs = [_spawn(str(target), str(tmp_path / f"ready{i}"), str(go), f"w{i}") for i in range(2)]
    _wait_for([tmp_path / "ready0", tmp_path / "ready1"], procs)
    go.write_text("")
    outcomes = [(p.wait(timeout=60), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, ExitCode.OUTPUT], outcomes
    loser_err = next(err for code, err in outcomes if code)
    assert "created by another process" in loser_err and "--force" in loser_err
    winner = f"w{[code for code, _ in outcomes].index(0)}"
    assert (target / "writer").read_text() == winner
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "ready0", "ready1", "x"]


def test_exclusive_rename_refuses_existing_and_empty_targets(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileExistsError):
        atomic.rename_noreplace(src, tmp_path / "empty")  # a plain rename would replace an empty folder
    atomic.rename_noreplace(src, tmp_path / "new")
    assert (tmp_path / "new").is_dir() and not src.exists()


def test_exclusive_rename_fallback_without_renameat2(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_RENAMEAT2", None)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        atomic.rename_noreplace(src, tmp_path / "taken")
    atomic.rename_noreplace(src, tmp_path / "dst")
    assert (tmp_path / "dst" / "f").read_text() == "x"


def test_killed_writer_staging_removed_by_next_run(tmp_path):
    """SIGKILL inside atomic_dir leaves a staging folder; the next atomic_dir in that folder deletes it,
    while a live writer's staging folder next to it is kept."""
    out = tmp_path / "out"
    out.mkdir()
    go = tmp_path / "never"
    killed = _spawn(str(out / "a"), str(tmp_path / "ready_a"), str(go), "a")
    alive = _spawn(str(out / "b"), str(tmp_path / "ready_b"), str(go), "b")
    try:
        _wait_for([tmp_path / "ready_a", tmp_path / "ready_b"], [killed, alive])
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        stale = [p for p in out.iterdir() if p.name.startswith(".a.tmp-")]
        assert len(stale) == 1 and str(killed.pid) in stale[0].name
        with atomic_dir(out / "c") as stage:
            (stage / "f").write_text("c")
        names = sorted(p.name for p in out.iterdir())
        assert not [n for n in names if n.startswith(".a.")], names
        assert [n for n in names if n.startswith(".b.tmp-")], names  # the live writer's folder survives
        assert "c" in names
    finally:
        alive.kill()
        alive.wait(timeout=30)


def test_remove_stale_only_touches_dead_owners_of_this_host(tmp_path):
    dead = 2**22 + 12345  # above pid_max's default range: no such process
    while atomic._pid_alive(dead):
        dead += 1
    (tmp_path / f".x.tmp-{dead}.{atomic.HOST_TAG}-abc").write_text("")
    (tmp_path / f".d.tmp-{dead}.{atomic.HOST_TAG}-k2_z").mkdir()
    (tmp_path / f".mine.tmp-{os.getpid()}.{atomic.HOST_TAG}-abc").mkdir()
    (tmp_path / f".other.tmp-{dead}.0000abcd-abc").mkdir()  # another node's: its pid means nothing here
    (tmp_path / ".legacy.tmp-abc").mkdir()
    assert remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name[:6] for p in tmp_path.iterdir()) == [".legac", ".mine.", ".other"]
