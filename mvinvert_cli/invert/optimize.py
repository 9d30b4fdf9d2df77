"""Latent optimisation, the encoder-less fallback of the inversion stage (MvInvert Eq. 3 without E).

    w⁺* = argmin_{w⁺} ‖M ⊙ (G(w⁺) − I)‖²   (Adam from w̄, cosine-decayed learning rate)

The loss is a plain pixel MSE on [0,1] images (no perceptual network, so no extra weights); noise maps
stay fixed. G may stop at a lower resolution (``stop_at``) to make each step cheaper; the target is
area-resized to the same size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .restyle import pool_to
from .stylegan2 import Generator


@dataclass(frozen=True)
class OptimizeSettings:
    """steps: Adam steps; lr: peak learning rate (cosine decay to 0 with a 5 % warm-up);
    snapshots: how many intermediate images to keep (evenly spaced, the last step included)."""

    steps: int = 100
    lr: float = 0.05
    snapshots: int = 5


@dataclass
class OptimizeResult:
    """latents: (B,L,D) w⁺*; images: (B,3,R,R) G(w⁺*) in [0,1] (unclamped values clipped);
    snapshots: (K,B,3,R,R) images at K evenly spaced steps; losses: (steps,) mean loss per step."""

    latents: Tensor
    images: Tensor
    snapshots: Tensor
    losses: Tensor


def learning_rate(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over the first 5 % of steps, then cosine decay to zero."""
    warm = max(1, int(0.05 * steps))
    if step < warm:
        return peak * (step + 1) / warm
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def optimize_latents(generator: Generator, targets: Tensor, latent_avg: Tensor, mask: Tensor | None = None,
                     settings: OptimizeSettings = OptimizeSettings(), stop_at: int | None = None,
                     init: Tensor | None = None) -> OptimizeResult:
    """Fit w⁺ to each target independently (batched).

    Args:
        generator: G (frozen).
        targets: (B,3,H,W) in [0,1]; resized to G's output side R (= ``stop_at`` or G.size).
        latent_avg: w̄ (L,D) or (D,), the start (unless ``init`` (B,L,D) is given).
        mask: optional (B,1,H,W) weights of the pixel loss (e.g. coverage of the render).
    """
    size = stop_at or generator.size
    target = pool_to(targets, size)
    weight = pool_to(mask.to(targets.dtype), size) if mask is not None else torch.ones_like(target[:, :1])
    w_bar = latent_avg if latent_avg.ndim == 2 else latent_avg[None].expand(generator.n_latent, -1)
    start = init if init is not None else w_bar[None].expand(targets.shape[0], -1, -1)
    w = start.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([w], lr=settings.lr)
    keep = {round((k + 1) * settings.steps / settings.snapshots) - 1 for k in range(settings.snapshots)}
    losses, snapshots = [], []
    with torch.enable_grad():
        for step in range(settings.steps):
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(step, settings.steps, settings.lr)
            image = ((generator(w, stop_at=stop_at) + 1) / 2).clamp(0, 1)  # saturated pixels match freely
            per_pixel = (weight * (image - target) ** 2).sum(dim=(1, 2, 3)) / (3 * weight.sum(dim=(1, 2, 3)) + 1e-8)
            loss = per_pixel.sum()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(per_pixel.detach().mean()))
            if step in keep:
                snapshots.append(image.detach())
    with torch.no_grad():
        final = ((generator(w, stop_at=stop_at) + 1) / 2).clamp(0, 1)
    snapshots[-1] = final
    return OptimizeResult(w.detach(), final, torch.stack(snapshots), torch.tensor(losses))
