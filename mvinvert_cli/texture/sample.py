"""T_uv: colours sampled from an image through the fitted projection, with z-buffer visibility.

Per vertex: the image is sampled bilinearly (``grid_sample``, align_corners=False, our screen
convention: x_px ↦ 2x/W − 1) at the projected vertex. A vertex is z-buffer visible when its
projection lies on the rendered silhouette and its depth is within ``tolerance`` of the nearest
surface at the surrounding pixel centres. The silhouette distance (Eq. 4's third factor) is sampled
at the same positions. Per texel (:func:`sample_uv_texture`): every texel inside the UV islands is
mapped to its screen position by barycentric interpolation of the projected vertices and sampled
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..render.bake import UVLayout
from ..render.rasterize import Fragments, rasterize
from .visibility import silhouette_distance

DEPTH_TOLERANCE = 0.02  # model units (≈ 2 px of surface at depth 10 and 224 px): z-buffer slack


@dataclass(frozen=True)
class Sampled:
    """Per-vertex samples of N images.

    Attributes:
        colors: (N, V, C) bilinear samples (border-padded outside the image; meaningful where
            ``visible``) — T_uv.
        visible: (N, V) bool z-buffer visibility.
        boundary_distance: (N, V) float distance (px) of each projection to the silhouette, 0 outside.
        fragments: the rasterisation of the mesh in each image (reuse it for renders).
    """

    colors: torch.Tensor
    visible: torch.Tensor
    boundary_distance: torch.Tensor
    fragments: Fragments


def sample_image(image: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``image`` at screen points.

    Args:
        image: (N, C, H, W).
        points: (N, P, 2) screen (x_px, y_px), pixel centres at +0.5.

    Returns:
        (N, P, C); points outside the image take the nearest border value; non-finite points give 0.
    """
    height, width = image.shape[-2:]
    scale = points.new_tensor([2.0 / width, 2.0 / height])
    grid = torch.nan_to_num(points * scale - 1.0, nan=-2.0, posinf=-2.0, neginf=-2.0)
    samples = F.grid_sample(image.to(points.dtype), grid[:, :, None, :], mode="bilinear",
                            padding_mode="border", align_corners=False)  # (N, C, P, 1)
    samples = samples[..., 0].transpose(1, 2)
    return torch.where(torch.isfinite(points).all(-1, keepdim=True), samples, torch.zeros_like(samples))


def zbuffer_visibility(verts_screen: torch.Tensor, zbuf: torch.Tensor,
                       tolerance: float = DEPTH_TOLERANCE) -> torch.Tensor:
    """Per-vertex z-buffer test against the front layer of a rasterisation.

    A vertex is visible when at least one of the (up to 4) pixel centres around its projection is
    covered and its depth ≤ the farthest covered surface among them + ``tolerance`` (the farthest, so
    a vertex on an occlusion edge still counts as seen from its own side).

    Args:
        verts_screen: (N, V, 3) (x_px, y_px, depth).
        zbuf: (N, H, W) front-layer depth, −1 on background.
        tolerance: depth slack in the units of ``depth``.

    Returns:
        (N, V) bool; False for non-finite or off-image vertices.
    """
    n_mesh, height, width = zbuf.shape
    x, y, depth = verts_screen.unbind(-1)
    finite = torch.isfinite(verts_screen).all(-1)
    j0 = torch.floor(torch.nan_to_num(x, nan=-10.0) - 0.5).clamp(-2, width).long()
    i0 = torch.floor(torch.nan_to_num(y, nan=-10.0) - 0.5).clamp(-2, height).long()
    batch = torch.arange(n_mesh, device=zbuf.device)[:, None]
    farthest = torch.full_like(depth, -float("inf"))
    for di in (0, 1):
        for dj in (0, 1):
            i, j = i0 + di, j0 + dj
            inside = (i >= 0) & (i < height) & (j >= 0) & (j < width)
            z = zbuf[batch, i.clamp(0, height - 1), j.clamp(0, width - 1)]
            covered = inside & (z >= 0)
            farthest = torch.where(covered, torch.maximum(farthest, z.to(depth.dtype)), farthest)
    return finite & (depth <= farthest + tolerance)


def sample_vertices(image: torch.Tensor, verts_screen: torch.Tensor, faces: torch.Tensor,
                    tolerance: float = DEPTH_TOLERANCE, fragments: Fragments | None = None) -> Sampled:
    """T_uv per vertex, z-buffer visibility and silhouette distance of N images.

    Args:
        image: (N, C, H, W) in [0, 1].
        verts_screen: (N, V, 3) vertices projected into ``image``'s pixels (camera.project of the
            fitted/posed mesh at the image's resolution).
        faces: (F, 3) long.
        tolerance: z-buffer slack (model units).
        fragments: a rasterisation of this mesh at (H, W), if the caller already has one.

    Returns:
        :class:`Sampled`.
    """
    height, width = image.shape[-2:]
    if fragments is None:
        fragments = rasterize(verts_screen, faces, (height, width))
    zbuf = fragments.zbuf[..., 0]
    xy = verts_screen[..., :2]
    distance = silhouette_distance(fragments.mask)[:, None]  # (N, 1, H, W)
    return Sampled(
        colors=sample_image(image, xy),
        visible=zbuffer_visibility(verts_screen, zbuf, tolerance),
        boundary_distance=sample_image(distance, xy)[..., 0],
        fragments=fragments,
    )


def sample_uv_texture(image: torch.Tensor, verts_screen: torch.Tensor, faces: torch.Tensor,
                      layout: UVLayout, vertex_weights: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """T_uv per texel: each texel inside the UV islands sampled from the image at its screen position.

    Args:
        image: (N, C, H, W).
        verts_screen: (N, V, 3) projected vertices.
        faces: (F, 3) long.
        layout: the rasterised UV layout (``render.bake.uv_layout``).
        vertex_weights: (N, V) per-vertex visibility scores to interpolate per texel (None: all 1).

    Returns:
        texture (N, S, S, C) (0 outside the islands) and per-texel weight (N, S, S) (0 outside).
    """
    colors, weights = sample_uv_texels(image, verts_screen, faces, layout, vertex_weights)
    n_mesh, size = verts_screen.shape[0], layout.size
    inside = layout.mask.to(colors.device).reshape(-1)
    texture = colors.new_zeros((n_mesh, size * size, colors.shape[-1]))
    texture[:, inside] = colors
    weight = weights.new_zeros((n_mesh, size * size))
    weight[:, inside] = weights
    return texture.reshape(n_mesh, size, size, -1), weight.reshape(n_mesh, size, size)


def sample_uv_texels(image: torch.Tensor, verts_screen: torch.Tensor, faces: torch.Tensor, layout: UVLayout,
                     vertex_weights: torch.Tensor | None = None, start: int = 0, stop: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_uv_texture` at the layout's inside texels ``start:stop`` only (all by default).

    Returns:
        colours (N, k, C) and interpolated weights (N, k), k = stop − start.
    """
    if vertex_weights is None:
        vertex_weights = verts_screen.new_ones(verts_screen.shape[:2])
    attributes = torch.cat([verts_screen[..., :2], vertex_weights[..., None].to(verts_screen)], dim=-1)
    per_texel = layout.interpolate(attributes, faces, start, stop)  # (N, k, 3): x, y, weight
    return sample_image(image, per_texel[..., :2]), per_texel[..., 2]
