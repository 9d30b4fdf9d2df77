"""Images per minute of `batch`: the local engine (one process) vs Ray with 2 local workers.

Both run the same generated folder (mirrored/rescaled copies of the bundled examples) into fresh
output folders; wall time includes model loading (and, for Ray, starting the local instance and its
actors), which is printed separately as the time to the first result. Prints numbers, never pass/fail.

    python bench/bench_batch_ray.py [--images 4] [--texture-size 128] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]


def make_photos(folder: Path, count: int) -> None:
    sources = [Image.open(REPO / "examples" / name).convert("RGB")
               for name in ("skimage_astronaut.png", "facerec_obama.jpg")]
    for i in range(count):
        image = sources[i % 2]
        image = image.resize((round(image.width * (0.6 + 0.1 * (i // 2))), round(image.height * (0.6 + 0.1 * (i // 2)))))
        (ImageOps.mirror(image) if i % 4 >= 2 else image).save(folder / f"face_{i:02d}.png")


def timed(run) -> tuple[float, float, int]:
    """(wall seconds, seconds to the first result, ok count)."""
    stamps: list[float] = []
    start = time.perf_counter()
    results = run(lambda _result: stamps.append(time.perf_counter()))
    wall = time.perf_counter() - start
    return wall, stamps[0] - start, sum(r.status == "ok" for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--texture-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import torch

    from mvinvert_cli.batch import discover, run_batch
    from mvinvert_cli.batch_ray import run_batch_ray
    from mvinvert_cli.config import Settings

    settings = Settings(texture_size=args.texture_size, refine=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "photos").mkdir()
        make_photos(root / "photos", args.images)
        rows = []
        for engine in ("local", "ray"):
            out = root / engine
            out.mkdir()
            items = discover([str(root / "photos")], out)
            if engine == "local":
                def run(cb, items=items, out=out):
                    return run_batch(items, settings, out, on_result=cb)
                label = f"local (1 process, {torch.get_num_threads()} threads)"
            else:
                def run(cb, items=items, out=out):
                    return run_batch_ray(items, settings, out, workers=args.workers, on_result=cb)
                label = f"ray ({args.workers} workers)"
            wall, first, ok = timed(run)
            rows.append((label, wall, 60 * args.images / wall, first, ok))
    print(f"{args.images} images, texture {args.texture_size}, no refine, {os.cpu_count()} cores", file=sys.stderr)
    print(f"{'engine':32s} {'wall s':>8s} {'img/min':>8s} {'first result s':>15s} {'ok':>4s}")
    for label, wall, rate, first, ok in rows:
        print(f"{label:32s} {wall:8.1f} {rate:8.1f} {first:15.1f} {ok:4d}")
    print(f"ray / local images per minute: {rows[1][2] / rows[0][2]:.2f}")


if __name__ == "__main__":
    main()
