"""Inversion-stage timings: full-size StyleGAN2 (random weights) and ReStyle IR-SE-50 encoder forwards.

Prints per-stage medians (seconds) on the CPU, and on CUDA when available:
- G full 1024² vs G stopped at 256² (the skip architecture's 256² RGB), the speed ratio, and the
  PSNR between the stop-at-256 image and the 1024² output area-pooled to 256² (what ReStyle feeds
  back) over a few w (random weights: the PSNR shows how different the two are, not trained quality);
- the encoder at 256² (6 channels) and the 5-pass ReStyle inversion of ``--views`` views at once (the
  pipeline's 4 synthetic views) with both generator modes, as wall time and process CPU time
  (measured once without warm-up on the CPU; median of --repeats after a warm-up on CUDA). A device
  that is absent is named as skipped.

Usage: python bench/bench_invert.py [--repeats N] [--batch 1] [--views 4] [--devices cpu,cuda] [--threads N]
(--repeats default: 1 on the CPU, 5 on CUDA; each after one warm-up run.)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mvinvert_cli.invert.encoder import build_encoder
from mvinvert_cli.invert.restyle import residual_inversion, to_unit
from mvinvert_cli.invert.stylegan2 import Generator
from mvinvert_cli.metrics import psnr


def timed(fn, device: torch.device, repeats: int, warm_up: bool = True) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after one warm-up (CUDA synchronised)."""
    return timed_cpu(fn, device, repeats, warm_up)[0]


def timed_cpu(fn, device: torch.device, repeats: int, warm_up: bool = True) -> tuple[float, float]:
    """Median (wall, process CPU) seconds of ``fn()`` over ``repeats`` runs."""
    if warm_up:
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


@torch.no_grad()
def run(device: torch.device, repeats: int, batch: int, views: int) -> None:
    torch.manual_seed(0)
    g = Generator(1024, 512, 8).to(device).eval()
    encoder = build_encoder("psp").to(device).eval()
    w_avg = g.mean_latent(2000)
    w = g.mapping(torch.randn(batch, 512, device=device))
    w_plus = w[:, None].repeat(1, g.n_latent, 1)

    t_full = timed(lambda: g(w_plus), device, repeats)
    t_256 = timed(lambda: g(w_plus, stop_at=256), device, repeats)
    x = torch.randn(batch, 6, 256, 256, device=device)
    t_enc = timed(lambda: encoder(x), device, repeats)
    print(f"[{device}] batch {batch}, median of {repeats}")
    print(f"  G 1024² full            {t_full:8.3f} s")
    print(f"  G stop at 256²          {t_256:8.3f} s   ({t_full / t_256:.1f}× faster)")
    print(f"  E IR-SE-50 (6×256²)     {t_enc:8.3f} s")

    ws = g.mapping(torch.randn(2 if device.type == "cpu" else 8, 512, device=device))
    scores = []
    for i in range(ws.shape[0]):
        full = to_unit(F.adaptive_avg_pool2d(g(ws[i:i + 1]), 256))
        cut = to_unit(g(ws[i:i + 1], stop_at=256))
        scores.append(float(psnr(cut, full)[0]))
    print(f"  PSNR(stop@256, pool(1024)) over {len(scores)} w: median {statistics.median(scores):.2f} dB "
          f"(min {min(scores):.2f}, max {max(scores):.2f})")

    targets = torch.rand(views, 3, 256, 256, device=device)
    warm = device.type == "cuda"  # on the CPU one run takes minutes: measured once, cold
    full = timed_cpu(lambda: residual_inversion(encoder, g, w_avg, targets, 5, 256), device, repeats, warm)
    cut = timed_cpu(lambda: residual_inversion(encoder, g, w_avg, targets, 5, 256, stop_at=256), device, repeats,
                    warm)
    print(f"  ReStyle {views} views × 5 passes, full  wall {full[0]:8.2f} s   CPU {full[1]:8.2f} s")
    print(f"  ReStyle {views} views × 5 passes, @256  wall {cut[0]:8.2f} s   CPU {cut[1]:8.2f} s   "
          f"({full[0] / cut[0]:.1f}× faster)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=0, help="timed runs (0: 1 on the CPU, 5 on CUDA)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    parser.add_argument("--views", type=int, default=4, help="views inverted at once in the 5-pass loop")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for name in args.devices.split(","):
        if name.startswith("cuda") and not torch.cuda.is_available():
            print(f"[{name}] skipped: no CUDA device in this process (no GPU lent to this run)")
            continue
        device = torch.device(name)
        repeats = args.repeats or (1 if device.type == "cpu" else 5)
        run(device, repeats, args.batch, args.views)


if __name__ == "__main__":
    main()
