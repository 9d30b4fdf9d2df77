"""StyleGAN2 generator (Karras et al. 2020, config-f) in pure PyTorch: the G of MvInvert Eq. 3.

The module tree and parameter names follow rosinality's ``stylegan2-pytorch/model.py`` so that
``g_ema`` of ``stylegan2-ffhq-config-f.pt`` (and ``decoder.*`` of a ReStyle checkpoint) loads with
``strict=True`` (171 tensors for size 1024, manifest ``stylegan2_ffhq_1024_rosinality.json``). The
custom CUDA ops of the original are replaced by plain ``conv2d`` / ``conv_transpose2d`` calls, so the
same code runs on CPU and CUDA:

- upfirdn2d(up=2) of the to-RGB skip = zero insertion + pad (2,1) + depthwise 4×4 FIR;
- the blur after the stride-2 transposed modulated conv = pad (1,1) + depthwise 4×4 FIR;
- FusedLeakyReLU = leaky_relu(x + b, 0.2)·√2.

Blocks first (``PixelNorm`` … ``ToRGB``), then :class:`Generator`; the checkpoint loaders are in
:mod:`mvinvert_cli.invert.generator_files`.
Latents: ``w`` (B,D) is broadcast to every layer; ``w+`` (B,L,D) gives one row per layer, L = 2·log2(size)−2
(18 at 1024): row 0 → ``conv1``, row 1 → ``to_rgb1``, then rows 2k+1, 2k+2 → ``convs[2k]``, ``convs[2k+1]``
and row 2k+3 → ``to_rgbs[k]``. Images come out NCHW, roughly in [−1,1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLUR_KERNEL: tuple[int, ...] = (1, 3, 3, 1)
LRELU_GAIN = math.sqrt(2.0)


def make_kernel(taps: Sequence[float]) -> Tensor:
    """Separable FIR taps (k,) → normalised 2-D kernel (k,k) summing to 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def fir_filter(x: Tensor, kernel: Tensor, pad: tuple[int, int], up: int = 1) -> Tensor:
    """upfirdn2d with down = 1 in plain ops: zero-insert ``up``×, pad (pad0, pad1), convolve with ``kernel``.

    x (B,C,H,W), kernel (k,k) → (B,C, H·up + pad0 + pad1 − k + 1, same in W). True convolution
    (the kernel is flipped), as in the reference ``upfirdn2d_native``.
    """
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h, up, w, up)
        z[:, :, :, 0, :, 0] = x
        x = z.view(b, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = torch.flip(kernel, (0, 1))[None, None].to(x.dtype)
    out = F.conv2d(x.reshape(b * c, 1, *x.shape[2:]), weight)
    return out.view(b, c, *out.shape[2:])


def fused_leaky_relu(x: Tensor, bias: Tensor) -> Tensor:
    """leaky_relu(x + bias, 0.2)·√2 with bias broadcast on dim 1 (the reference FusedLeakyReLU)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), 0.2) * LRELU_GAIN


class PixelNorm(nn.Module):
    """x·rsqrt(mean(x², dim 1) + 1e−8)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    """2× FIR upsampling of the skip image (upfirdn2d up=2, pad (2,1), kernel × 4)."""

    def __init__(self, blur_kernel: Sequence[int] = BLUR_KERNEL, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(blur_kernel) * factor ** 2)
        p = len(blur_kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: Tensor) -> Tensor:
        return fir_filter(x, self.kernel, self.pad, up=self.factor)


class Blur(nn.Module):
    """FIR low-pass after the transposed convolution (kernel × factor², pad given)."""

    def __init__(self, blur_kernel: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel(blur_kernel) * upsample_factor ** 2)
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return fir_filter(x, self.kernel, self.pad)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: y = x·(W·lr_mul/√in)ᵀ + b·lr_mul (+ fused lrelu).

    ``weight`` (out,in) is stored divided by ``lr_mul``; ``bias`` (out,).
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: str | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation == "fused_lrelu":
            out = F.linear(x, self.weight * self.scale, bias)  # bias on the last dim, any leading dims
            return F.leaky_relu(out, 0.2) * LRELU_GAIN
        return F.linear(x, self.weight * self.scale, bias)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, "
                f"activation={self.activation})")


class ModulatedConv2d(nn.Module):
    """Modulated (and demodulated) convolution, one grouped conv over the batch.

    w_eff = W·s/√(in·k²) with s = modulation(w) (bias init 1); demodulation divides each output
    filter by ‖w_eff‖ (rsqrt(Σ w_eff² + 1e−8)). ``upsample``: stride-2 transposed conv + Blur.
    ``weight`` (1,out,in,k,k).
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: Sequence[int] = BLUR_KERNEL) -> None:
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """x (B,in,H,W), style (B,D) → (B,out,H',W') with H' = 2H if upsampling else H."""
        b, c, h, w = x.shape
        s = self.modulation(style).view(b, 1, c, 1, 1)
        weight = self.scale * self.weight * s  # (B,out,in,k,k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4)) + 1e-8).view(b, self.out_channel, 1, 1, 1)
        k = self.kernel_size
        x = x.reshape(1, b * c, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * c, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=b)
            return self.blur(out.view(b, self.out_channel, *out.shape[2:]))
        out = F.conv2d(x, weight.reshape(b * self.out_channel, c, k, k), padding=self.padding, groups=b)
        return out.view(b, self.out_channel, *out.shape[2:])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channel}, {self.out_channel}, {self.kernel_size}, "
                f"upsample={self.upsample}, demodulate={self.demodulate})")


