"""FFHQ-style alignment of rendered views (the crop the generator and ReStyle were trained on), and back.

The FFHQ recipe (``ffhq-dataset/download_ffhq.py``, ReStyle ``scripts/align_faces_parallel.py``)
builds an oriented square from the 68 iBUG landmarks:

    e_l, e_r = mean(lm[36:42]), mean(lm[42:48]);  ē = (e_l + e_r)/2;  e = e_r − e_l
    m̄ = (lm[48] + lm[54])/2;  d = m̄ − ē
    x = e − rot90(d),  x ← x/‖x‖ · max(2‖e‖, 1.8‖d‖),  y = rot90(x),  c = ē + 0.1·d

(rot90(v) = (−v_y, v_x)) and maps the quad c − x − y (top-left), c − x + y, c + x + y, c + x − y onto
the output square. Here it is an affine map evaluated with ``grid_sample``, so it is differentiable
with respect to the images and the landmarks. Coordinates follow the shared screen convention
(x right, y down, pixel centres at +0.5); outside the source image the reflection of the image is
sampled (FFHQ pads by reflection). The recipe's shrink/blur/pad steps, meant for photos, are omitted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EYE_LEFT = slice(36, 42)
EYE_RIGHT = slice(42, 48)
MOUTH_LEFT, MOUTH_RIGHT = 48, 54


def ffhq_frame(landmarks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Centre c and half-axes x, y of the FFHQ quad, each (B,2) in the landmarks' pixel frame.

    Args:
        landmarks: (B,68,2) iBUG-68 points, px (x right, y down).
    """
    eye_left = landmarks[:, EYE_LEFT].mean(dim=1)
    eye_right = landmarks[:, EYE_RIGHT].mean(dim=1)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (landmarks[:, MOUTH_LEFT] + landmarks[:, MOUTH_RIGHT]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - _rot90(eye_to_mouth)
    scale = torch.maximum(eye_to_eye.norm(dim=-1) * 2.0, eye_to_mouth.norm(dim=-1) * 1.8)
    x = x / x.norm(dim=-1, keepdim=True) * scale[:, None]
    y = _rot90(x)
    center = eye_avg + eye_to_mouth * 0.1
    return center, x, y


def _rot90(v: Tensor) -> Tensor:
    """(…,2) rotated by +90° in a y-down frame: (vx, vy) → (−vy, vx)."""
    return torch.stack([-v[..., 1], v[..., 0]], dim=-1)


def aligned_to_source(landmarks: Tensor, size: int) -> Tensor:
    """(B,2,3) affine A with p_src = A·(u, v, 1) for aligned-crop pixel coordinates u, v ∈ [0, size]."""
    center, x, y = ffhq_frame(landmarks)
    linear = torch.stack([2 * x / size, 2 * y / size], dim=-1)  # (B,2,2): columns = images of u and v
    offset = center - x - y
    return torch.cat([linear, offset[..., None]], dim=-1)


def source_to_aligned(landmarks: Tensor, size: int) -> Tensor:
    """(B,2,3) inverse of :func:`aligned_to_source`: render px → aligned-crop px."""
    forward = aligned_to_source(landmarks, size)
    inverse = torch.linalg.inv(forward[..., :2])
    return torch.cat([inverse, -(inverse @ forward[..., 2:])], dim=-1)


def quad_size(landmarks: Tensor) -> Tensor:
    """(B,) side of the FFHQ square in source pixels (= 2‖x‖)."""
    return 2 * ffhq_frame(landmarks)[1].norm(dim=-1)


def warp_affine(images: Tensor, matrix: Tensor, out_hw: tuple[int, int], padding_mode: str = "reflection") -> Tensor:
    """Sample (B,C,H,W) at p_src = matrix·(p_out, 1) for every output pixel centre → (B,C,h,w).

    ``matrix`` (B,2,3) maps output px to source px (screen convention); bilinear, align_corners=False.
    """
    b, _, h_in, w_in = images.shape
    h, w = out_hw
    ys = torch.arange(h, device=images.device, dtype=images.dtype) + 0.5
    xs = torch.arange(w, device=images.device, dtype=images.dtype) + 0.5
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1).reshape(1, -1, 3)  # (1,h·w,3)
    src = points @ matrix.to(images.dtype).transpose(1, 2)  # (B,h·w,2)
    norm = torch.stack([2 * src[..., 0] / w_in - 1, 2 * src[..., 1] / h_in - 1], dim=-1)
    return F.grid_sample(images, norm.view(b, h, w, 2), mode="bilinear", padding_mode=padding_mode,
                         align_corners=False)


def align_views(images: Tensor, landmarks: Tensor, size: int = 256) -> Tensor:
    """Rendered views (B,3,H,W) → FFHQ-aligned crops (B,3,size,size), differentiable.

    The source is area-downsampled first when the quad holds more than ``size`` pixels per side.
    """
    scale = float(quad_size(landmarks.detach()).max()) / size
    matrix = aligned_to_source(landmarks, size)
    if scale > 1.5:
        factor = int(scale)
        images = F.avg_pool2d(images, factor, ceil_mode=True)
        matrix = matrix / factor
    return warp_affine(images, matrix, (size, size))


def unalign(aligned: Tensor, landmarks: Tensor, out_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Inverse warp of FFHQ-aligned images (B,C,s,s) back to the render frame.

    The aligned image is first area-resized to about the quad's side in render pixels (no aliasing
    when a 1024² generator output lands on a 224² render).

    Returns:
        images (B,C,H,W) and coverage (B,1,H,W) ∈ {0,1}: 1 where the pixel falls inside the crop.
    """
    side = max(8, min(aligned.shape[-1], int(round(float(quad_size(landmarks.detach()).max())))))
    if side < aligned.shape[-1]:
        aligned = F.interpolate(aligned, size=(side, side), mode="area")
    matrix = source_to_aligned(landmarks, side)
    warped = warp_affine(aligned, matrix, out_hw, padding_mode="border")
    ones = torch.ones_like(aligned[:, :1])
    coverage = warp_affine(ones, matrix, out_hw, padding_mode="zeros")
    return warped, (coverage > 0.999).to(aligned.dtype)
