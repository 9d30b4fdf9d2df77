"""Run one bench script as it was at an earlier commit and as it is now, alternately, and print both.

For benches that do not import the old package themselves (bench_fit, bench_render, bench_invert,
bench_train, quality, ...): the revision's ``mvinvert_cli/``, ``bench/``, ``tests/`` and
``examples/`` are extracted next to this checkout (so ``../shared`` resolves the same way), and the
old and new script run as subprocesses in turn, ``--rounds`` times (A B A B ...), so machine load
hits both alike. Each run's output is printed under its label; lines that hold numbers are the
before/after figures to compare. Default revision: main before the architecture issue (14).

    python bench/before_after.py bench_fit.py [--rev 520d857] [--rounds 2] [-- bench args]
"""

from __future__ import annotations

import argparse
import atexit
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE_REV = "520d857"  # main before issue 14 (render layer, refine path, pipeline split)
TREE_PATHS = ("mvinvert_cli", "bench", "tests", "examples")


def extract(rev: str) -> Path:
    """The revision's :data:`TREE_PATHS` in a fresh folder beside this checkout (a temp folder when
    the parent is not writable); removed at exit."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only", rev], capture_output=True, text=True)
    if listed.returncode != 0:
        raise SystemExit(f"error: {rev} is not a commit of this repository")
    present = [p for p in TREE_PATHS if p in listed.stdout.split()]
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, *present], capture_output=True)
    try:
        root = Path(tempfile.mkdtemp(prefix=f".mvinvert_{rev}_", dir=REPO.parent))
    except OSError:
        root = Path(tempfile.mkdtemp(prefix=f"mvinvert_{rev}_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(root, filter="data")
    return root


def run(tree: Path, script: str, args: list[str], timeout: float) -> tuple[float, int, str]:
    """(wall seconds, exit code, stdout + stderr) of ``tree/bench/script`` with ``tree`` on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, str(tree / "bench" / script), *args], cwd=tree, env=env,
                              capture_output=True, text=True, timeout=timeout)
        return time.perf_counter() - start, done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        return time.perf_counter() - start, 124, f"{exc.stdout or ''}{exc.stderr or ''}\n(timed out after {timeout:.0f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", help="bench file name, e.g. bench_fit.py")
    parser.add_argument("--rev", default=ARCHITECTURE_REV, help="the 'before' git revision")
    parser.add_argument("--rounds", type=int, default=1, help="alternating before/after rounds")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    ns, args = parser.parse_args(argv[:cut]), argv[cut + 1:]  # after --: the bench's own arguments
    before = extract(ns.rev)
    if not (before / "bench" / ns.script).is_file():
        raise SystemExit(f"error: bench/{ns.script} does not exist at {ns.rev}")
    print(f"{ns.script}: before = {ns.rev}, after = this checkout; {ns.rounds} alternating round(s); "
          f"load average {os.getloadavg()[0]:.1f} at start")
    for index in range(ns.rounds):
        for label, tree in (("before", before), ("after", REPO)):
            seconds, code, output = run(tree, ns.script, args, ns.timeout)
            print(f"\n===== {label} ({ns.rev if label == 'before' else 'now'}), round {index + 1}: "
                  f"exit {code}, {seconds:.1f} s wall =====")
            print(output.rstrip())
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
