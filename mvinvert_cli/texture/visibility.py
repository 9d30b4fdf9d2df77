"""Per-vertex visibility scores (MvInvert Eq. 4) and per-triangle view selection (Eq. 5).

Eq. 4: a vertex's score in a view is

    s_v = max(0, n_v · d_v) × zbuffer_visible_v × [distance of its projection to the silhouette ≥ T]

with n_v the camera-space vertex normal and d_v the unit direction from the vertex to the camera at
(0, 0, 10). T is in pixels at the render size: 50 px for the original photo, 3 px for synthetic views
(DESIGN.md §4). A triangle's confidence is the minimum of its vertices' scores; Eq. 5 takes the view
of highest confidence per triangle, or "no view" (−1) where every confidence is 0.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ..render.camera import facing  # Eq. 4 first factor (texture.photo imports it from here)

NO_VIEW = -1  # Eq. 5 selection of a triangle no view sees


def silhouette_distance(mask: torch.Tensor) -> torch.Tensor:
    """Euclidean distance (px) from each covered pixel to the nearest uncovered one.

    Holes inside the silhouette (open mouth, eye sockets) are filled first, so only the outer
    contour counts as silhouette.

    Args:
        mask: (N, H, W) bool coverage of the rendered mesh.

    Returns:
        (N, H, W) float32 on ``mask``'s device; 0 outside the silhouette.
    """
    filled = [ndimage.binary_fill_holes(m) for m in mask.detach().cpu().numpy()]
    distance = np.stack([ndimage.distance_transform_edt(m) for m in filled]) if filled else np.zeros(
        tuple(mask.shape))
    return torch.from_numpy(distance.astype(np.float32)).to(mask.device)


def vertex_scores(normals: torch.Tensor, verts: torch.Tensor, visible: torch.Tensor,
                  boundary_distance: torch.Tensor, threshold: float) -> torch.Tensor:
    """Eq. 4 per-vertex score of each view.

    Args:
        normals: (N, V, 3) camera-space unit normals.
        verts: (N, V, 3) camera-space positions.
        visible: (N, V) bool z-buffer visibility (see ``texture.sample.zbuffer_visibility``).
        boundary_distance: (N, V) distance (px) of each vertex's projection to the silhouette.
        threshold: T in px (50 for the photo, 3 for synthetic views at 224 px).

    Returns:
        (N, V) scores in [0, 1].
    """
    far_enough = torch.nan_to_num(boundary_distance, nan=0.0) >= threshold
    return facing(normals, verts) * visible.to(verts.dtype) * far_enough.to(verts.dtype)  # Eq. 4


def triangle_confidence(scores: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Per-triangle confidence = min over its three vertices' scores.

    Args:
        scores: (N, V) vertex scores (non-finite counts as 0).
        faces: (F, 3) long.

    Returns:
        (N, F).
    """
    scores = torch.nan_to_num(scores, nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
    return scores[:, faces.long()].amin(dim=-1)


def select_views(confidence: torch.Tensor) -> torch.Tensor:
    """Eq. 5: per-triangle argmax view, or NO_VIEW (−1) where no view has positive confidence.

    Args:
        confidence: (N, F) per-view triangle confidences; ties go to the lowest view index (put the
            reference photo first so it wins ties).

    Returns:
        (F,) long view index in [0, N) or −1.
    """
    best, index = confidence.max(dim=0)  # Eq. 5
    return torch.where(best > 0, index, torch.full_like(index, NO_VIEW))
