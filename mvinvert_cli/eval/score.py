"""Region scores of one candidate image against the photo: L1, PSNR, SSIM (+ identity cosine).

The definitions are those of :mod:`mvinvert_cli.metrics`; this module only fixes how the evaluation
applies them: the candidate is the photo with the scored region replaced by the method's render
(:func:`~mvinvert_cli.eval.holdout.composite`), so SSIM windows that straddle the region border see
real photo context, and every score is averaged over the region's pixels only.
"""

from __future__ import annotations

import torch

from .. import metrics

METRICS = ("l1", "psnr", "ssim")
HIGHER_IS_BETTER = {"l1": False, "psnr": True, "ssim": True, "id_cos": True}


def region_scores(photo: torch.Tensor, candidate: torch.Tensor, region: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"l1", "psnr", "ssim"} → (B,) float64 over the pixels of ``region``.

    Args:
        photo: (B, 3, H, W) reference in [0, 1].
        candidate: (B, 3, H, W) in [0, 1], equal to ``photo`` outside the region.
        region: bool (B, H, W); an empty region scores NaN.
    """
    return {
        "l1": metrics.l1(candidate, photo, region),
        "psnr": metrics.psnr(candidate, photo, region, data_range=1.0),
        "ssim": metrics.ssim(candidate, photo, region, data_range=1.0),
    }
