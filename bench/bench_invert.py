"""Inversion-stage timings: full-size StyleGAN2 (random weights) and ReStyle IR-SE-50 encoder forwards.

Prints per-stage medians (seconds) on the CPU, and on CUDA when available:
- G full 1024² vs G stopped at 256² (the skip architecture's 256² RGB), the speed ratio, and the
  PSNR between the stop-at-256 image and the 1024² output area-pooled to 256² (what ReStyle feeds
  back) over a few w (random weights: the PSNR shows how different the two are, not trained quality);
- the encoder at 256² (6 channels) and a 5-pass ReStyle inversion with both generator modes
  (measured on CUDA or with --restyle; on the CPU otherwise estimated as 5 × (E + G)).

Usage: python bench/bench_invert.py [--repeats N] [--batch 1] [--devices cpu,cuda] [--threads N] [--restyle]
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


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up (CUDA synchronised)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def run(device: torch.device, repeats: int, batch: int, restyle: bool) -> None:
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

    if not restyle and device.type == "cpu":
        t5_full, t5_cut, how = 5 * (t_enc + t_full), 5 * (t_enc + t_256), "estimated"
    else:
        targets = torch.rand(batch, 3, 256, 256, device=device)
        t5_full = timed(lambda: residual_inversion(encoder, g, w_avg, targets, 5, 256), device, repeats)
        t5_cut = timed(lambda: residual_inversion(encoder, g, w_avg, targets, 5, 256, stop_at=256), device, repeats)
        how = "measured"
    print(f"  ReStyle 5 passes, full  {t5_full:8.3f} s   ({how})")
    print(f"  ReStyle 5 passes, @256  {t5_cut:8.3f} s   ({t5_full / t5_cut:.1f}× faster)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=0, help="timed runs (0: 1 on the CPU, 5 on CUDA)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    parser.add_argument("--restyle", action="store_true", help="also time the 5-pass loop on the CPU")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for name in args.devices.split(","):
        if name.startswith("cuda") and not torch.cuda.is_available():
            print(f"[{name}] skipped: no CUDA device")
            continue
        device = torch.device(name)
        repeats = args.repeats or (1 if device.type == "cpu" else 5)
        run(device, repeats, args.batch, args.restyle)


if __name__ == "__main__":
    main()
