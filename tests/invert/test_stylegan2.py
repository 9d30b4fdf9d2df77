"""StyleGAN2 generator: manifest layout, FIR ops against scipy, w/w+/truncation/noise/stop_at."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d

from mvinvert_cli.invert.stylegan2 import (
    Blur,
    Generator,
    ModulatedConv2d,
    Upsample,
    fir_filter,
    make_kernel,
)

from .conftest import known_w_plus, tiny_generator


def state_dict_shapes(module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_full_size_matches_manifest(manifest):
    with torch.device("meta"):
        g = Generator(1024, 512, 8, channel_multiplier=2)
    assert state_dict_shapes(g) == manifest("stylegan2_ffhq_1024_rosinality")
    assert g.n_latent == 18 and g.num_layers == 17
    assert sum(p.numel() for p in g.parameters()) == 30_370_060


def _upfirdn_reference(x: np.ndarray, kernel: np.ndarray, up: int, pad: tuple[int, int]) -> np.ndarray:
    """Zero-insert, pad, 'valid' 2-D convolution with scipy (the upfirdn2d definition)."""
    h, w = x.shape
    z = np.zeros((h * up, w * up))
    z[::up, ::up] = x
    z = np.pad(z, ((pad[0], pad[1]), (pad[0], pad[1])))
    return convolve2d(z, kernel, mode="valid")


@pytest.mark.parametrize("up,pad,gain", [(2, (2, 1), 4), (1, (1, 1), 4), (1, (2, 2), 1)])
def test_fir_filter_matches_scipy(up, pad, gain):
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    kernel = make_kernel((1, 3, 3, 1)).double() * gain
    out = fir_filter(x, kernel, pad, up=up)
    ref = _upfirdn_reference(x[1, 2].numpy(), kernel.numpy(), up, pad)
    assert out.shape[-2:] == ref.shape
    np.testing.assert_allclose(out[1, 2].numpy(), ref, atol=1e-12)


def test_upsample_and_blur_keep_dc_and_double_size():
    x = torch.full((1, 3, 8, 8), 0.7)
    up = Upsample()(x)
    assert up.shape == (1, 3, 16, 16)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 0.7))
    blur = Blur((1, 3, 3, 1), pad=(1, 1), upsample_factor=2)
    assert blur(x).shape == (1, 3, 7, 7)


@pytest.mark.parametrize("upsample,demodulate", [(False, True), (True, True), (False, False)])
def test_modulated_conv_grouped_matches_per_sample_loop(upsample, demodulate):
    torch.manual_seed(3)
    conv = ModulatedConv2d(5, 4, 3 if demodulate else 1, 8, demodulate=demodulate, upsample=upsample).double()
    x, style = torch.randn(3, 5, 6, 6, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    out = conv(x, style)
    for b in range(3):
        s = conv.modulation(style[b:b + 1])[0]
        w = conv.scale * conv.weight[0] * s[None, :, None, None]  # (out,in,k,k)
        if demodulate:
            w = w / torch.sqrt((w ** 2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        if upsample:
            ref = conv.blur(F.conv_transpose2d(x[b:b + 1], w.transpose(0, 1), stride=2))
        else:
            ref = F.conv2d(x[b:b + 1], w, padding=conv.padding)
        torch.testing.assert_close(out[b:b + 1], ref)
    assert out.shape[-1] == (12 if upsample else 6)


def test_w_equals_broadcast_w_plus_and_mapping(generator):
    z = torch.randn(2, generator.style_dim)
    w = generator.mapping(z)
    a = generator(z, input_is_latent=False)
    b = generator(w)
    c = generator(w[:, None].repeat(1, generator.n_latent, 1))
    assert a.shape == (2, 3, 32, 32)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(b, c)


def test_w_plus_rows_are_used(generator):
    w_plus = known_w_plus(generator, 1, seed=5)
    base = generator(w_plus)
    for row in (0, 1, generator.n_latent - 1):
        changed = w_plus.clone()
        changed[:, row] += 1.0
        assert (generator(changed) - base).abs().max() > 1e-4, row


def test_truncation_zero_gives_the_average_image(generator):
    w_avg = generator.mean_latent(500)
    z = torch.randn(3, generator.style_dim)
    out = generator(z, input_is_latent=False, truncation=0.0, truncation_latent=w_avg)
    torch.testing.assert_close(out, generator(w_avg[None]).expand(3, -1, -1, -1))
    half = generator(z, input_is_latent=False, truncation=0.5, truncation_latent=w_avg)
    assert not torch.allclose(half, out)
    with pytest.raises(ValueError):
        generator(z, input_is_latent=False, truncation=0.5)


def test_fixed_noise_is_deterministic_random_noise_is_not(generator):
    w = known_w_plus(generator, 2, seed=1)
    torch.testing.assert_close(generator(w), generator(w))
    with torch.no_grad():
        for layer in [generator.conv1, *generator.convs]:
            layer.noise.weight.fill_(0.5)
    assert (generator(w, randomize_noise=True) - generator(w)).abs().max() > 1e-3
    zero = [torch.zeros_like(n) for n in generator.noise_maps()]
    assert (generator(w, noise=zero) - generator(w)).abs().max() > 1e-3


def test_stop_at_returns_the_intermediate_skip_image(generator):
    w_plus = known_w_plus(generator, 2, seed=2)
    full = generator(w_plus)
    torch.testing.assert_close(generator(w_plus, stop_at=32), full)
    half = generator(w_plus, stop_at=16)
    assert half.shape == (2, 3, 16, 16)
    used = 6  # rows 0..5 reach 16² (conv1, to_rgb1, 8²: 1,2 + rgb 3, 16²: 3,4 + rgb 5)
    changed = w_plus.clone()
    changed[:, used:] += 3.0
    torch.testing.assert_close(generator(changed, stop_at=16), half)
    assert (generator(changed) - full).abs().max() > 1e-4
    # the coarse skip image is a low-pass preview of the full image
    pooled = F.avg_pool2d(full, 2)
    assert (half - pooled).abs().mean() < (half - pooled.flip(-1)).abs().mean()
    with pytest.raises(ValueError):
        generator(w_plus, stop_at=24)


def test_bad_latent_shape_raises(generator):
    with pytest.raises(ValueError):
        generator(torch.zeros(1, 5, generator.style_dim))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # compare full-precision convolutions
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    g = tiny_generator()
    w = known_w_plus(g, 2, seed=0)
    cpu = g(w)
    gpu = g.to("cuda")(w.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-4, rtol=1e-3)
    assert g(w.cuda(), stop_at=16).device.type == "cuda"
