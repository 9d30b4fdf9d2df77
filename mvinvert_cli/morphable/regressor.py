"""Deep3DFaceRecon coefficient regressor: ResNet-50 → 257 coefficients (FORMATS.md §1h–§1i).

The network of ``models/networks.py:ReconNetWrapper``: a torchvision-layout ResNet-50 without its
fc layer (``backbone.*``: conv1/bn1, layer1–4 of 3/4/6/3 bottlenecks with the stride on the 3×3
conv, global average pooling) and seven 1×1 conv heads ``final_layers.0..6`` (2048 → 80, 64, 80,
3, 27, 2, 1) whose outputs are concatenated into id | exp | tex | angles | gamma | (tx, ty) | tz.
Its state_dict matches ``manifests/deep3dfacerecon_resnet50.json`` key for key; ``epoch_20.pth``
stores it under ``'net_recon'``. Input: the 5-point aligned 224×224 crop, RGB in [0, 1]
(``Observation.crop_tensor``), no normalisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import WeightsError
from ..weights import load_checkpoint, load_state_dict_strict, require

HEADS: tuple[tuple[str, int], ...] = (("id", 80), ("exp", 64), ("tex", 80), ("angles", 3), ("gamma", 27),
                                      ("trans_xy", 2), ("trans_z", 1))
NUM_COEFFS = sum(n for _, n in HEADS)  # 257
STAGES: dict[str, tuple[int, int, int]] = {  # name → (blocks, width, stride)
    "layer1": (3, 64, 1), "layer2": (4, 128, 2), "layer3": (6, 256, 2), "layer4": (3, 512, 2),
}
EXPANSION = 4


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride) → 1×1 ×4 residual block (torchvision ResNet v1.5)."""

    def __init__(self, in_channel: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channel = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channel, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channel, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channel)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channel != out_channel:
            self.downsample = nn.Sequential(nn.Conv2d(in_channel, out_channel, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50Backbone(nn.Module):
    """ResNet-50 trunk without fc: (B, 3, H, W) → (B, 2048, 1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channel = 64
        for name, (blocks, width, stride) in STAGES.items():
            layers = []
            for i in range(blocks):
                layers.append(Bottleneck(in_channel, width, stride if i == 0 else 1))
                in_channel = width * EXPANSION
            setattr(self, name, nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in STAGES:
            x = getattr(self, name)(x)
        return self.avgpool(x)


class ReconNet(nn.Module):
    """``ReconNetWrapper``: backbone + seven 1×1 heads → (B, 257) coefficients."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = ResNet50Backbone()
        self.final_layers = nn.ModuleList([nn.Conv2d(2048, n, 1, bias=True) for _, n in HEADS])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.backbone(image)
        return torch.cat([head(features) for head in self.final_layers], dim=1).flatten(1)

    def __repr__(self) -> str:
        return f"ReconNet(ResNet-50 backbone, heads={[n for _, n in HEADS]} → {NUM_COEFFS})"


def split_coefficients(coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, 257) → id (B, 80), exp (B, 64), tex (B, 80), angles (B, 3), gamma (B, 27), trans (B, 3)."""
    parts = dict(zip([n for n, _ in HEADS], torch.split(coeffs, [n for _, n in HEADS], dim=1), strict=True))
    parts["trans"] = torch.cat([parts.pop("trans_xy"), parts.pop("trans_z")], dim=1)
    return parts


class Regressor:
    """A loaded :class:`ReconNet` in eval mode on a device (Deep3DFaceRecon fit initialisation)."""

    def __init__(self, net: ReconNet, source: str = "") -> None:
        self.net = net.eval()
        self.source = source

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def predict(self, crop: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) RGB in [0, 1] → (B, 257) coefficients."""
        return self.net(crop.to(self.device, torch.float32))

    @staticmethod
    def split(coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
        return split_coefficients(coeffs)


def load_regressor(path: str | Path | None = None, device: Any = None, trust_pickle: bool = False) -> Regressor:
    """Load ``epoch_20.pth`` (``{'net_recon': state_dict, ...}`` or a bare state_dict) strictly.

    Raises:
        WeightsError: missing, unsafe, corrupt, or not a Deep3DFaceRecon network.
    """
    path = Path(path) if path is not None else require("deep3d")
    checkpoint = load_checkpoint(path, trust_pickle=trust_pickle)
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}")
    state = checkpoint.get("net_recon", checkpoint)
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: 'net_recon' is not a state_dict")
    net = ReconNet()
    load_state_dict_strict(net, state, path, "Deep3DFaceRecon ResNet-50 (net_recon)")
    return Regressor(net.to(device), source=str(path))
