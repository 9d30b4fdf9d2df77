"""BiSeNet face parser of face-parsing.PyTorch (``79999_iter.pth``), re-implemented (FORMATS.md §4).

The state_dict matches ``../shared/manifests/bisenet_face_parsing_79999.json`` key for key, so the
official file loads with ``strict=True``. Unlike the original, construction downloads nothing (the
original fetches ImageNet ResNet-18 weights in ``Resnet18.init_weight``). The spatial path of the
BiSeNet paper is absent in this model: ResNet-18's 1/8 feature stands in for it.

Layout (smallest blocks first): ConvBNReLU → BasicBlock → ResNet18 → AttentionRefinement →
ContextPath → FeatureFusion → Head → BiSeNet; then loading and photo-level parsing.
Channel widths are a table driven by ``base`` (64 for the official model; tests use tiny ones).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..align.crop import opencv_affine, warp_crop

NUM_CLASSES = 19
INPUT_SIZE = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONTEXT = 2.0  # side of the square parsed around the face box, in box sides (CelebAMask-HQ framing)


class ConvBNReLU(nn.Module):
    """conv (no bias) → BatchNorm → ReLU; keys ``conv.weight``, ``bn.*``."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channel, out_channel, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))

    def __repr__(self) -> str:
        c = self.conv
        return f"ConvBNReLU({c.in_channels}, {c.out_channels}, k={c.kernel_size[0]}, s={c.stride[0]})"


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 convs + identity or 1×1 projection shortcut (``downsample``)."""

    def __init__(self, in_channel: int, out_channel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channel, out_channel, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channel)
        self.conv2 = nn.Conv2d(out_channel, out_channel, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channel)
        self.downsample = None
        if in_channel != out_channel or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(in_channel, out_channel, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


class ResNet18(nn.Module):
    """ResNet-18 trunk returning the 1/8, 1/16 and 1/32 features (no fc, no download)."""

    def __init__(self, base: int = 64) -> None:
        super().__init__()
        widths = {1: base, 2: 2 * base, 3: 4 * base, 4: 8 * base}
        self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        previous = base
        for i, width in widths.items():
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(previous, width, stride), BasicBlock(width, width)))
            previous = width

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        feat8 = self.layer2(self.layer1(x))  # (B, 2b, H/8, W/8)
        feat16 = self.layer3(feat8)  # (B, 4b, H/16, W/16)
        feat32 = self.layer4(feat16)  # (B, 8b, H/32, W/32)
        return feat8, feat16, feat32


class AttentionRefinement(nn.Module):
    """ARM: ConvBNReLU, then a channel attention from the global average (1×1 conv, BN, sigmoid)."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channel, out_channel, 3)
        self.conv_atten = nn.Conv2d(out_channel, out_channel, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_channel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        attention = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * attention


class ContextPath(nn.Module):
    """ResNet-18 + ARMs on 1/16 and 1/32 + global context; returns (feat8, cp8, cp16)."""

    def __init__(self, base: int = 64) -> None:
        super().__init__()
        mid = 2 * base
        self.resnet = ResNet18(base)
        self.arm16 = AttentionRefinement(4 * base, mid)
        self.arm32 = AttentionRefinement(8 * base, mid)
        self.conv_head32 = ConvBNReLU(mid, mid, 3)
        self.conv_head16 = ConvBNReLU(mid, mid, 3)
        self.conv_avg = ConvBNReLU(8 * base, mid, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        context = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        feat32_sum = self.arm32(feat32) + F.interpolate(context, size=feat32.shape[2:], mode="nearest")
        cp16 = self.conv_head32(F.interpolate(feat32_sum, size=feat16.shape[2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + cp16
        cp8 = self.conv_head16(F.interpolate(feat16_sum, size=feat8.shape[2:], mode="nearest"))
        return feat8, cp8, cp16


class FeatureFusion(nn.Module):
    """FFM: concat → ConvBNReLU 1×1 → squeeze-excite attention; out = feat·att + feat."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_channel, out_channel, 1)
        self.conv1 = nn.Conv2d(out_channel, out_channel // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_channel // 4, out_channel, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean(dim=(2, 3), keepdim=True)))))
        return feat * attention + feat


class Head(nn.Module):
    """BiSeNetOutput: ConvBNReLU 3×3 → 1×1 class logits (no bias)."""

    def __init__(self, in_channel: int, mid_channel: int, num_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channel, mid_channel, 3)
        self.conv_out = nn.Conv2d(mid_channel, num_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """face-parsing.PyTorch BiSeNet (``base`` = 64, 19 classes for ``79999_iter.pth``).

    Forward: (B, 3, H, W) ImageNet-normalised RGB → three (B, classes, H, W) logit maps
    (fused, 1/8 context, 1/16 context), upsampled bilinearly with align_corners=True; use [0].
    """

    def __init__(self, num_classes: int = NUM_CLASSES, base: int = 64) -> None:
        super().__init__()
        self.cp = ContextPath(base)
        self.ffm = FeatureFusion(4 * base, 4 * base)
        self.conv_out = Head(4 * base, 4 * base, num_classes)
        self.conv_out16 = Head(2 * base, base, num_classes)
        self.conv_out32 = Head(2 * base, base, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = x.shape[2:]
        feat8, cp8, cp16 = self.cp(x)
        outputs = (self.conv_out(self.ffm(feat8, cp8)), self.conv_out16(cp8), self.conv_out32(cp16))
        return tuple(F.interpolate(o, size=size, mode="bilinear", align_corners=True) for o in outputs)


# ----------------------------------------------------------------------------- loading and use

def load_bisenet(path: Any = None, device: Any = "cpu", trust_pickle: bool = False, base: int | None = None) -> BiSeNet:
    """Build BiSeNet and strictly load ``path`` (default: ``79999_iter.pth`` from the registry).

    ``base`` is the ResNet-18 stem width (64 for the official file); None reads it from the
    checkpoint's ``cp.resnet.conv1.weight`` so narrower test networks in the same layout load too.
    """
    from ..weights import load_checkpoint, load_state_dict_strict, require

    path = path if path is not None else require("bisenet")
    state = load_checkpoint(path, trust_pickle=trust_pickle)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if base is None:
        stem = state.get("cp.resnet.conv1.weight") if isinstance(state, dict) else None
        base = int(stem.shape[0]) if stem is not None and getattr(stem, "ndim", 0) == 4 else 64
    net = BiSeNet(base=base)
    load_state_dict_strict(net, state, path, "face-parsing BiSeNet")
    return net.to(device).eval()


@torch.no_grad()
def parse_labels(net: BiSeNet, rgb: np.ndarray, box: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Per-pixel class labels (H, W) int64 of a photo, parsed in a square around ``box``.

    The square (side :data:`CONTEXT` × the box's longer side, centred on it; CelebAMask-HQ framing)
    is resampled to ``size``² (bilinear after an area prefilter when it shrinks the photo more than
    2×, as :func:`~mvinvert_cli.align.crop.warp_crop`; the reference code's PIL bilinear resize also
    averages over the footprint), ImageNet-normalised, parsed, and the argmax labels are mapped back
    (nearest); pixels outside the square are background (0).
    """
    height, width = rgb.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    side = CONTEXT * max(x2 - x1, y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    k = size / side
    to_square = np.array([[k, 0.0, size / 2 - k * cx], [0.0, k, size / 2 - k * cy]])
    square = warp_crop(rgb.astype(np.float32), to_square, size, cubic=False)  # area-prefiltered, like PIL's resize
    device = next(net.parameters()).device
    x = torch.from_numpy(square.transpose(2, 0, 1).copy())[None].to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    labels = net((x - mean) / std)[0].argmax(dim=1)[0].to(torch.uint8).cpu().numpy()  # (size, size)
    back = cv2.invertAffineTransform(to_square)
    return cv2.warpAffine(labels, opencv_affine(back), (width, height), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.int64)


def parse_photo(net: BiSeNet, rgb: np.ndarray, box: np.ndarray, oval: np.ndarray) -> dict[str, np.ndarray]:
    """Masks "face", "hair", "glasses", "hat", "occluder" (bool (H, W)) from BiSeNet labels."""
    from .masks import class_masks

    return class_masks(parse_labels(net, rgb, box), oval)
