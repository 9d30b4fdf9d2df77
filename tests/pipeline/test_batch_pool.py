"""batch --jobs N (batch_pool): worker processes that are SIGKILLed under an item are replaced and the item
retried once; a second crash records it failed; the other photos, finished or not, are unaffected and no
staging folder is left. Real processes and signals; the runner stages its output like recover does."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from mvinvert_cli.batch import BatchItem, ItemResult, discover, run_batch
from mvinvert_cli.config import Settings
from mvinvert_cli.errors import ExitCode, WeightsError
from mvinvert_cli.io.atomic import atomic_dir


def _staging_runner(settings, threads):
    """Worker body: stage the output folder for a moment (so a kill lands mid-write), then publish it."""
    def run(item: BatchItem, force: bool, all_faces: bool) -> ItemResult:
        with atomic_dir(item.out_dir, overwrite=force) as stage:
            (stage / "result.json").write_text(json.dumps({"status": "ok", "pid": os.getpid(), "outputs": {}}))
            time.sleep(0.3)
        return ItemResult(item.display, str(item.source), str(item.out_dir), "ok")

    return run


def _broken_weights_runner(settings, threads):
    raise WeightsError("bad.pth: corrupt or truncated checkpoint")


def _photos(folder: Path, names: list[str]) -> None:
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(name.encode())


def test_killed_worker_is_replaced_and_its_photo_retried_once(tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "out"
    _photos(photos, ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "kill_once.jpg", "kill_twice.jpg"])
    out.mkdir()
    dispatched: list[tuple[str, int, int]] = []

    def kill(item: BatchItem, attempt: int, pid: int) -> None:
        dispatched.append((item.display, attempt, pid))
        if item.display == "kill_twice.jpg" or (item.display == "kill_once.jpg" and attempt == 1):
            deadline = time.time() + 30
            while not list(out.glob(f".{item.out_dir.name}.tmp-{pid}.*")):  # mid-write
                assert time.time() < deadline
                time.sleep(0.005)
            os.kill(pid, signal.SIGKILL)

    results = run_batch(discover([str(photos)], out), Settings(), out, jobs=2, make_runner=_staging_runner,
                        on_dispatch=kill)
    status = {r.display: r for r in results}
    assert len(results) == 6
    assert {n for n, r in status.items() if r.status == "ok"} == {"a.jpg", "b.jpg", "c.jpg", "d.jpg", "kill_once.jpg"}
    assert status["kill_twice.jpg"].status == "failed"
    assert status["kill_twice.jpg"].exit_code == ExitCode.INTERNAL
    assert "SIGKILL" in status["kill_twice.jpg"].error and "twice" in status["kill_twice.jpg"].error
    attempts = {}
    for name, attempt, _ in dispatched:
        attempts[name] = max(attempts.get(name, 0), attempt)
    assert attempts == {"a.jpg": 1, "b.jpg": 1, "c.jpg": 1, "d.jpg": 1, "kill_once.jpg": 2, "kill_twice.jpg": 2}
    pid_of = {(name, attempt): pid for name, attempt, pid in dispatched}
    assert len(set(pid_of.values())) >= 4  # three kills → replacement workers
    assert pid_of["kill_once.jpg", 2] != pid_of["kill_once.jpg", 1]  # retried on a fresh worker
    assert json.loads((out / "kill_once" / "result.json").read_text())["pid"] == pid_of["kill_once.jpg", 2]
    assert not (out / "kill_twice").exists()
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "batch.jsonl", "c", "d", "kill_once"]
    log = [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()]
    assert sorted(entry["display"] for entry in log) == sorted(status)


def test_worker_load_error_is_raised_with_its_exit_code(tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "out"
    _photos(photos, ["a.jpg", "b.jpg"])
    out.mkdir()
    with pytest.raises(WeightsError, match="bad.pth"):
        run_batch(discover([str(photos)], out), Settings(), out, jobs=2, make_runner=_broken_weights_runner)
    assert sorted(p.name for p in out.iterdir()) == []


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pytest.skip("no /proc children list on this system")


@pytest.mark.slow
def test_cli_batch_jobs2_survives_sigkill_of_a_worker(tmp_path):
    """`mvinvert batch --jobs 2` on three real photos; one worker is SIGKILLed while it writes an output:
    every photo still ends ok, exit 0, no staging folder (before: all failed, exit 1, staging left)."""
    import shutil
    import subprocess
    import sys

    from PIL import Image, ImageOps

    repo = Path(__file__).resolve().parents[2]
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    astronaut = Image.open(repo / "examples" / "skimage_astronaut.png").convert("RGB").resize((256, 256))
    astronaut.save(photos / "astronaut.png")
    ImageOps.mirror(astronaut).save(photos / "mirror.png")
    shutil.copy(repo / "examples" / "facerec_obama.jpg", photos / "obama.jpg")
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen([sys.executable, "-m", "mvinvert_cli", "-q", "batch", str(photos), "-o", str(out),
                             "--jobs", "2", "--texture-size", "64", "--no-refine", "--views", "0"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.time() + 300
    while victim is None and time.time() < deadline and proc.poll() is None:
        staging = [p.name for p in out.glob(".*.tmp-*")] if out.is_dir() else []
        children = _children(proc.pid)
        for name in staging:
            owner = [c for c in children if f".tmp-{c}." in name]
            victim = owner[0] if owner else (children[0] if children else None)
        time.sleep(0.01)
    assert victim is not None, proc.communicate()
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    log = [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()]
    assert proc.returncode == 0, (err, log)
    assert sorted((e["display"], e["status"]) for e in log) == [("astronaut.png", "ok"), ("mirror.png", "ok"),
                                                                ("obama.jpg", "ok")]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    for name in ("astronaut", "mirror", "obama"):
        assert json.loads((out / name / "result.json").read_text())["status"] == "ok"
