"""Multi-photo recovery: leave-one-out quality and the time of three photos against one.

Quality (one person, three photos): for each photo k, recover the face from the other two
(``mvinvert recover a b``) and, separately, from each of them alone; render each texture on photo k's
own fitted geometry and pose (its single-photo fit, the same for every method, so only the texture
differs) and score the face region (mesh coverage ∩ face mask of photo k's 224² crop) against photo k
with PSNR/SSIM as ``mvinvert eval`` computes them (``eval.score.region_scores`` on the composite).
"single best" is, per fold, the better of the two single-photo recoveries (an oracle choice).

Every texture is in the light of its reference photo and photo k has its own, so each method is
scored four ways, the same for every method:
- raw: the output texture's colours as they are;
- relit: the texture's albedo (the single recovery's colours ÷ its own fitted SH irradiance; the
  multi-photo recovery's blended albedo) lit by photo k's fitted SH light at photo k's normals
  (``texture.multiview.photo_shading``);
- each of them "gain-matched": given the per-channel gain to photo k estimated on the region
  (``texture.multiview.exposure_gains``; white balance is not predictable from other photos).
Acceptance: multi beats single best by ≥ 1.5 dB PSNR (relit, gain-matched, mean over the folds).

Time: ``recover`` of one photo vs three photos to an output folder, interleaved repeats, medians
(acceptance: ratio ≤ 2 on the default path). Prints numbers, never pass/fail.

    python bench/bench_multiview.py [--repeats 3] [--threads 2] [--skip-time] [--skip-quality]
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
FACES = REPO.parent / "shared" / "faces"
PHOTOS = tuple(FACES / f"hrn_mv_{n}.jpg" for n in (5932, 21650, 10078))


def held_out_target(recoverer, recovery):
    """(crop (3, S, S), region (S, S) bool, screen (V, 3), fragments) of one photo's own fit."""
    from mvinvert_cli.render.camera import Camera
    from mvinvert_cli.render.rasterize import rasterize

    obs, fit = recovery.observation, recovery.fit
    crop = obs.crop_tensor(recoverer.device)[0]
    screen = Camera().project(fit.world_vertices[None])[0]
    fragments = rasterize(screen[None], recoverer.model.triangles, tuple(crop.shape[-2:]))
    region = fragments.mask[0]
    if obs.crop_face_mask is not None:
        region = region & torch.from_numpy(obs.crop_face_mask).to(region.device)
    return crop, region, screen, fragments


MODES = (("raw", False), ("raw", True), ("relit", False), ("relit", True), ("light-fit", False))
PRIMARY = ("relit", True)


