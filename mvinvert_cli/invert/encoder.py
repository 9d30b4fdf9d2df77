"""ReStyle residual encoders (Alaluf et al. 2021) on the IR-SE-50 backbone: the E of MvInvert Eq. 2.

Module names follow ``restyle-encoder/models/encoders/restyle_{psp,e4e}_encoders.py`` and
``helpers.py`` so that the ``encoder.*`` part of ``restyle_psp_ffhq_encode.pt`` /
``restyle_e4e_ffhq_encode.pt`` loads with ``strict=True`` (565 tensors each, manifests
``restyle_{psp,e4e}_ffhq_encode.json``):

- ``input_layer``: Conv3×3(input_nc → 64, no bias), BN, PReLU;
- ``body.0..23``: bottleneck_IR_SE units, stages of (3, 4, 14, 3) units with widths (64, 128, 256, 512);
  the first unit of every stage has stride 2 (a 256² input ends as 16²×512);
- ``styles.0..17``: GradualStyleBlock(512, 512, 16) = log2(16) × [Conv3×3 s2 + LeakyReLU(0.01)] + EqualLinear.

:class:`BackboneEncoder` (pSp) returns 18 independent residual rows; :class:`ProgressiveBackboneEncoder`
(e4e, inference stage) returns styles[0] repeated plus styles[i] added to row i ≥ 1. Input: (B,6,256,256)
= target ‖ current reconstruction, both in [−1,1]; output (B,18,512) Δ added to the previous w+.
Depth and widths are constructor arguments (tiny test models); defaults are the official ones.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import WeightsError
from ..weights import load_checkpoint, load_state_dict_strict
from .generator_files import build_generator
from .stylegan2 import EqualLinear, Generator

IR_SE_50_UNITS: tuple[int, ...] = (3, 4, 14, 3)
IR_SE_50_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)


class EncoderType(StrEnum):
    """``opts.encoder_type`` values handled here (the ResNet-34 variants are not)."""

    psp = "BackboneEncoder"
    e4e = "ProgressiveBackboneEncoder"


class SEModule(nn.Module):
    """Squeeze-and-excitation: x · σ(fc2(relu(fc1(avgpool(x))))), 1×1 convs without bias."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class BottleneckIRSE(nn.Module):
    """IR-SE unit: res_layer (BN, Conv3×3, PReLU, Conv3×3 stride, BN, SE) + shortcut_layer."""

    def __init__(self, in_channel: int, depth: int, stride: int, se_reduction: int = 16) -> None:
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channel, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, se_reduction),
        )
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class GradualStyleBlock(nn.Module):
    """Feature map (B,in_c,s,s) → one style row (B,out_c): log2(s) stride-2 convs, then EqualLinear."""

    def __init__(self, in_c: int, out_c: int, spatial: int) -> None:
        super().__init__()
        self.out_c = out_c
        num_pools = int(math.log2(spatial))
        modules: list[nn.Module] = [nn.Conv2d(in_c, out_c, 3, stride=2, padding=1), nn.LeakyReLU()]
        for _ in range(num_pools - 1):
            modules += [nn.Conv2d(out_c, out_c, 3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*modules)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_c))


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of an IR-SE encoder; defaults = ReStyle FFHQ (IR-SE-50, 256² input, 18×512 output).

    Attributes:
        input_nc: input channels (6 = target ‖ reconstruction).
        units: bottleneck units per stage (3, 4, 14, 3); the first of each stage has stride 2.
        widths: stage widths (64, 128, 256, 512); consecutive stages must differ (the loader relies on it).
        n_styles: w+ rows L (18).
        style_dim: D (512).
        spatial: side of the body's output map (16 for a 256² input), = input side / 2^len(units).
        se_reduction: squeeze-excitation reduction (16).
    """

    input_nc: int = 6
    units: tuple[int, ...] = IR_SE_50_UNITS
    widths: tuple[int, ...] = IR_SE_50_WIDTHS
    n_styles: int = 18
    style_dim: int = 512
    spatial: int = 16
    se_reduction: int = 16

    @property
    def input_size(self) -> int:
        """Expected input side (256 for the official encoders)."""
        return self.spatial * 2 ** len(self.units)


class BackboneEncoder(nn.Module):
    """pSp IR-SE encoder: (B,input_nc,S,S) → (B,L,D), one GradualStyleBlock per w+ row."""

    def __init__(self, config: EncoderConfig = EncoderConfig()) -> None:
        super().__init__()
        self.config = config
        self.input_layer = nn.Sequential(nn.Conv2d(config.input_nc, config.widths[0], 3, 1, 1, bias=False),
                                         nn.BatchNorm2d(config.widths[0]), nn.PReLU(config.widths[0]))
        units: list[nn.Module] = []
        in_channel = config.widths[0]
        for n, depth in zip(config.units, config.widths, strict=True):
            for i in range(n):
                units.append(BottleneckIRSE(in_channel, depth, 2 if i == 0 else 1, config.se_reduction))
                in_channel = depth
        self.body = nn.Sequential(*units)
        self.styles = nn.ModuleList(GradualStyleBlock(config.widths[-1], config.style_dim, config.spatial)
                                    for _ in range(config.n_styles))

    def features(self, x: Tensor) -> Tensor:
        """(B,input_nc,S,S) → (B,widths[-1],spatial,spatial)."""
        return self.body(self.input_layer(x))

    def forward(self, x: Tensor) -> Tensor:
        """Residual codes Δ (B,L,D) of Eq. 2."""
        feats = self.features(x)
        return torch.stack([style(feats) for style in self.styles], dim=1)


class ProgressiveBackboneEncoder(BackboneEncoder):
    """e4e encoder at its final progressive stage: w = styles[0] on every row, + styles[i] on row i ≥ 1."""

    def forward(self, x: Tensor) -> Tensor:
        feats = self.features(x)
        base = self.styles[0](feats)
        deltas = torch.stack([torch.zeros_like(base)] + [s(feats) for s in self.styles[1:]], dim=1)
        return base[:, None] + deltas


ENCODER_CLASSES: dict[EncoderType, type[BackboneEncoder]] = {
    EncoderType.psp: BackboneEncoder,
    EncoderType.e4e: ProgressiveBackboneEncoder,
}


def build_encoder(kind: EncoderType | str = EncoderType.psp, config: EncoderConfig = EncoderConfig()) -> BackboneEncoder:
    """An untrained encoder of ``kind`` ("BackboneEncoder"/"psp" or "ProgressiveBackboneEncoder"/"e4e")."""
    kind = EncoderType[kind] if isinstance(kind, str) and kind in EncoderType.__members__ else EncoderType(kind)
    return ENCODER_CLASSES[kind](config)


def encoder_config(state: Mapping[str, Tensor], prefix: str = "encoder.") -> EncoderConfig:
    """Read an :class:`EncoderConfig` off an encoder state_dict's shapes (keys under ``prefix``)."""
    first = state[f"{prefix}input_layer.0.weight"]
    depths = []
    i = 0
    while f"{prefix}body.{i}.res_layer.1.weight" in state:
        depths.append(int(state[f"{prefix}body.{i}.res_layer.1.weight"].shape[0]))
        i += 1
    units, widths = [], []
    for d in depths:
        if widths and widths[-1] == d:
            units[-1] += 1
        else:
            widths.append(d)
            units.append(1)
    n_styles = 0
    while f"{prefix}styles.{n_styles}.linear.weight" in state:
        n_styles += 1
    convs = sum(1 for k in state if k.startswith(f"{prefix}styles.0.convs.") and k.endswith(".weight"))
    se = state[f"{prefix}body.0.res_layer.5.fc1.weight"].shape[0]
    return EncoderConfig(input_nc=int(first.shape[1]), units=tuple(units), widths=tuple(widths),
                         n_styles=n_styles, style_dim=int(state[f"{prefix}styles.0.linear.weight"].shape[0]),
                         spatial=2 ** convs, se_reduction=max(widths[0] // int(se), 1))


@dataclass
class RestyleModel:
    """A loaded ReStyle checkpoint.

    Attributes:
        encoder: E (eval mode), (B,6,S,S) in [−1,1] → Δ (B,L,D).
        decoder: G (eval, frozen), the checkpoint's own generator.
        latent_avg: w̄ (L,D), start of the residual loop.
        opts: the training options dict stored with it.
        kind: encoder family.
        notes: how it was interpreted (e.g. latent_avg expanded from (D,)).
    """

    encoder: BackboneEncoder
    decoder: Generator
    latent_avg: Tensor
    opts: dict[str, Any]
    kind: EncoderType
    notes: list[str] = field(default_factory=list)


def load_restyle(path: str | os.PathLike, device: torch.device | str = "cpu", trust_pickle: bool = False) -> RestyleModel:
    """Load ``{'state_dict': {encoder.*, decoder.*}, 'latent_avg', 'opts'}`` strictly (both halves).

    The encoder family comes from ``opts['encoder_type']`` (default BackboneEncoder); its depth and
    widths are read from the tensor shapes, so official and tiny checkpoints use the same path.

    Raises:
        WeightsError: unreadable file, missing entries, an unsupported encoder type, or a mismatch.
    """
    ckpt = load_checkpoint(path, trust_pickle=trust_pickle)
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise WeightsError(f"{path}: not a ReStyle checkpoint (no 'state_dict' entry)")
    state = ckpt["state_dict"]
    opts = dict(ckpt.get("opts") or {})
    name = opts.get("encoder_type", EncoderType.psp.value)
    try:
        kind = EncoderType(name)
    except ValueError as exc:
        raise WeightsError(f"{path}: encoder_type {name!r} is not supported "
                           f"(only {', '.join(t.value for t in EncoderType)})") from exc
    try:
        config = encoder_config(state)
    except (KeyError, IndexError) as exc:
        raise WeightsError(f"{path}: not a ReStyle checkpoint: no IR-SE encoder ({exc})") from exc
    encoder = build_encoder(kind, config)
    load_state_dict_strict(encoder, {k[8:]: v for k, v in state.items() if k.startswith("encoder.")}, path,
                           f"ReStyle {kind.name} encoder")
    decoder = build_generator(state, path, prefix="decoder.")
    notes: list[str] = []
    latent_avg = ckpt.get("latent_avg")
    if latent_avg is None:
        raise WeightsError(f"{path}: ReStyle checkpoint without 'latent_avg'")
    latent_avg = torch.as_tensor(latent_avg, dtype=torch.float32)
    if latent_avg.ndim == 1:
        latent_avg = latent_avg[None].expand(decoder.n_latent, -1).clone()
        notes.append("latent_avg (D,) repeated over the w+ rows")
    if tuple(latent_avg.shape) != (decoder.n_latent, decoder.style_dim):
        raise WeightsError(f"{path}: latent_avg has shape {tuple(latent_avg.shape)}, expected "
                           f"({decoder.n_latent}, {decoder.style_dim})")
    return RestyleModel(encoder.to(device).eval(), decoder.to(device), latent_avg.to(device), opts, kind, notes)


def restyle_checkpoint(encoder: BackboneEncoder, decoder: Generator, latent_avg: Tensor,
                       opts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ReStyle checkpoint dict (``state_dict`` with encoder./decoder. prefixes, ``latent_avg``, ``opts``)."""
    kind = EncoderType.e4e if isinstance(encoder, ProgressiveBackboneEncoder) else EncoderType.psp
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    merged = {"encoder_type": kind.value, "input_nc": encoder.config.input_nc, "output_size": decoder.size,
              "n_iters_per_batch": 5, **(opts or {})}
    return {"state_dict": state, "latent_avg": latent_avg.detach().clone(), "opts": merged}
