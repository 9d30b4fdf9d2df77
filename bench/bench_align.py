"""Benchmark: default alignment (MediaPipe) accuracy on AFLW2000-3D photos, and its speed.

Accuracy (issue 15): per-photo and mean 68-point NME (error / sqrt(w·h) of the ground-truth box)
against both annotations of ``../shared/faces/aflw2000_*.pts68.json`` (the AFLW2000-3D fit and the
3DDFA re-annotation), with the yaw and the align time of each photo (median of repeats) and how the
face was found. Speed (issue 3): align + parse of one 1024² photo, median under 0.3 s on 2 CPU
cores; model load times once, per-stage medians and interquartile ranges. With ``--bisenet`` it
also times the full-size BiSeNet parser (random weights: the cost is the same as with
79999_iter.pth) and prints its ratio to the polygon parser.

    .venv/bin/python bench/bench_align.py [photo] [--repeats N] [--bisenet] [--faces DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")
REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "faces"
DEFAULT_PHOTO = FACES / "hrn_mv_10078.jpg"  # 1024×1024
GOAL_S = 0.3


def _stats(samples: list[float]) -> str:
    q1, med, q3 = np.percentile(samples, [25, 50, 75])
    return f"median {med * 1e3:7.1f} ms  IQR {q1 * 1e3:.1f}–{q3 * 1e3:.1f} ms"


def accuracy_table(aligner, faces: Path, repeats: int) -> None:
    """Print the NME table over every ``*.pts68.json`` in ``faces`` (both annotations, mean row).

    The align time is interleaved with the first pass alone (the Tasks landmarker with its
    retries, no second pass or flip test) and printed with their ratio."""
    from mvinvert_cli.align.accuracy import ANNOTATIONS, load_ground_truth, nme
    from mvinvert_cli.align.mediapipe_backend import MediaPipeLandmarker
    from mvinvert_cli.io.images import load_image

    first_only = MediaPipeLandmarker(second_pass=False) if aligner.backend == "mediapipe" else None

    truths = sorted(faces.glob("*.pts68.json"))
    if not truths:
        print(f"accuracy: no *.pts68.json in {faces}")
        return
    print(f"{'photo':26s} {'yaw':>6s} " + " ".join(f"{k:>18s}" for k in ANNOTATIONS)
          + "   align ms (1st pass only, ratio)  found / landmark pass")
    table = []
    for path in truths:
        truth = load_ground_truth(path)
        photo = load_image(truth.image)
        times, first_times = [], []
        for _ in range(max(1, repeats)):
            a = time.perf_counter()
            obs = aligner.align(photo)
            b = time.perf_counter()
            if first_only is not None:
                first_only.detect(photo.rgb)
            times.append(b - a)
            first_times.append(time.perf_counter() - b)
        errors = [nme(obs.landmarks, truth.points[k]) for k in ANNOTATIONS]
        table.append(errors)
        t, t1 = 1e3 * float(np.median(times)), 1e3 * float(np.median(first_times))
        ratio = f"({t1:6.1f}, {t / t1:4.2f}x)" if first_only is not None else ""
        print(f"{truth.image.name:26s} {truth.yaw_deg:6.1f} " + " ".join(f"{100 * e:17.2f}%" for e in errors)
              + f"   {t:8.1f} {ratio:22s}  {obs.aligner} / {'; '.join(obs.notes[-1:])}")
    mean = np.mean(table, axis=0)
    print(f"{'mean':26s} {'':6s} " + " ".join(f"{100 * e:17.2f}%" for e in mean))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("photo", nargs="?", default=str(DEFAULT_PHOTO))
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--bisenet", action="store_true", help="also time the full-size BiSeNet parser")
    ap.add_argument("--faces", default=str(FACES), help="folder with aflw2000_*.pts68.json ground truth")
    args = ap.parse_args()

    import torch

    from mvinvert_cli.align import Aligner
    from mvinvert_cli.io.images import load_image
    from mvinvert_cli.parse import FaceParser

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"commit {commit}  python {platform.python_version()}  torch {torch.__version__}  "
          f"cpus {os.cpu_count()}  torch threads {torch.get_num_threads()}")
    photo = load_image(args.photo)
    print(f"photo {Path(args.photo).name} {photo.size[0]}x{photo.size[1]}")
    t0 = time.perf_counter()
    aligner = Aligner("auto")
    t1 = time.perf_counter()
    parser = FaceParser("auto")
    t2 = time.perf_counter()
    print(f"load: aligner {aligner.backend} {t1 - t0:.2f} s, parser {parser.backend} {t2 - t1:.2f} s (once per process)")
    aligner.align(photo)  # warm-up
    accuracy_table(aligner, Path(args.faces), max(3, args.repeats // 3))
    align_t, parse_t, total_t = [], [], []
    for _ in range(args.repeats):
        a = time.perf_counter()
        obs = aligner.align(photo)
        b = time.perf_counter()
        parser.parse(obs)
        c = time.perf_counter()
        align_t.append(b - a)
        parse_t.append(c - b)
        total_t.append(c - a)
    print(f"align  {_stats(align_t)}")
    print(f"parse  {_stats(parse_t)}")
    print(f"total  {_stats(total_t)}   goal {GOAL_S * 1e3:.0f} ms: {float(np.median(total_t)) / GOAL_S:.2f}x of budget")
    if args.bisenet:
        from mvinvert_cli.parse.bisenet import BiSeNet, parse_photo
        from mvinvert_cli.parse.masks import fill_hull

        torch.manual_seed(0)
        net = BiSeNet().eval()
        oval = fill_hull(obs.dense[:468, :2], photo.rgb.shape[:2])
        parse_photo(net, photo.rgb, obs.box, oval)  # warm-up
        bisenet_t = []
        for _ in range(max(3, args.repeats // 3)):
            a = time.perf_counter()
            parse_photo(net, photo.rgb, obs.box, oval)
            bisenet_t.append(time.perf_counter() - a)
        ratio = float(np.median(bisenet_t)) / float(np.median(parse_t))
        print(f"bisenet {_stats(bisenet_t)}   ({ratio:.1f}x the polygon parser, 512² on CPU)")


if __name__ == "__main__":
    main()
