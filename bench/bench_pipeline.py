"""Per-stage times of the default `recover` pipeline on a 1024² portrait (goal: ≤ 10 s on 2 cores).

Models are loaded once (timed separately); the photo is recovered `--repeats` times and each stage's
median is printed with its share of the total. Prints numbers, never pass/fail.

    python bench/bench_pipeline.py [photo] [--repeats 3] [--threads 2] [--refine]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = REPO.parent / "shared" / "faces" / "hrn_mv_10078.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("photo", nargs="?", type=Path,
                        default=DEFAULT_PHOTO if DEFAULT_PHOTO.exists() else REPO / "examples" / "facerec_obama.jpg")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--refine", action="store_true", help="keep refinement on (needs generator weights)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from mvinvert_cli.config import Settings
    from mvinvert_cli.pipeline import Recoverer, recover_to_directory

    start = time.perf_counter()
    recoverer = Recoverer(Settings(refine=args.refine))
    load = time.perf_counter() - start
    print(f"photo: {args.photo}  threads: {args.threads}  device: {recoverer.device}")
    print(f"model loading (once per process): {load:.2f} s  " +
          ", ".join(f"{k} {v:.2f} s" for k, v in recoverer.load_seconds.items()))
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            result = recover_to_directory(recoverer, args.photo, Path(tmp) / f"run{i}")
            runs.append(result["timings"])
    stages = [k for k in runs[0] if k != "total"]
    total = statistics.median(r["total"] for r in runs)
    print(f"{'stage':<14}{'median s':>10}{'share':>8}")
    for stage in stages:
        median = statistics.median(r.get(stage, 0.0) for r in runs)
        print(f"{stage:<14}{median:>10.3f}{median / total:>8.1%}")
    print(f"{'total':<14}{total:>10.3f}   (goal 10 s: {total / 10:.2f}× of budget)")
    print(f"throughput: {60 / total:.1f} photos/min after loading")


if __name__ == "__main__":
    sys.exit(main())
