"""End-to-end wall time of `mvinvert recover` as a user sees it, and the pipeline's share.

Runs the real command (a fresh process each time: interpreter start-up, imports and model loading
included) on the bundled portraits and reads its `--json` document: `wall_seconds.total` (from
process start to the end) and `wall_seconds.pipeline` (the stages of the one photo, writing
included). Prints per-run numbers and medians, never pass/fail.

    python bench/bench_wall.py [--repeats 3] [--texture-size 1024] [--no-refine]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("skimage_astronaut.png", "facerec_obama.jpg")


def run_once(photo: Path, out: Path, texture_size: int, no_refine: bool) -> dict[str, float]:
    args = [sys.executable, "-m", "mvinvert_cli", "recover", str(photo), "-o", str(out), "--json", "-q",
            "--texture-size", str(texture_size)] + (["--no-refine"] if no_refine else [])
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    outside = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"recover failed ({done.returncode}): {done.stderr.strip()}")
    wall = json.loads(done.stdout)["wall_seconds"]
    return {"outside": outside, "wall": wall["total"], "pipeline": wall["pipeline"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--texture-size", type=int, default=1024)
    parser.add_argument("--no-refine", action="store_true")
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}  texture {args.texture_size}²  repeats {args.repeats} (interleaved)")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in PHOTOS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name in PHOTOS:
                result = run_once(REPO / "examples" / name, Path(tmp) / f"{Path(name).stem}_{repeat}",
                                  args.texture_size, args.no_refine)
                runs[name].append(result)
                print(f"  {name:24s} wall {result['wall']:5.1f} s  (measured outside {result['outside']:5.1f} s)  "
                      f"pipeline {result['pipeline']:5.1f} s")
    print(f"{'photo':24s} {'wall (median)':>14s} {'pipeline':>9s} {'share':>6s}")
    for name, results in runs.items():
        wall = statistics.median(r["wall"] for r in results)
        pipeline = statistics.median(r["pipeline"] for r in results)
        print(f"{name:24s} {wall:12.1f} s {pipeline:7.1f} s {pipeline / wall:6.0%}")


if __name__ == "__main__":
    main()
