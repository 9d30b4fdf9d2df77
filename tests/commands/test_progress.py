"""commands/_progress: stage lines as the pipeline runs — rich on a terminal (pty), plain lines otherwise."""

from __future__ import annotations

import io
import os
import re
import select
import subprocess
import sys
import time

import pytest
from rich.console import Console

from mvinvert_cli.commands._progress import StageProgress, wall_seconds

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _plain_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=100), buffer


def test_plain_lines_per_stage_with_wall_time():
    console, buffer = _plain_console()
    with StageProgress(console, heartbeat=0) as progress:
        for stage in ("align", "parse", "fit"):
            progress(stage, "start")
            progress(stage, "done")
    lines = buffer.getvalue().splitlines()
    assert [re.sub(r"^\[\s*[\d.]+ s\] ", "", line).split()[0] for line in lines] == ["align", "parse", "fit"]
    assert set(progress.stage_seconds) == {"align", "parse", "fit"}
    assert 0 < wall_seconds() < 3600


def test_heartbeat_while_a_stage_runs():
    console, buffer = _plain_console()
    with StageProgress(console, heartbeat=0.3) as progress:
        progress("invert", "start")
        time.sleep(1.6)
        progress("invert", "done")
    text = buffer.getvalue()
    assert "invert running for" in text and text.rstrip().splitlines()[-1].split("] ")[1].startswith("invert ")


def test_quiet_prints_nothing_but_still_times():
    console, buffer = _plain_console()
    with StageProgress(console, enabled=False) as progress:
        progress("fit", "start")
        progress("fit", "done")
    assert buffer.getvalue() == "" and "fit" in progress.stage_seconds


@pytest.mark.slow  # a real recover: 10-40 s on 2 shared cores
@pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")
def test_recover_on_a_terminal_shows_stages_as_they_run(examples_dir, tmp_path):
    """The acceptance test of issue 19: ≥ 3 stage lines reach the terminal before the run ends."""
    import pty  # noqa: F401  (POSIX only)

    master, slave = os.openpty()
    env = {**os.environ, "PYTHONPATH": REPO, "TERM": "xterm-256color", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "mvinvert_cli", "recover", str(examples_dir / "skimage_astronaut.png"),
                             "-o", str(tmp_path / "out"), "--texture-size", "256", "--no-refine"],
                            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=tmp_path)
    os.close(slave)
    arrivals: list[tuple[float, str]] = []
    pending = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the pty
                break
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            arrivals += [(time.perf_counter(), line.decode("utf-8", "replace")) for line in lines]
        elif proc.poll() is not None:
            break
    finished = time.perf_counter()
    assert proc.wait(timeout=60) == 0, "\n".join(line for _, line in arrivals)
    os.close(master)
    stage_lines = [(t, line) for t, line in arrivals if "✓" in line]
    done = next(t for t, line in arrivals if "done" in line and "wall" in line)
    before_done = [line for t, line in stage_lines if t <= done]
    assert len(before_done) >= 3, arrivals
    assert any(name in " ".join(before_done) for name in ("align", "fit", "coarse"))
    assert stage_lines[0][0] < finished - 0.3  # printed while it ran, not all at the end
