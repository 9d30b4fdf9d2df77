"""`batch --engine ray`: a local Ray instance with 2 actors gives the same outputs as the local engine
(result.json equal apart from timings, textures byte-identical); a worker killed under an item re-queues
it once, a second kill records it failed; resume skips done photos; a missing Ray is a usage error."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageOps

from mvinvert_cli.batch import discover, run_batch
from mvinvert_cli.cli import main
from mvinvert_cli.config import Settings
from mvinvert_cli.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]
TIMING_KEYS = {"timings", "load_seconds", "seconds"}


def _faces(folder: Path) -> list[str]:
    """Six small portraits from the two bundled examples (mirrored / rescaled copies)."""
    folder.mkdir()
    astronaut = Image.open(REPO / "examples" / "skimage_astronaut.png").convert("RGB").resize((256, 256))
    obama = Image.open(REPO / "examples" / "facerec_obama.jpg").convert("RGB")
    obama = obama.resize((320, round(320 * obama.height / obama.width)))
    astronaut.save(folder / "astronaut.png")
    obama.save(folder / "obama.jpg")
    ImageOps.mirror(obama).save(folder / "kill_once.jpg")
    astronaut.resize((224, 224)).save(folder / "kill_twice.png")
    ImageOps.mirror(astronaut).save(folder / "astronaut_mirror.png")
    obama.resize((288, round(288 * obama.height / obama.width))).save(folder / "obama_small.jpg")
    return sorted(p.name for p in folder.iterdir())


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_ray_matches_local_and_survives_killed_workers(tmp_path, capsys):
    ray = pytest.importorskip("ray")
    from mvinvert_cli.batch_ray import run_batch_ray

    photos = tmp_path / "photos"
    names = _faces(photos)
    settings = Settings(device="cpu", texture_size=64, refine=False, views=((0.0, 0.0),))

    local_out = tmp_path / "local"
    local_out.mkdir()
    local_items = [i for i in discover([str(photos)], local_out) if i.display != "kill_twice.png"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray actor on this 2-core machine (and no oversubscription here)
    try:
        local = run_batch(local_items, settings, local_out)
    finally:
        torch.set_num_threads(threads)
    assert [r.status for r in local] == ["ok"] * (len(names) - 1)

    ray_out = tmp_path / "ray"
    ray_out.mkdir()
    dispatched: list[tuple[str, int, int]] = []

    def kill(item, attempt, pid):
        dispatched.append((item.display, attempt, pid))
        if item.display == "kill_twice.png" or (item.display == "kill_once.jpg" and attempt == 1):
            os.kill(pid, signal.SIGKILL)

    results = run_batch_ray(discover([str(photos)], ray_out), settings, ray_out, workers=2, on_dispatch=kill)
    assert not ray.is_initialized()  # the local instance it started is shut down
    by_name = {r.display: r for r in results}
    assert sorted(by_name) == names
    assert by_name["kill_twice.png"].status == "failed"
    assert "worker crashed" in by_name["kill_twice.png"].error
    assert by_name["kill_twice.png"].exit_code == int(ExitCode.INTERNAL)
    assert [a for n, a, _ in dispatched if n == "kill_once.jpg"] == [1, 2]
    assert [a for n, a, _ in dispatched if n == "kill_twice.png"] == [1, 2]
    assert len({pid for _, _, pid in dispatched}) >= 3  # killed actors were replaced
    assert not (ray_out / "kill_twice").exists()
    assert not [p.name for p in ray_out.iterdir() if p.name.startswith(".")]  # no staging leftovers

    log = [json.loads(line) for line in (ray_out / "batch.jsonl").read_text().splitlines()]
    assert sorted(entry["display"] for entry in log) == names
    for item in local:
        name = Path(item.out_dir).name
        assert by_name[item.display].status == "ok", by_name[item.display].error
        local_doc = json.loads((local_out / name / "result.json").read_text())
        ray_doc = json.loads((ray_out / name / "result.json").read_text())
        assert local_doc["input"]["sha256"] == ray_doc["input"]["sha256"]
        assert _without_timings(local_doc) == _without_timings(ray_doc), name
        for rel in ("texture.png", "mesh.obj", "coarse_texture.png"):
            assert (local_out / name / rel).read_bytes() == (ray_out / name / rel).read_bytes(), (name, rel)

    # resume through the CLI: the done photos are skipped without starting Ray
    done = [str(photos / n) for n in names if n != "kill_twice.png"]
    capsys.readouterr()
    code = main(["-q", "batch", *done, "-o", str(ray_out), "--engine", "ray", "--no-refine",
                 "--texture-size", "64", "--views", "0", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["skipped"] == len(done) and summary["ok"] == 0
    assert not ray.is_initialized()


def test_missing_ray_is_a_usage_error(tmp_path, monkeypatch, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(REPO / "examples" / "facerec_obama.jpg", photos / "a.jpg")
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    code = main(["batch", str(photos), "-o", str(tmp_path / "out"), "--engine", "ray"])
    assert code == int(ExitCode.USAGE)
    assert "mvinvert[ray]" in capsys.readouterr().err
    assert not (tmp_path / "out" / "a").exists()


def test_ray_options_need_the_ray_engine(tmp_path, capsys):
    code = main(["batch", str(tmp_path), "-o", str(tmp_path / "out"), "--address", "auto"])
    assert code == int(ExitCode.USAGE)
    assert "--engine ray" in capsys.readouterr().err


def test_interrupt_stops_workers_without_partial_outputs(tmp_path):
    pytest.importorskip("ray")
    photos = tmp_path / "photos"
    _faces(photos)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mvinvert_cli", "-q", "batch", str(photos), "-o", str(out), "--engine", "ray",
         "--jobs", "2", "--no-refine", "--texture-size", "64", "--views", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:  # interrupt once the first photo is done
        if (out / "batch.jsonl").exists():
            break
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == int(ExitCode.INTERRUPTED), err.decode()[-2000:]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no staging folders left
    done = [p for p in out.iterdir() if p.is_dir()]
    assert 1 <= len(done) < 6  # stopped mid-run
    for folder in done:
        assert json.loads((folder / "result.json").read_text())["status"] == "ok"  # only finished photos
