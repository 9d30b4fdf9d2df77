"""Image-reconstruction and identity metrics of MvInvert Table 1 (L1, PSNR, SSIM, identity cosine).

Every function is batched torch, runs on whatever device its inputs live on, and takes an optional
face mask so the score covers the face region only. Conventions shared by all of them:

- ``x``, ``y``: float images (B,3,H,W) (or (B,C,H,W)), values in ``[0, data_range]`` (default 1).
- ``mask``: None (every pixel counts), or (B,H,W) / (H,W) bool; a float mask is read as ``mask > 0.5``.
  The mask selects pixels; all C channels of a selected pixel count.
- Result: float64 tensor (B,), one score per image. An image whose mask selects no pixel scores NaN
  (aggregate with ``torch.nanmean``): an empty region has no error, not a perfect one.

Definitions (M = the set of selected pixels of one image, |M| its size, C channels):

- L1 = (1 / (C·|M|)) Σ_{p∈M} Σ_c |x_c(p) − y_c(p)|          (mean absolute error, in image units)
- MSE = (1 / (C·|M|)) Σ_{p∈M} Σ_c (x_c(p) − y_c(p))²,  PSNR = 10·log10(R² / MSE) dB, R = data_range;
  MSE = 0 gives +inf (identical images). Same as ``skimage.metrics.peak_signal_noise_ratio``.
- SSIM (Wang et al. 2004, as ``skimage.metrics.structural_similarity(x, y, data_range=R,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=0)``): per channel,
  local statistics under an 11×11 Gaussian window w (σ = 1.5, radius 5 = int(3.5σ + 0.5), weights
  normalised to sum 1): μx = w∗x, σx² = w∗x² − μx², σxy = w∗(xy) − μxμy (population covariance), and

      S(p) = (2μxμy + C1)(2σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)),  C1 = (0.01R)², C2 = (0.03R)².

  S is defined only where the whole window lies inside the image (the (H−10)×(W−10) interior, which
  is exactly the region scikit-image averages over). SSIM = mean of S over the channels and over the
  selected pixels of that interior. With mask=None it equals scikit-image's value.
- Identity cosine = ⟨a, b⟩ / (‖a‖‖b‖) of two face-recognition embeddings (1 = same direction).
"""

from __future__ import annotations

import torch

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # scipy/scikit-image default: radius = int(truncate * sigma + 0.5) = 5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"metrics expect two (B,C,H,W) images of the same shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")


def _pixel_mask(mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) bool selection from an optional (B,H,W)/(H,W) mask."""
    b, _, h, w = x.shape
    if mask is None:
        return torch.ones(b, 1, h, w, dtype=torch.bool, device=x.device)
    mask = mask.to(x.device)
    mask = mask if mask.dtype == torch.bool else mask > 0.5
    if mask.dim() == 2:
        mask = mask.expand(b, h, w)
    if mask.shape != (b, h, w):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match images {tuple(x.shape)}")
    return mask[:, None]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (B,C,H,W) ``values`` over the pixels selected by (B,1,H,W) ``mask`` and all channels."""
    weights = mask.to(torch.float64).expand_as(values)
    total = (values.to(torch.float64) * weights).flatten(1).sum(1)
    count = weights.flatten(1).sum(1)
    return total / count  # 0/0 → NaN for an empty mask, by design


def l1(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error over the masked pixels and all channels → (B,) float64 (module docstring)."""
    _check_pair(x, y)
    return _masked_mean((x - y).abs(), _pixel_mask(mask, x))


def mse(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the masked pixels and all channels → (B,) float64."""
    _check_pair(x, y)
    diff = x.to(torch.float64) - y.to(torch.float64)
    return _masked_mean(diff * diff, _pixel_mask(mask, x))


def psnr(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None,
         data_range: float = 1.0) -> torch.Tensor:
    """PSNR = 10·log10(R² / MSE) in dB over the masked pixels → (B,) float64; +inf when MSE = 0."""
    return 10.0 * torch.log10(data_range ** 2 / mse(x, y, mask))


def gaussian_window(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE,
                    device: torch.device | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """1-D Gaussian weights (2r+1,), r = int(truncate·σ + 0.5), summing to 1 (scipy.ndimage's kernel)."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def _window_mean(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of (..., H, W) → (..., H−2r, W−2r).

    A weighted sum of 2r+1 shifted slices per axis (faster than a depthwise float64 conv2d on CPU).
    """
    size = window.numel()
    height, width = images.shape[-2:]
    rows = sum(window[k] * images[..., k:height - size + 1 + k, :] for k in range(size))
    return sum(window[k] * rows[..., :, k:width - size + 1 + k] for k in range(size))


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0,
             sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Per-pixel, per-channel SSIM S(p) (module docstring) on the window interior → (B,C,H−2r,W−2r).

    Computed in float64 (the statistics subtract nearly equal numbers); r = 5 for σ = 1.5.
    """
    _check_pair(x, y)
    window = gaussian_window(sigma, device=x.device)
    radius = window.numel() // 2
    if min(x.shape[-2:]) <= 2 * radius:
        raise ValueError(f"SSIM needs images larger than {2 * radius + 1}×{2 * radius + 1} px, "
                         f"got {tuple(x.shape[-2:])}")
    x = x.to(torch.float64)
    y = y.to(torch.float64)
    mu_x, mu_y, xx, yy, xy = _window_mean(torch.stack([x, y, x * x, y * y, x * y]), window)
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov_xy = xy - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None, data_range: float = 1.0,
         sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Gaussian-window SSIM averaged over channels and the masked interior pixels → (B,) float64.

    Equals ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=R)`` when ``mask`` is None; with a mask, pixels within
    the window radius of the image border are left out of the average (S is undefined there).
    """
    _check_pair(x, y)
    radius = int(SSIM_TRUNCATE * sigma + 0.5)
    keep = _pixel_mask(mask, x)
    if mask is not None and keep.any():  # S needs only the windows around selected pixels: crop to them
        rows = torch.nonzero(keep.any(dim=3).any(dim=0)[0])[:, 0]
        cols = torch.nonzero(keep.any(dim=2).any(dim=0)[0])[:, 0]
        top, bottom = max(int(rows[0]) - radius, 0), min(int(rows[-1]) + radius + 1, x.shape[-2])
        left, right = max(int(cols[0]) - radius, 0), min(int(cols[-1]) + radius + 1, x.shape[-1])
        if bottom - top > 2 * radius and right - left > 2 * radius:
            x, y = x[..., top:bottom, left:right], y[..., top:bottom, left:right]
            keep = keep[..., top:bottom, left:right]
    s = ssim_map(x, y, data_range, sigma)
    keep = keep[..., radius:x.shape[-2] - radius, radius:x.shape[-1] - radius]
    return _masked_mean(s, keep)


def identity_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity ⟨a,b⟩/(‖a‖‖b‖) of (B,D) embeddings → (B,) float64 (NaN for a zero vector)."""
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"identity_cosine expects two (B,D) embeddings, got {tuple(a.shape)} and {tuple(b.shape)}")
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))

