"""metrics: L1/PSNR/SSIM against known values and scikit-image; masks; identity cosine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mvinvert_cli import metrics


def _skimage_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> float:
    return float(structural_similarity(x.numpy(), y.numpy(), data_range=data_range, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False, channel_axis=0))


def test_smoke_cardinality():
    x, y = torch.rand(3, 3, 32, 24), torch.rand(3, 3, 32, 24)
    for fn in (metrics.l1, metrics.mse, metrics.psnr, metrics.ssim):
        out = fn(x, y)
        assert out.shape == (3,) and out.dtype == torch.float64
    assert metrics.ssim_map(x, y).shape == (3, 3, 22, 14)


def test_exception():
    with pytest.raises(ValueError):
        metrics.l1(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError):
        metrics.ssim(torch.rand(1, 3, 10, 40), torch.rand(1, 3, 10, 40))  # smaller than the 11-px window
    with pytest.raises(ValueError):
        metrics.psnr(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), mask=torch.ones(3, 8, 8, dtype=torch.bool))


def test_psnr_of_known_noise():
    """Uniform noise ±a has variance a²/3 exactly in expectation: PSNR = 10·log10(3/a²)."""
    g = torch.Generator().manual_seed(1)
    x = torch.full((1, 3, 256, 256), 0.5)
    a = 0.1
    y = x + (torch.rand(x.shape, generator=g) * 2 - 1) * a
    expected = 10 * math.log10(3 / a ** 2)  # 24.77 dB
    assert metrics.psnr(x, y).item() == pytest.approx(expected, abs=0.05)
    # constant offset: MSE exactly d²
    assert metrics.psnr(x, x + 0.05).item() == pytest.approx(20 * math.log10(1 / 0.05), abs=1e-4)
    assert metrics.psnr(x * 255, (x + 0.05) * 255, data_range=255).item() == pytest.approx(26.0206, abs=1e-3)
    assert metrics.psnr(x, x).item() == math.inf


def test_psnr_matches_skimage():
    x, y = torch.rand(2, 3, 20, 30), torch.rand(2, 3, 20, 30)
    ours = metrics.psnr(x, y)
    for i in range(2):
        assert ours[i].item() == pytest.approx(peak_signal_noise_ratio(x[i].numpy(), y[i].numpy(), data_range=1),
                                               abs=1e-5)


def test_l1_known_value_and_mask():
    x = torch.zeros(2, 3, 4, 4)
    y = torch.zeros(2, 3, 4, 4)
    y[:, :, :2] = 0.3  # top half differs by 0.3
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, :2] = True  # image 0: only the differing half
    mask[1, 2:] = True  # image 1: only the identical half
    assert metrics.l1(x, y).tolist() == pytest.approx([0.15, 0.15])
    assert metrics.l1(x, y, mask).tolist() == pytest.approx([0.3, 0.0])
    assert metrics.l1(x, y, mask[0]).tolist() == pytest.approx([0.3, 0.3])  # (H,W) mask broadcast
    assert metrics.l1(x, y, mask.float()).tolist() == pytest.approx([0.3, 0.0])  # float mask > 0.5


def test_empty_mask_is_nan():
    x, y = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    empty = torch.zeros(1, 16, 16, dtype=torch.bool)
    assert math.isnan(metrics.l1(x, y, empty).item())
    assert math.isnan(metrics.psnr(x, y, empty).item())
    assert math.isnan(metrics.ssim(x, y, empty).item())


def test_ssim_identical_is_one():
    x = torch.rand(2, 3, 40, 40)
    assert metrics.ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    assert metrics.ssim(x, x, torch.rand(2, 40, 40) > 0.5).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)


@pytest.mark.parametrize("shape,noise", [((3, 48, 64), 0.05), ((3, 33, 29), 0.3), ((1, 20, 20), 1.0)])
def test_ssim_matches_skimage(shape, noise):
    g = torch.Generator().manual_seed(7)
    x = torch.rand((2, *shape), generator=g)
    y = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ours = metrics.ssim(x, y)
    for i in range(2):
        assert ours[i].item() == pytest.approx(_skimage_ssim(x[i], y[i]), abs=1e-3)
        assert ours[i].item() == pytest.approx(_skimage_ssim(x[i], y[i]), abs=1e-5)  # float32 vs float64 only


def test_ssim_data_range():
    x = torch.rand(1, 3, 24, 24)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert metrics.ssim(x * 255, y * 255, data_range=255).item() == pytest.approx(
        _skimage_ssim(x[0] * 255, y[0] * 255, 255), abs=1e-5)
    assert metrics.ssim(x * 255, y * 255, data_range=255).item() == pytest.approx(metrics.ssim(x, y).item(), abs=1e-9)


def test_ssim_mask_selects_region():
    """Corrupt the right half only: SSIM on the left-half mask ≈ 1, on the right-half mask < 1."""
    x = torch.rand(1, 3, 40, 40)
    y = x.clone()
    y[..., 20:] = torch.rand(1, 3, 40, 20)
    left = torch.zeros(1, 40, 40, dtype=torch.bool)
    left[..., :14] = True  # window radius 5 keeps these away from the corrupted columns
    right = torch.zeros(1, 40, 40, dtype=torch.bool)
    right[..., 26:] = True
    assert metrics.ssim(x, y, left).item() == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim(x, y, right).item() < 0.2
    full = torch.ones(1, 40, 40, dtype=torch.bool)
    assert metrics.ssim(x, y, full).item() == pytest.approx(_skimage_ssim(x[0], y[0]), abs=1e-5)


def test_gaussian_window_is_scipy_kernel():
    from scipy.ndimage import gaussian_filter1d

    impulse = np.zeros(21)
    impulse[10] = 1.0
    expected = gaussian_filter1d(impulse, 1.5, truncate=3.5)[5:16]
    assert np.allclose(metrics.gaussian_window().numpy(), expected, atol=1e-12)


def test_identity_cosine():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = torch.tensor([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
    assert metrics.identity_cosine(a, b).tolist() == pytest.approx([0.0, 1.0, -1.0])
    with pytest.raises(ValueError):
        metrics.identity_cosine(a, b[:2])


def test_gradcheck_ssim_l1():
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: metrics.ssim(t, y), (x,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: metrics.psnr(t, y), (x,), fast_mode=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    mask = torch.rand(2, 32, 32) > 0.3
    for fn in (metrics.l1, metrics.psnr, metrics.ssim):
        assert torch.allclose(fn(x.cuda(), y.cuda(), mask.cuda()).cpu(), fn(x, y, mask), atol=1e-9)


def test_ssim_mask_crop_is_exact():
    """Cropping to the mask's bounding box (a speed-up) gives the same value as the full map."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 60, 50, generator=g)
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    mask = torch.zeros(2, 60, 50, dtype=torch.bool)
    mask[0, 20:30, 8:20] = True
    mask[1, 40:58, 30:49] = True  # touches the border band, where S is undefined
    s = metrics.ssim_map(x, y)
    inner = mask[:, None, 5:-5, 5:-5].expand_as(s)
    expected = torch.stack([s[i][inner[i]].mean() for i in range(2)])
    assert torch.allclose(metrics.ssim(x, y, mask), expected, atol=1e-12)
