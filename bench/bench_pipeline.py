"""Speed of the default `recover` path on 2 cores (issue 20), before vs after, interleaved.

"Before" is the package at ``bench.baseline.BASELINE_REV`` (main before issue 20), "after" is this
checkout; both run in this process (or as alternating subprocesses for the CLI numbers), so machine
load hits them alike. Prints medians and ratios, never pass/fail:

1. per photo after loading: ``recover_to_directory`` wall time (load, stages, renders, every file),
   old and new Recoverer alternating; per-stage medians of the new one (goal ≤ 1.0 s);
2. cold ``mvinvert recover photo`` end to end: wall time from process start to exit, with the share
   spent in the pipeline itself (result.json's stage total) (goal ≤ 5 s);
3. ``mvinvert recover missing.jpg``: wall time to the error exit (goal ≤ 1.0 s);
4. ``mvinvert batch`` throughput, photos/min, with --jobs 1 and --jobs 2 (--batch-photos photos).

    python bench/bench_pipeline.py [photo] [--repeats 5] [--cold-repeats 3] [--batch-photos 4]
                                   [--threads 2] [--baseline REV] [--skip-cli]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.baseline import BASELINE_REV, baseline_tree, load_baseline  # noqa: E402

FACES = REPO.parent / "shared" / "faces"
DEFAULT_PHOTO = FACES / "hrn_mv_10078.jpg"


def _cli(tree: Path, args: list[str], cwd: Path) -> tuple[float, int]:
    """(wall seconds from process start to exit, exit code) of ``python -m mvinvert_cli args``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mvinvert_cli", *args], cwd=cwd, env=env, capture_output=True)
    return time.perf_counter() - start, done.returncode


def _ratio(before: float, after: float) -> str:
    return f"{before / after:.2f}× faster" if after > 0 else "n/a"


