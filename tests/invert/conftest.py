"""Tiny StyleGAN2 / ReStyle models in the official file layouts, shared by the inversion tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mvinvert_cli.invert.encoder import EncoderConfig, build_encoder, restyle_checkpoint
from mvinvert_cli.invert.stylegan2 import Generator

TINY_SIZE = 32
TINY_STYLE = 64
TINY_CHANNELS = {4: 64, 8: 64, 16: 32, 32: 16}
TINY_ENCODER = EncoderConfig(input_nc=6, units=(1, 1, 1, 1), widths=(16, 24, 32, 48), n_styles=8,
                             style_dim=TINY_STYLE, spatial=2, se_reduction=4)
MICRO_ENCODER = EncoderConfig(input_nc=6, units=(1, 1, 1), widths=(16, 24, 32), n_styles=6,
                              style_dim=TINY_STYLE, spatial=2, se_reduction=4)
"""For the size-16 generator of the fast ReStyle test."""


def tiny_generator(seed: int = 0, size: int = TINY_SIZE) -> Generator:
    """Size 32 (or 16), style_dim 64, 2 mapping layers, random weights; to-RGB weights scaled so
    that images stay mostly inside [−1,1] (a random StyleGAN2 saturates otherwise)."""
    torch.manual_seed(seed)
    g = Generator(size, TINY_STYLE, 2, channels={r: c for r, c in TINY_CHANNELS.items() if r <= size})
    with torch.no_grad():
        for rgb in [g.to_rgb1, *g.to_rgbs]:
            rgb.conv.weight.mul_(0.3)
    return g.eval().requires_grad_(False)


def tiny_encoder(kind: str = "psp", seed: int = 1, config: EncoderConfig = TINY_ENCODER):
    torch.manual_seed(seed)
    return build_encoder(kind, config)


def known_w_plus(g: Generator, n: int, seed: int) -> torch.Tensor:
    """(n,L,D) w+ with an independent mapped z per row (true w+, not a broadcast w)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, g.n_latent, g.style_dim, generator=gen)
    with torch.no_grad():
        return g.mapping(z)


@pytest.fixture
def generator() -> Generator:
    return tiny_generator()


@pytest.fixture
def rosinality_pt(tmp_path: Path, generator: Generator) -> Path:
    """A tiny ``stylegan2-ffhq-config-f.pt`` layout: {'g_ema': state_dict, 'latent_avg': (D,)}."""
    path = tmp_path / "stylegan2-ffhq-config-f.pt"
    torch.save({"g_ema": generator.state_dict(), "latent_avg": generator.mean_latent(2000)}, path)
    return path


@pytest.fixture
def restyle_pt(tmp_path: Path, generator: Generator) -> Path:
    """A tiny ``restyle_psp_ffhq_encode.pt`` layout (untrained encoder)."""
    path = tmp_path / "restyle_psp_ffhq_encode.pt"
    latent_avg = generator.mean_latent(2000)[None].repeat(generator.n_latent, 1)
    torch.save(restyle_checkpoint(tiny_encoder(), generator, latent_avg), path)
    return path
