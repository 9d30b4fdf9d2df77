"""Train a residual encoder on the generator's own samples (ReStyle's training scheme, synthetic data).

Each step draws B latents w⁺ (one mapped z per row, optionally truncated towards w̄), renders the
targets G(w⁺), and runs the residual loop of Eq. 2–3 (:func:`~mvinvert_cli.invert.restyle.residual_passes`)
for T passes starting from the average image. Every pass gets its own loss, backward and optimiser
step (the loop detaches the previous reconstruction and latent, as in ReStyle's ``coach_restyle_psp.py``):

    L_t = ‖G(w_t) − G(w⁺)‖²   (Adam)

BatchNorm statistics are frozen for the last part of training (``freeze_bn``), so that the weights
adapt to the running statistics the encoder uses at inference; without this, the small late-pass
residuals suffer from the train/eval normalisation mismatch. This is what the tests use to obtain a working tiny encoder in a few hundred CPU steps; the full MvInvert objective (Eq. 7–11)
lives in :mod:`mvinvert_cli.train`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .restyle import average_image, pool_to, residual_passes
from .stylegan2 import Generator


@dataclass(frozen=True)
class SelfTrainSettings:
    """steps: optimiser steps; batch: samples per step; iterations: T residual passes per sample;
    lr: Adam learning rate; truncation: ψ of the sampled w⁺ (1 = none);
    freeze_bn: fraction of the steps after which BatchNorm layers use (and stop updating) their
    running statistics; seed: sampling seed (CPU generator)."""

    steps: int = 300
    batch: int = 8
    iterations: int = 5
    lr: float = 1e-3
    truncation: float = 0.7
    freeze_bn: float = 0.5
    seed: int = 0


def sample_w_plus(generator: Generator, n: int, latent_avg: Tensor, truncation: float,
                  gen: torch.Generator) -> Tensor:
    """(n,L,D) w⁺: an independent mapped z per row, truncated towards w̄ (L,D) by ψ."""
    z = torch.randn(n, generator.n_latent, generator.style_dim, generator=gen).to(latent_avg.device)
    with torch.no_grad():
        w = generator.mapping(z)
    return latent_avg + truncation * (w - latent_avg)


def train_residual_encoder(encoder: nn.Module, generator: Generator, latent_avg: Tensor, size: int,
                           settings: SelfTrainSettings = SelfTrainSettings()) -> list[float]:
    """Fit ``encoder`` in place on synthetic samples; returns the mean loss of the last pass per step.

    Args:
        encoder: E, (B,6,S,S) → (B,L,D); left in eval mode afterwards.
        generator: G (frozen).
        latent_avg: w̄ (L,D).
        size: S, the encoder's input side.
    """
    gen = torch.Generator().manual_seed(settings.seed)
    optimiser = torch.optim.Adam(encoder.parameters(), lr=settings.lr)
    with torch.no_grad():
        average = average_image(generator, latent_avg, size)
    encoder.train()
    history: list[float] = []
    for step in range(settings.steps):
        if step == int(settings.freeze_bn * settings.steps):
            for module in encoder.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        w_true = sample_w_plus(generator, settings.batch, latent_avg, settings.truncation, gen)
        with torch.no_grad():
            target = pool_to(generator(w_true), size)
        for step_pass in residual_passes(encoder, generator, latent_avg, target, average, settings.iterations,
                                         last_pass_grad=False):  # Eq. 2–3, a loss per pass
            loss = F.mse_loss(step_pass.current, target)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        history.append(float(loss.detach()))
    encoder.eval()
    return history
