"""Unreadable inputs as a non-root user get exit 3 (bad input) with the reason, never exit 2 or 10:
a file without read permission, a file inside a folder that cannot be searched, and, in batch, a folder
that cannot be listed; for recover, batch, align, fit, invert, render and eval. As root the child process drops to ``nobody`` after warming up its imports
(the interpreter itself may live where ``nobody`` cannot read)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mvinvert_cli.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "skimage_astronaut.png"

_CHILD = """
import json, os, sys
from mvinvert_cli.cli import main
d = sys.argv[1]
import importlib, pkgutil, mvinvert_cli  # every module, then each command once on bad input, as root
for info in pkgutil.walk_packages(mvinvert_cli.__path__, "mvinvert_cli."):
    if not info.name.endswith("__main__"):
        try:
            importlib.import_module(info.name)
        except ImportError:  # optional extras (ray, video)
            pass
warm = main(["-q", "recover", "--no-refine", f"{d}/bad.png", "-o", f"{d}/warm"])
for argv in (["batch", "--no-refine", f"{d}/bad.png"], ["align", f"{d}/bad.png"], ["fit", f"{d}/bad.png"],
             ["invert", f"{d}/bad.png"], ["render", f"{d}/bad.obj"], ["eval", "--no-refine", f"{d}/bad.png"]):
    main(["-q", *argv, "-o", f"{d}/warm_{argv[0]}"])
if os.geteuid() == 0:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
codes = {name: main(["-q", *argv]) for name, argv in {
    "recover_unreadable": ["recover", "--no-refine", f"{d}/unreadable.png", "-o", f"{d}/o1"],
    "recover_in_locked": ["recover", "--no-refine", f"{d}/locked/in.png", "-o", f"{d}/o2"],
    "batch_locked_folder": ["batch", f"{d}/locked", "-o", f"{d}/o3"],
    "batch_unreadable": ["batch", "--no-refine", f"{d}/unreadable.png", f"{d}/locked/in.png", "-o", f"{d}/o4"],
    "align_unreadable": ["align", f"{d}/unreadable.png", "-o", f"{d}/o5"],
    "fit_in_locked": ["fit", f"{d}/locked/in.png", "-o", f"{d}/o6"],
    "invert_unreadable": ["invert", f"{d}/unreadable.png", "-o", f"{d}/o7"],
    "render_unreadable": ["render", f"{d}/unreadable.obj", "-o", f"{d}/o8"],
    "eval_unreadable": ["eval", "--no-refine", f"{d}/unreadable.png", "-o", f"{d}/o9"],
}.items()}
print(json.dumps({"warm": warm, **codes}))
"""


@pytest.fixture
def open_dir():
    """A scratch folder the unprivileged user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="mvinvert-unpriv-"))
    os.chmod(path, 0o777)
    yield path
    for sub in path.rglob("*"):  # let root delete what it locked
        if sub.is_dir() and not sub.is_symlink():
            os.chmod(sub, 0o700)
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _as_nobody():
    """Effective uid ``nobody`` inside the block (file access checks use it), root again after."""
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch the effective uid")
def test_load_image_and_discover_unreadable_as_nobody(open_dir):
    """In-process and fast: load_image and batch discovery under uid nobody."""
    from mvinvert_cli.batch import discover
    from mvinvert_cli.errors import InputError
    from mvinvert_cli.io.images import load_image

    shutil.copy(EXAMPLE, open_dir / "unreadable.png")
    (open_dir / "locked").mkdir()
    shutil.copy(EXAMPLE, open_dir / "locked" / "in.png")
    os.chmod(open_dir / "unreadable.png", 0)
    os.chmod(open_dir / "locked", 0o700)
    with _as_nobody():
        with pytest.raises(InputError, match="unreadable.png: permission denied"):
            load_image(open_dir / "unreadable.png")
        with pytest.raises(InputError, match="in.png: permission denied"):
            load_image(open_dir / "locked" / "in.png")
        with pytest.raises(InputError, match="cannot list folder"):
            discover([str(open_dir / "locked")], open_dir / "out")
        items = discover([str(open_dir / "locked" / "in.png"), str(open_dir)], open_dir / "out")
    assert [i.source.name for i in items] == ["in.png", "unreadable.png"]


@pytest.mark.slow
def test_unreadable_inputs_exit_3_as_unprivileged_user(open_dir):
    if os.geteuid() != 0 and os.access("/", os.W_OK):
        pytest.skip("cannot get an unprivileged user here")
    work = open_dir
    (work / "bad.png").write_bytes(b"not an image")
    (work / "bad.obj").write_text("not a mesh\n")
    shutil.copy(EXAMPLE, work / "unreadable.png")
    (work / "unreadable.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (work / "locked").mkdir()
    shutil.copy(EXAMPLE, work / "locked" / "in.png")
    for name in ("unreadable.png", "unreadable.obj"):
        os.chmod(work / name, 0)
    os.chmod(work / "locked", 0o700)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(work), "TORCH_HOME": str(work / "torch"),
           "MVINVERT_WEIGHTS": str(work)}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(work)], cwd=work, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert codes == {"warm": ExitCode.BAD_INPUT, "recover_unreadable": ExitCode.BAD_INPUT,
                     "recover_in_locked": ExitCode.BAD_INPUT, "batch_locked_folder": ExitCode.BAD_INPUT,
                     "batch_unreadable": ExitCode.SOME_FAILED, "align_unreadable": ExitCode.BAD_INPUT,
                     "fit_in_locked": ExitCode.BAD_INPUT, "invert_unreadable": ExitCode.BAD_INPUT,
                     "render_unreadable": ExitCode.BAD_INPUT, "eval_unreadable": ExitCode.SOME_FAILED}, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert any("unreadable.png: permission denied" in line for line in errors), errors
    assert any("cannot list folder" in line and "locked" in line for line in errors), errors
    log = [json.loads(line) for line in (work / "o4" / "batch.jsonl").read_text().splitlines()]
    assert [(e["status"], e["exit_code"]) for e in log] == [("failed", ExitCode.BAD_INPUT)] * 2
    assert all("permission denied" in e["error"] for e in log)
