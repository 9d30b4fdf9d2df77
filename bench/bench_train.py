"""Training step cost: forward path, encoder losses + backward, discriminator update (median of repeats).

    python bench/bench_train.py                 # tiny models on the CPU (seconds)
    python bench/bench_train.py --full --device cuda   # IR-SE-50 encoder + 1024 StyleGAN2 (random weights)

Uses a synthetic spherical-cap face mesh (tests/train/conftest.py) so no weights or photos are needed;
prints per-stage medians and the share of the step each takes. Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "train"))

from conftest import synthetic_face_model, synthetic_photos, tiny_networks  # noqa: E402

from mvinvert_cli.refine import RefineSettings  # noqa: E402
from mvinvert_cli.train import loop  # noqa: E402
from mvinvert_cli.train import losses as L  # noqa: E402
from mvinvert_cli.train.path import InversionPath, PathSettings  # noqa: E402


def full_networks():
    from mvinvert_cli.invert.encoder import EncoderConfig, build_encoder
    from mvinvert_cli.invert.stylegan2 import Generator

    generator = Generator(1024, 512, 8, channel_multiplier=2)
    encoder = build_encoder("psp", EncoderConfig())
    return encoder, generator, generator.mean_latent(1000, torch.Generator().manual_seed(0))[None].expand(18, -1).clone()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="full-size encoder and generator (use a GPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = synthetic_face_model(n=41)
    if args.full:
        encoder, generator, latent_avg = full_networks()
        settings = PathSettings()
        size, disc = 224, dict(disc_size=128, disc_channels=8192, texture_size=256)
        face_net = L.tiny_face_features(width=32, dim=128, input_size=112)
    else:
        encoder, generator, latent_avg = tiny_networks()
        settings = PathSettings(render_size=64, refine=RefineSettings(view_size=64), encoder_size=32,
                                texture_size=32)
        size, disc = 64, dict(disc_size=16, disc_channels=256, texture_size=32)
        face_net = L.tiny_face_features(width=4, dim=16, input_size=32)
    photos = synthetic_photos(model, 4, size=size)
    textures = [torch.rand(3, disc["texture_size"], disc["texture_size"]) for _ in range(4)]
    path = InversionPath(model, encoder, generator, latent_avg, settings)
    trainer = loop.Trainer(path, face_net, photos, textures,
                           loop.TrainSettings(steps=10**6, batch_size=args.batch, r1_every=0, **disc), device)

    times: dict[str, list[float]] = {"forward": [], "losses+backward": [], "step (all)": []}
    trainer.step()  # warm-up
    for _ in range(args.repeats):
        sync(device)
        t0 = time.perf_counter()
        gen = loop.step_generator(0, trainer.step_count)
        batch, _ = trainer._batch(gen)
        out = path(batch, gen)
        sync(device)
        t1 = time.perf_counter()
        total = L.total_loss(trainer.encoder_losses(out, batch))
        total.backward()
        sync(device)
        t2 = time.perf_counter()
        trainer.step()
        sync(device)
        t3 = time.perf_counter()
        times["forward"].append(t1 - t0)
        times["losses+backward"].append(t2 - t1)
        times["step (all)"].append(t3 - t2)
    step = statistics.median(times["step (all)"])
    print(f"device {device}, {'full' if args.full else 'tiny'} models, batch {args.batch}, "
          f"{len(settings.views)} views, mesh {model.num_vertices} vertices, torch {torch.__version__}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:>16}: {med * 1000:8.1f} ms  (min {min(values) * 1000:.1f}, {med / step:.0%} of a step)")
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
