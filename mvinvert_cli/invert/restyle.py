"""The ReStyle residual loop, MvInvert Eq. 2–3, batched over the rendered views.

    w_0 = w̄,  ŷ_0 = pool(G(w̄))                               (the average image)
    Δ_t = E(I_R ‖ ŷ_{t−1}),  w_t = w_{t−1} + Δ_t               # Eq. 2
    ŷ_t = pool(G(w_t))                                          # Eq. 3

E sees 6 channels at its input size S (256 for the official encoders): the target and the current
reconstruction, both in [−1,1]; G's output is average-pooled to S before it is fed back
(``AdaptiveAvgPool2d`` in ReStyle). With ``stop_at`` the generator stops at that resolution instead
of synthesising the full image and pooling it (cheaper; see ``bench/bench_invert.py``).

:func:`residual_passes` is the one loop: inference (:class:`~mvinvert_cli.invert.inverter.Inverter`),
the differentiable training path (gradient on the last pass only) and the encoder's self-training
(a loss and an optimiser step after every pass) all run it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .stylegan2 import Generator

DEFAULT_ITERATIONS = 5


@dataclass
class ResidualTrace:
    """Every pass of :func:`residual_inversion` (T iterations, B views).

    Attributes:
        latents: (T,B,L,D) w_t after each pass.
        images: (T,B,3,S,S) ŷ_t in [0,1] at the encoder's input size.
        final: (B,3,R,R) G(w_T) in [0,1] at R = ``stop_at`` or the generator's size.
        average: (1,3,S,S) the average image ŷ_0 in [0,1].
    """

    latents: Tensor
    images: Tensor
    final: Tensor
    average: Tensor


def to_signed(images01: Tensor) -> Tensor:
    """[0,1] → [−1,1] (ReStyle's Normalize(0.5, 0.5))."""
    return images01 * 2 - 1


def to_unit(images: Tensor) -> Tensor:
    """Generator output [−1,1] → [0,1], clamped."""
    return ((images + 1) / 2).clamp(0, 1)


def pool_to(images: Tensor, size: int) -> Tensor:
    """Area-resize (B,C,H,W) to (B,C,size,size): adaptive average pooling down, bilinear up."""
    if images.shape[-1] >= size:
        return F.adaptive_avg_pool2d(images, (size, size))
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def average_image(generator: Generator, latent_avg: Tensor, size: int, stop_at: int | None = None) -> Tensor:
    """ŷ_0 = pool(G(w̄)) (1,3,size,size) in [−1,1]; ``latent_avg`` is (D,) or (L,D)."""
    w = latent_avg if latent_avg.ndim == 2 else latent_avg[None].expand(generator.n_latent, -1)
    return pool_to(generator(w[None], stop_at=stop_at), size)


@dataclass
class ResidualPass:
    """One pass t of :func:`residual_passes` (B views).

    Attributes:
        index: t, from 0.
        latent: (B,L,D) w_t.
        output: (B,3,R,R) G(w_t) in [−1,1] at R = ``stop_at`` or the generator's size.
        current: (B,3,S,S) ŷ_t = pool(G(w_t)) in [−1,1], the next pass's second input.
    """

    index: int
    latent: Tensor
    output: Tensor
    current: Tensor


def residual_passes(encoder: nn.Module, generator: Generator, latent_avg: Tensor, x: Tensor, average: Tensor,
                    iterations: int, stop_at: int | None = None, last_pass_grad: bool = True) -> Iterator[ResidualPass]:
    """The residual loop itself (Eq. 2–3), one :class:`ResidualPass` yielded per pass.

    Each pass sees its inputs w_{t−1} and ŷ_{t−1} detached (ReStyle trains every pass on its own
    input), so an autograd graph never spans two passes. The caller may act between passes (the
    self-training loop takes an optimiser step on each pass's loss).

    Args:
        encoder: E, (B,6,S,S) in [−1,1] → Δ (B,L,D).
        generator: G (frozen).
        latent_avg: w̄ (L,D) or (D,).
        x: (B,3,S,S) targets in [−1,1] at the encoder's input side S.
        average: (1,3,S,S) ŷ_0 = :func:`average_image` in [−1,1].
        iterations: T ≥ 1 passes.
        stop_at: stop G at this resolution instead of synthesising its full output.
        last_pass_grad: the gradient-on-the-last-pass flag: True runs passes 0…T−2 without autograd
            (all a loss on the final image can reach); False lets every pass build its own graph
            (per-pass losses). Either way nothing is recorded when the caller disables gradients.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be ≥ 1, got {iterations}")
    w_bar = latent_avg if latent_avg.ndim == 2 else latent_avg[None].expand(generator.n_latent, -1)
    w = w_bar[None].expand(x.shape[0], -1, -1)
    current = average.expand(x.shape[0], -1, -1, -1)
    size = x.shape[-1]
    for t in range(iterations):
        grad = torch.is_grad_enabled() and (t == iterations - 1 or not last_pass_grad)
        with torch.set_grad_enabled(grad):  # left before the yield: the caller runs in its own grad mode
            w = w.detach() + encoder(torch.cat([x, current.detach()], dim=1))  # Eq. 2
            out = generator(w, stop_at=stop_at)  # Eq. 3
            current = pool_to(out, size)
        yield ResidualPass(t, w, out, current)


def residual_inversion(encoder: nn.Module, generator: Generator, latent_avg: Tensor, targets: Tensor,
                       iterations: int = DEFAULT_ITERATIONS, size: int | None = None,
                       stop_at: int | None = None, average: Tensor | None = None,
                       last_pass_grad: bool = True) -> ResidualTrace:
    """Invert aligned faces with the residual encoder (Eq. 2–3): :func:`residual_passes`, recorded.

    Args:
        encoder: E, (B,6,S,S) in [−1,1] → Δ (B,L,D).
        generator: G (frozen).
        latent_avg: w̄ (L,D) or (D,).
        targets: (B,3,H,W) FFHQ-aligned faces in [0,1]; resized to S.
        iterations: T ≥ 1 passes (ReStyle/MvInvert: 5).
        size: S, the encoder's input side (default: the targets' side).
        stop_at: stop G at this resolution instead of pooling its full output.
        average: a precomputed :func:`average_image` (1,3,S,S) in [−1,1].
        last_pass_grad: see :func:`residual_passes`.

    Returns:
        :class:`ResidualTrace`; with gradients enabled by the caller, ``final`` carries the last
        pass's graph.
    """
    size = size or targets.shape[-1]
    x = to_signed(pool_to(targets, size))
    if average is None:
        with torch.no_grad():
            average = average_image(generator, latent_avg, size, stop_at)
    passes = list(residual_passes(encoder, generator, latent_avg, x, average, iterations, stop_at, last_pass_grad))
    latents = torch.stack([p.latent for p in passes])
    images = torch.stack([to_unit(p.current) for p in passes])
    return ResidualTrace(latents, images, to_unit(passes[-1].output), to_unit(average))
