"""parse.bisenet.parse_labels: a large photo is area-averaged into BiSeNet's 512² input (no aliasing):
a one-pixel checkerboard shrunk 3.5× must reach the network as flat grey."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mvinvert_cli.parse.bisenet import IMAGENET_MEAN, IMAGENET_STD, NUM_CLASSES, parse_labels


class _Recorder(nn.Module):
    """Stands in for BiSeNet: keeps its (normalised) input, answers "background" everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor):
        self.seen = x.detach().clone()
        out = torch.zeros(x.shape[0], NUM_CLASSES, x.shape[2], x.shape[3])
        return out, out, out


def test_checkerboard_reaches_bisenet_as_grey():
    size = 2048
    yy, xx = np.mgrid[:size, :size]
    rgb = np.repeat(((xx + yy) % 2).astype(np.float32)[..., None], 3, axis=2)
    box = np.array([574.0, 574.0, 1474.0, 1474.0])  # square of side 2·900 = 1800 px → 3.5× shrink
    net = _Recorder()
    labels = parse_labels(net, rgb, box)
    assert labels.shape == (size, size) and labels.max() == 0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    seen = (net.seen * std + mean)[0].numpy()  # back to [0, 1] RGB
    inner = seen[:, 8:-8, 8:-8]  # away from the photo border
    assert abs(float(inner.mean()) - 0.5) < 0.01
    assert float(inner.std()) < 0.02, f"aliasing: std {inner.std():.3f}"
