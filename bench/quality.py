"""Quality benchmark: ``mvinvert eval`` over ../shared/faces, printing the reconstruction and hold-out tables.

Not pass/fail: it prints what the current build measures, with the baselines of the same run, so each
stage's value is a ratio (ΔPSNR and L1 ratio against the mirror-symmetry fill). The report (eval.csv,
index.html, report.png) is left in a temporary folder whose path is printed, or in --out.

    .venv/bin/python bench/quality.py                 # all photos in ../shared/faces
    .venv/bin/python bench/quality.py --limit 4 --yaw 60
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "faces"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=FACES)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=0, help="first N photos only (0 = all)")
    parser.add_argument("--yaw", type=float, default=45.0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import torch
    from rich.console import Console

    from mvinvert_cli.config import Settings
    from mvinvert_cli.eval.recovery import recoverer_inputs
    from mvinvert_cli.eval.report import print_summary
    from mvinvert_cli.eval.run import check_paths, evaluate_folder
    from mvinvert_cli.identity import IdentityNet, unavailable_reason
    from mvinvert_cli.pipeline import Recoverer

    if not args.faces.is_dir():
        print(f"no faces folder at {args.faces}", file=sys.stderr)
        return 1
    out = args.out or Path(tempfile.mkdtemp(prefix="mvinvert_quality_")) / "report"
    photos = [str(path) for path, _ in check_paths([str(args.faces)], out, force=False)]
    if args.limit:
        photos = photos[:args.limit]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    print(f"commit {commit.stdout.strip() or '?'}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{len(photos)} photos from {args.faces}")

    start = time.perf_counter()
    recoverer = Recoverer(Settings(device=args.device, texture_size=256))
    load_s = time.perf_counter() - start
    identity = IdentityNet.from_weights(recoverer.device)
    print(f"device {recoverer.device}; models loaded in {load_s:.1f} s; identity: "
          f"{identity.note if identity else unavailable_reason()}")
    for note in recoverer.degraded:
        print(f"  degraded: {note}")
    rows, summary = evaluate_folder(photos, out, recoverer_inputs(recoverer), identity,
                                    identity.backend if identity else "none", yaw=args.yaw,
                                    progress=lambda line: print("  " + line))
    print_summary(summary, Console(highlight=False, width=140))
    ok = [r for r in rows if r.get("status") == "ok"]
    if ok:
        recover_s = [r["recover_seconds"] for r in ok]
        eval_s = [r["seconds"] - r["recover_seconds"] for r in ok]
        print(f"per photo: recover median {statistics.median(recover_s):.2f} s, "
              f"scoring median {statistics.median(eval_s):.2f} s; total {time.perf_counter() - start:.1f} s")
    full, mirror = summary.holdout.get("full", {}), summary.holdout.get("mirror", {})
    if full.get("n"):
        print(f"hold-out: full {full['psnr']:.2f} dB vs mirror {mirror['psnr']:.2f} dB "
              f"(ΔPSNR {full['d_psnr']:+.2f} dB, L1 ratio {full['l1_ratio']:.3f}, full = {summary.full_is})")
    print(f"report: {out}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
