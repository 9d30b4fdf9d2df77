"""Silhouette check after a fit (issue 15): does the rendered mesh cover the photo's face region?

IoU = |M ∩ F| / |M ∪ F| in the render-size fitting crop, M the pixels the fitted mesh covers
(rasterised, any triangle), F the face region: the convex hull of the parser's face mask
(``Observation.crop_face_mask``: skin, brows, eyes, nose, lips). The hull fills the holes a skin
colour model leaves in shaded or very light skin, which are face all the same. A mesh that sits off
the face, or is too small or too large for it, scores low.

:data:`MIN_SILHOUETTE_IOU` is measured on the 12 dev photos of ../shared/faces (default aligner and
model, polygon parser): the fits, all on the face by eye, score 0.72–0.99 (0.72: the very light skin
of aflw2000_image02246, 0.84: the profile aflw2000_image00181); the same meshes shifted sideways by
a quarter of the face width score 0.33–0.54, by a tenth 0.54–0.79, scaled by 1.3 0.44–0.62. 0.6
lies between the worst good fit and the best clearly-off one.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..render.camera import Camera
from ..render.rasterize import rasterize

MIN_SILHOUETTE_IOU = 0.6


def coverage_mask(camera: Camera, triangles: torch.Tensor, world: torch.Tensor) -> torch.Tensor:
    """(S, S) bool: pixels of the render-size crop covered by the mesh ``world`` (V, 3)."""
    screen = camera.project(world[None])
    fragments = rasterize(screen, triangles, (camera.size, camera.size))
    return fragments.pix_to_face[0, ..., 0] >= 0


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two bool masks of one shape (0 when both are empty)."""
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0


def convex_region(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) bool → the filled convex hull of its True pixels (all False if there are none)."""
    ys, xs = np.nonzero(mask.detach().cpu().numpy())
    region = np.zeros(tuple(mask.shape), np.uint8)
    if len(xs):
        hull = cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32))
        cv2.fillConvexPoly(region, hull, 1)
    return torch.from_numpy(region.astype(bool)).to(mask.device)


def silhouette_iou(camera: Camera, triangles: torch.Tensor, world: torch.Tensor, face_mask: torch.Tensor) -> float:
    """IoU of the mesh's coverage and the convex face region of ``face_mask`` ((S, S) bool at the
    camera's size)."""
    return mask_iou(coverage_mask(camera, triangles, world), convex_region(face_mask.to(torch.bool)))


def silhouette_note(iou: float, threshold: float = MIN_SILHOUETTE_IOU) -> str | None:
    """The degraded-fit note when ``iou`` is below ``threshold``, else None."""
    if iou >= threshold:
        return None
    return f"silhouette IoU {iou:.2f} < {threshold:.2f}: the fitted mesh does not cover the face region"
