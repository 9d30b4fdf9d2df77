"""Discriminators of MvInvert training: the two-head UV-texture discriminator (Eq. 10) and the
face discriminator on re-rendered images (Eq. 11).

Both are built from one StyleGAN2-style residual conv discriminator (:class:`ConvDiscriminator`):
1×1 from-RGB, residual blocks that halve the resolution (skip 1×1 conv, sum scaled by 1/√2),
minibatch standard deviation at 4×4, then a 3×3 conv and two linear layers to one logit. Widths
follow a resolution → channels table ``min(channel_max, channel_base // resolution)``, so the size
is configurable from a tiny test model to a full one. Plain PyTorch, CPU and CUDA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def channel_table(size: int, channel_base: int, channel_max: int) -> dict[int, int]:
    """{resolution: channels} for every power-of-two resolution from ``size`` down to 4."""
    if size < 4 or size & (size - 1):
        raise ValueError(f"discriminator size must be a power of two ≥ 4, got {size}")
    return {4 * 2**i: max(1, min(channel_max, channel_base // (4 * 2**i)))
            for i in range(int(math.log2(size)) - 1)}


class ResBlock(nn.Module):
    """Two 3×3 convs + 2× average-pool downsampling, with a 1×1 skip; (B,C_in,H,W) → (B,C_out,H/2,W/2)."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channel, in_channel, 3, padding=1)
        self.conv2 = nn.Conv2d(in_channel, out_channel, 3, padding=1)
        self.skip = nn.Conv2d(in_channel, out_channel, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.conv1(x), 0.2)
        out = F.avg_pool2d(F.leaky_relu(self.conv2(out), 0.2), 2)
        skip = self.skip(F.avg_pool2d(x, 2))
        return (out + skip) / math.sqrt(2.0)


def minibatch_stddev(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Append the batch-wide feature standard deviation (averaged to one scalar) as a channel."""
    std = torch.sqrt(x.var(dim=0, unbiased=False) + eps).mean()
    return torch.cat([x, std.expand(x.shape[0], 1, *x.shape[2:])], dim=1)


class ConvDiscriminator(nn.Module):
    """StyleGAN2-style residual discriminator: (B,3,size,size) in [0,1] → logits (B,).

    Args:
        size: input resolution (power of two ≥ 4); other sizes are resized bilinearly.
        channel_base / channel_max: width table, ``min(channel_max, channel_base // res)``.
    """

    def __init__(self, size: int = 256, channel_base: int = 8192, channel_max: int = 256) -> None:
        super().__init__()
        self.size = size
        self.channels = channel_table(size, channel_base, channel_max)
        self.from_rgb = nn.Conv2d(3, self.channels[size], 1)
        resolutions = sorted(self.channels, reverse=True)[:-1]  # size … 8
        self.blocks = nn.ModuleList(ResBlock(self.channels[r], self.channels[r // 2]) for r in resolutions)
        c4 = self.channels[4]
        self.final_conv = nn.Conv2d(c4 + 1, c4, 3, padding=1)
        self.final_linear = nn.Linear(c4 * 16, c4)
        self.out = nn.Linear(c4, 1)

    def forward(self, images: Tensor) -> Tensor:
        x = images
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = F.leaky_relu(self.from_rgb(x * 2.0 - 1.0), 0.2)
        for block in self.blocks:
            x = block(x)
        x = F.leaky_relu(self.final_conv(minibatch_stddev(x)), 0.2)
        x = F.leaky_relu(self.final_linear(x.flatten(1)), 0.2)
        return self.out(x)[:, 0]

    def extra_repr(self) -> str:
        return f"size={self.size}, channels={self.channels}"


def central_crop(images: Tensor, fraction: float) -> Tensor:
    """The central ``fraction`` of each side of (B,C,H,W) images (at least one pixel)."""
    h, w = images.shape[-2:]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return images[..., top:top + ch, left:left + cw]


class TextureDiscriminator(nn.Module):
    """MvInvert Eq. 10 discriminator on UV textures: a global head and a central-crop head.

    The global head sees the whole UV texture; the central head sees its central ``crop``
    fraction (the face interior: eyes, nose, mouth) resampled to the same resolution, so that
    fine facial detail gets its own critic. Input (B,3,S,S) in [0,1] → logits (B,2)
    (column 0 global, column 1 central).
    """

    def __init__(self, size: int = 256, crop: float = 0.5, channel_base: int = 8192,
                 channel_max: int = 256) -> None:
        super().__init__()
        if not 0.0 < crop <= 1.0:
            raise ValueError(f"central crop fraction must be in (0, 1], got {crop}")
        self.crop = crop
        self.global_head = ConvDiscriminator(size, channel_base, channel_max)
        self.central_head = ConvDiscriminator(size, channel_base, channel_max)

    def forward(self, textures: Tensor) -> Tensor:
        return torch.stack([self.global_head(textures),
                            self.central_head(central_crop(textures, self.crop))], dim=1)

    def extra_repr(self) -> str:
        return f"crop={self.crop}"


class FaceDiscriminator(nn.Module):
    """MvInvert Eq. 11 discriminator: re-rendered face images vs real photos, (B,3,H,W) → (B,1)."""

    def __init__(self, size: int = 256, channel_base: int = 8192, channel_max: int = 256) -> None:
        super().__init__()
        self.head = ConvDiscriminator(size, channel_base, channel_max)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(images)[:, None]