def fitted_light(crop: torch.Tensor, region: torch.Tensor, albedo: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """(3, H, W) the rendered ``albedo`` lit by the per-channel SH light (9 × 3) that best explains the
    photo ``crop`` on ``region`` (least squares: photo ≈ albedo · Y(n)·γ_c)."""
    from mvinvert_cli.render.lighting import sh_basis

    basis = sh_basis(torch.nn.functional.normalize(normals.permute(1, 2, 0), dim=-1))  # (H, W, 9)
    lit = torch.zeros_like(albedo)
    for c in range(3):
        a = albedo[c][region].double()
        design = basis[region].double() * a[:, None]
        gamma = torch.linalg.lstsq(design, crop[c][region].double()[:, None]).solution[:, 0]
        lit[c] = (albedo[c] * (basis.double() @ gamma).float()).clamp(0, 1)
    return lit


def score(recoverer, target, colours: torch.Tensor, gain_matched: bool,
          normals: torch.Tensor | None = None) -> dict[str, float]:
    """PSNR/SSIM/L1 of per-vertex ``colours`` rendered on the held-out photo's geometry (with
    ``normals``, (V, 3) of that geometry: lit by the SH light fitted to the photo, :func:`fitted_light`)."""
    from mvinvert_cli.eval.holdout import composite, render_colours
    from mvinvert_cli.eval.score import region_scores
    from mvinvert_cli.texture.multiview import exposure_gains

    crop, region, screen, fragments = target
    faces = recoverer.model.triangles
    render = render_colours(screen, faces, colours.clamp(0, 1), tuple(crop.shape[-2:]), fragments)
    if normals is not None:
        render = fitted_light(crop, region, render, render_colours(screen, faces, normals, tuple(crop.shape[-2:]),
                                                                   fragments))
    if gain_matched:
        pixels_ref = crop.permute(1, 2, 0)[region]
        pixels = render.permute(1, 2, 0)[region]
        ones = torch.ones(len(pixels), device=pixels.device)
        gain = exposure_gains(pixels_ref, ones, pixels, ones).gain
        render = (render * gain.view(-1, 1, 1)).clamp(0, 1)
    candidate = composite(crop, render, region)
    scores = region_scores(crop[None], candidate[None], region[None])
    return {k: float(v[0]) for k, v in scores.items()}


def _shading(fit) -> torch.Tensor:
    from mvinvert_cli.texture.multiview import photo_shading

    return photo_shading(fit.world_normals, fit.gamma)


def leave_one_out(recoverer, multi) -> list[dict]:
    """One row per (held-out photo, mode): every method's scores."""
    from mvinvert_cli.io.images import load_image
    from mvinvert_cli.multiview import load_photos

    singles = {p: recoverer.recover(load_image(p)) for p in PHOTOS}
    rows = []
    for held in PHOTOS:
        train = [p for p in PHOTOS if p != held]
        target = held_out_target(recoverer, singles[held])
        light = _shading(singles[held].fit)  # photo k's fitted light at photo k's normals
        start = time.perf_counter()
        joint = multi.recover(load_photos(train))
        seconds = time.perf_counter() - start
        methods = {"multi": (joint.recovery.colors, joint.albedo)}
        methods.update({f"single {p.name}": (singles[p].colors, singles[p].colors / _shading(singles[p].fit))
                        for p in train})
        for kind, matched in MODES:
            row = {"held_out": held.name, "mode": (kind, matched), "multi_seconds": seconds}
            for name, (colours, albedo) in methods.items():
                if kind == "light-fit":
                    row[name] = score(recoverer, target, albedo, matched, singles[held].fit.world_normals)
                else:
                    row[name] = score(recoverer, target, colours if kind == "raw" else albedo * light, matched)
            row["single_best"] = max((v for key, v in row.items() if key.startswith("single ")),
                                     key=lambda s: s["psnr"])
            rows.append(row)
    return rows


def print_quality(rows: list[dict]) -> None:
    for mode in MODES:
        label = f"{mode[0]}{', gain-matched' if mode[1] else ''}"
        print(f"\nleave-one-out, {label} (PSNR dB / SSIM on the held-out photo's face region)"
              f"{'  <- acceptance' if mode == PRIMARY else ''}")
        deltas = []
        for row in (r for r in rows if r["mode"] == mode):
            singles = "  ".join(f"{k[7:]} {v['psnr']:.2f}/{v['ssim']:.3f}" for k, v in row.items()
                                if k.startswith("single "))
            delta = row["multi"]["psnr"] - row["single_best"]["psnr"]
            deltas.append(delta)
            print(f"  held out {row['held_out']:<18} multi {row['multi']['psnr']:.2f}/{row['multi']['ssim']:.3f}"
                  f"  single: {singles}  Δ vs best single {delta:+.2f} dB"
                  f" (SSIM {row['multi']['ssim'] - row['single_best']['ssim']:+.3f})")
        print(f"  mean Δ PSNR multi − single best ({label}): {statistics.mean(deltas):+.2f} dB "
              f"(min {min(deltas):+.2f})  [acceptance: ≥ +1.5 dB]")


def timing(recoverer, multi, repeats: int) -> None:
    from mvinvert_cli.multiview import recover_photos_to_directory
    from mvinvert_cli.pipeline import recover_to_directory

    one, three = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):  # interleaved, so load changes hit both alike
            start = time.perf_counter()
            recover_to_directory(recoverer, PHOTOS[0], Path(tmp) / f"one{i}")
            one.append(time.perf_counter() - start)
            start = time.perf_counter()
            recover_photos_to_directory(multi, PHOTOS, Path(tmp) / f"three{i}")
            three.append(time.perf_counter() - start)
    a, b = statistics.median(one), statistics.median(three)
    print(f"\ntime to an output folder (median of {repeats}, interleaved): one photo {a:.2f} s, "
          f"three photos {b:.2f} s, ratio {b / a:.2f}×  [acceptance: ≤ 2×]")
    print("  per run one:   " + " ".join(f"{t:.2f}" for t in one))
    print("  per run three: " + " ".join(f"{t:.2f}" for t in three))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-time", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    missing = [p for p in PHOTOS if not p.exists()]
    if missing:
        print(f"missing photos: {', '.join(map(str, missing))}")
        return 1
    torch.set_num_threads(args.threads)

    from mvinvert_cli.config import Settings
    from mvinvert_cli.multiview import MultiRecoverer
    from mvinvert_cli.pipeline import Recoverer

    recoverer = Recoverer(Settings())
    multi = MultiRecoverer(recoverer)
    print(f"photos: {', '.join(p.name for p in PHOTOS)}  threads: {args.threads}  device: {recoverer.device}  "
          f"refine: {'on' if recoverer.inverter is not None else 'off (' + recoverer.refine_note + ')'}  "
          f"identity: {multi.identity.backend if multi.identity is not None else 'none'}")
    if not args.skip_quality:
        print_quality(leave_one_out(recoverer, multi))
    if not args.skip_time:
        timing(recoverer, multi, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