class NoiseInjection(nn.Module):
    """x + weight·noise, ``weight`` (1,) learned; noise (B or 1,1,H,W), fresh N(0,1) when None."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, x.shape[2], x.shape[3]).normal_()
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4×4 constant, ``input`` (1,C,4,4), repeated over the batch."""

    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """ModulatedConv2d → noise → FusedLeakyReLU (``activate.bias`` (out,))."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[int] = BLUR_KERNEL, demodulate: bool = True) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, demodulate=demodulate,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = _Bias(out_channel)

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        return fused_leaky_relu(self.noise(self.conv(x, style), noise), self.activate.bias)


class _Bias(nn.Module):
    """Holder of the FusedLeakyReLU bias so that its key is ``activate.bias``."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))


class ToRGB(nn.Module):
    """1×1 modulated conv to RGB without demodulation, + ``bias`` (1,3,1,1), + upsampled skip."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[int] = BLUR_KERNEL) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


def default_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """Feature width per resolution of config-f (cm = 2): 512 up to 32², then halving from 64²."""
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm,
            1024: 16 * cm}


class Generator(nn.Module):
    """StyleGAN2 generator with the skip (to-RGB) architecture.

    Args:
        size: output side (power of two ≥ 8); 1024 for FFHQ.
        style_dim: D, the width of z and w (512).
        n_mlp: mapping layers (8), EqualLinear with ``lr_mlp`` and fused leaky ReLU after PixelNorm.
        channel_multiplier: cm of :func:`default_channels` (2 = config-f).
        channels: explicit {resolution: width} overriding cm (tiny test models).
        blur_kernel: FIR taps (1,3,3,1).
        lr_mlp: learning-rate multiplier of the mapping network (0.01).

    Attributes: ``n_latent`` = L = 2·log2(size) − 2 w+ rows, ``num_layers`` = 2·log2(size) − 3 noise maps
    (``noises.noise_i`` buffers (1,1,r,r), used when ``randomize_noise`` is False).
    """

    def __init__(self, size: int, style_dim: int, n_mlp: int, channel_multiplier: int = 2,
                 channels: Mapping[int, int] | None = None, blur_kernel: Sequence[int] = BLUR_KERNEL,
                 lr_mlp: float = 0.01) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"generator size must be a power of two ≥ 8, got {size}")
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)])
        self.channels = dict(channels) if channels is not None else default_channels(channel_multiplier)
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))
        in_channel = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2 ** i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim, blur_kernel=blur_kernel))
            in_channel = out_channel

    def extra_repr(self) -> str:
        return f"size={self.size}, style_dim={self.style_dim}, n_mlp={self.n_mlp}, n_latent={self.n_latent}"

    def mapping(self, z: Tensor) -> Tensor:
        """z (…,D) → w (…,D) through PixelNorm and the MLP."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """w̄ (D,) averaged over ``n`` mapped z ~ N(0,I) (drawn on the CPU for reproducibility)."""
        z = torch.randn(n, self.style_dim, generator=generator).to(self.input.input.device)
        return self.mapping(z).mean(0)

    def noise_maps(self) -> list[Tensor]:
        """The fixed noise buffers noise_0 … noise_{num_layers−1}."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def expand_latent(self, latent: Tensor) -> Tensor:
        """w (B,D) → (B,L,D); w+ (B,L,D) is returned as is (checked)."""
        if latent.ndim == 2:
            return latent[:, None].expand(-1, self.n_latent, -1)
        if latent.ndim != 3 or latent.shape[1] != self.n_latent or latent.shape[2] != self.style_dim:
            raise ValueError(f"expected w (B,{self.style_dim}) or w+ (B,{self.n_latent},{self.style_dim}), "
                             f"got {tuple(latent.shape)}")
        return latent

    def forward(self, latent: Tensor, input_is_latent: bool = True, truncation: float = 1.0,
                truncation_latent: Tensor | None = None, randomize_noise: bool = False,
                noise: Sequence[Tensor | None] | None = None, stop_at: int | None = None) -> Tensor:
        """Synthesise images (Eq. 3: I_inv = G(w)).

        Args:
            latent: w (B,D) or w+ (B,L,D) when ``input_is_latent``; else z (B,D) or (B,L,D) mapped row-wise.
            truncation: ψ; rows become w̄ + ψ·(w − w̄) when ψ < 1 (needs ``truncation_latent`` (D,) or (L,D)).
            randomize_noise: fresh noise per call; False uses the stored ``noises`` buffers (deterministic).
            noise: explicit noise maps (num_layers entries, None = random) overriding both.
            stop_at: resolution to stop at (power of two ≤ size): the skip image at that scale.

        Returns:
            (B,3,r,r) with r = ``stop_at`` or ``size``, roughly in [−1,1].
        """
        if not input_is_latent:
            latent = self.mapping(latent)
        latent = self.expand_latent(latent)
        if truncation < 1.0:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (w̄)")
            latent = truncation_latent + truncation * (latent - truncation_latent)
        stop = self.size if stop_at is None else int(stop_at)
        if stop < 4 or stop > self.size or stop & (stop - 1):
            raise ValueError(f"stop_at must be a power of two in [4, {self.size}], got {stop_at}")
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.noise_maps()
        out = self.conv1(self.input(latent.shape[0]), latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for k in range(int(math.log2(stop)) - 2):
            i = 2 * k + 1
            out = self.convs[2 * k](out, latent[:, i], noise=noise[2 * k + 1])
            out = self.convs[2 * k + 1](out, latent[:, i + 1], noise=noise[2 * k + 2])
            skip = self.to_rgbs[k](out, latent[:, i + 2], skip)
        return skip