def per_photo(photo: Path, repeats: int, rev: str) -> None:
    from mvinvert_cli.config import Settings
    from mvinvert_cli.pipeline import Recoverer, recover_to_directory

    load_baseline(rev)
    old_config = importlib.import_module("mvinvert_baseline.config")
    old_pipeline = importlib.import_module("mvinvert_baseline.pipeline")
    start = time.perf_counter()
    new = Recoverer(Settings(refine=False))
    load_new = time.perf_counter() - start
    start = time.perf_counter()
    old = old_pipeline.Recoverer(old_config.Settings(refine=False))
    load_old = time.perf_counter() - start
    print(f"photo {photo.name}, {torch.get_num_threads()} torch threads, device {new.device}, no refinement "
          f"(no generator weights)")
    print(f"model loading once per process: before {load_old:.2f} s, after {load_new:.2f} s")
    walls: dict[str, list[float]] = {"before": [], "after": []}
    stages: list[dict[str, float]] = []
    runs = {"before": lambda out: old_pipeline.recover_to_directory(old, photo, out),
            "after": lambda out: recover_to_directory(new, photo, out)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in runs.items():  # warm-up
            run(Path(tmp) / f"warm_{name}")
        for i in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                document = run(Path(tmp) / f"{name}{i}")
                walls[name].append(time.perf_counter() - start)
                if name == "after":
                    stages.append(document["timings"])
        sizes = {name: sum(p.stat().st_size for p in (Path(tmp) / f"{name}0").rglob("*") if p.is_file())
                 for name in runs}
        texture = {name: (Path(tmp) / f"{name}0" / "texture.png").stat().st_size for name in runs}
    before, after = statistics.median(walls["before"]), statistics.median(walls["after"])
    print(f"per photo after loading (recover_to_directory wall, medians of {repeats}, interleaved): "
          f"before {before:.3f} s → after {after:.3f} s, {_ratio(before, after)}; goal ≤ 1.0 s: "
          f"{'met' if after <= 1.0 else 'missed'}")
    print(f"  throughput after loading: {60 / before:.1f} → {60 / after:.1f} photos/min")
    print(f"  output folder {sizes['before'] / 2**20:.2f} → {sizes['after'] / 2**20:.2f} MiB "
          f"(texture.png {texture['before'] / 1e3:.0f} → {texture['after'] / 1e3:.0f} kB: PNG zlib level 6 → 1)")
    print(f"  {'stage (after)':<14}{'median s':>10}{'share':>8}")
    for stage in (k for k in stages[0] if k != "total"):
        median = statistics.median(r.get(stage, 0.0) for r in stages)
        print(f"  {stage:<14}{median:>10.3f}{median / after:>8.1%}")


def cold_cli(photo: Path, repeats: int, batch_photos: int, rev: str) -> None:
    trees = {"before": baseline_tree(rev), "after": REPO}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cold: dict[str, list[float]] = {"before": [], "after": []}
        share: dict[str, list[float]] = {"before": [], "after": []}
        missing: dict[str, list[float]] = {"before": [], "after": []}
        codes = {}
        for i in range(repeats):
            for name, tree in trees.items():
                out = root / f"cold_{name}{i}"
                wall, code = _cli(tree, ["-q", "recover", str(photo), "-o", str(out)], root)
                cold[name].append(wall)
                if code == 0:
                    timings = json.loads((out / "result.json").read_text())["timings"]
                    share[name].append(timings["total"] / wall)
                wall, codes[name] = _cli(tree, ["-q", "recover", str(root / "missing.jpg")], root)
                missing[name].append(wall)
        for name in trees:
            med = statistics.median(cold[name])
            part = f", pipeline {statistics.median(share[name]):.0%} of it" if share[name] else " (failed)"
            print(f"cold `mvinvert recover` end to end, {name:<6}: {med:.2f} s wall from process start{part}")
        after = statistics.median(cold["after"])
        print(f"  cold recover {_ratio(statistics.median(cold['before']), after)}; goal ≤ 5 s: "
              f"{'met' if after <= 5.0 else 'missed'} (medians of {repeats}, interleaved)")
        for name in trees:
            print(f"`mvinvert recover missing.jpg`, {name:<6}: {statistics.median(missing[name]):.2f} s to exit "
                  f"{codes[name]}")
        after = statistics.median(missing["after"])
        print(f"  goal ≤ 1.0 s: {'met' if after <= 1.0 else 'missed'} (error before model loading: issue 19)")

        photos = root / "photos"
        photos.mkdir()
        pool = sorted(p for p in FACES.glob("*.jpg")) or [photo]
        for i in range(batch_photos):
            shutil.copy(pool[i % len(pool)], photos / f"p{i}{pool[i % len(pool)].suffix}")
        for jobs in (1, 2):
            rates = {}
            for name, tree in trees.items():
                wall, code = _cli(tree, ["-q", "batch", str(photos), "-o", str(root / f"batch_{name}_{jobs}"),
                                         "--jobs", str(jobs)], root)
                rates[name] = 60 * batch_photos / wall if code == 0 else float("nan")
            print(f"`mvinvert batch --jobs {jobs}` ({batch_photos} photos, cold start included): "
                  f"before {rates['before']:.1f} → after {rates['after']:.1f} photos/min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", nargs="?", type=Path,
                        default=DEFAULT_PHOTO if DEFAULT_PHOTO.exists() else REPO / "examples" / "facerec_obama.jpg")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cold-repeats", type=int, default=3)
    parser.add_argument("--batch-photos", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--baseline", default=BASELINE_REV, help="git revision timed as 'before'")
    parser.add_argument("--skip-cli", action="store_true", help="only the in-process per-photo numbers")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"cpu cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} at start "
          f"(timings on a shared machine swing with load: compare the interleaved ratios)")
    per_photo(args.photo, args.repeats, args.baseline)
    if not args.skip_cli:
        cold_cli(args.photo, args.cold_repeats, args.batch_photos, args.baseline)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
