"""Render faces: Deep3DFaceRecon camera → rasterise → interpolate colours / sample a UV texture.

``Renderer`` draws a batch of meshes that share one topology into (B, 3, H, W) images with an alpha
mask and the fragments (for visibility and z-buffer tests). Colours come per vertex (T_pca, SH-shaded
albedo via ``render.lighting.shade``) or from a UV texture (T_coarse, T_refine). ``view_pose``
gives the pose of the synthetic views (yaw ±30°, pitch −15°: DESIGN.md §4), and ``uv_fragments``
rasterises in UV space (``render.bake`` turns per-vertex attributes into S × S texture maps with it).
An optimiser can pass back the face map of an earlier render (``pix_to_face``) to skip the coverage
search and only recompute the differentiable barycentrics (the PCA fit refreshes it every 5 steps).

Per-vertex colours are interpolated with perspective-correct barycentrics (as nvdiffrast in
Deep3DFaceRecon and PyTorch3D in MvInvert); UV space is affine. Colours are not clamped (fitting
needs the gradients); clamp before saving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .camera import Camera
from .rasterize import Fragments, RasterBackend, interpolate, pixel_barycentrics, rasterize, select_backend


@dataclass(frozen=True)
class Rendering:
    """Output of ``Renderer``.

    Attributes:
        image: float (B, 3, H, W) colours, ``background`` where alpha is 0.
        alpha: float (B, 1, H, W), 1 where a triangle covers the pixel centre, else 0.
        fragments: the rasteriser's Fragments (N = B, K = faces_per_pixel).
        screen: float (B, V, 3) screen vertices (x_px, y_px, depth) that were rasterised.
        backend: which rasteriser ran ("torch" or "pytorch3d").
    """

    image: torch.Tensor
    alpha: torch.Tensor
    fragments: Fragments
    screen: torch.Tensor
    backend: str


@dataclass
class Renderer:
    """Deep3DFaceRecon-camera renderer.

    Attributes:
        camera: the pinhole camera (default 224², f = 1015, c = 112, distance 10).
        size: render at this square size (focal and centre scale); None = camera.size.
        faces_per_pixel: K kept in the fragments (K > 1 for layered visibility tests).
        perspective_correct: perspective-correct barycentrics and depth (default True).
        backend: None = ``select_backend`` per call (PyTorch3D on CUDA when installed, else ours),
            or force "torch" / "pytorch3d".
        background: value of uncovered pixels.
    """

    camera: Camera = field(default_factory=Camera)
    size: int | None = None
    faces_per_pixel: int = 1
    perspective_correct: bool = True
    backend: RasterBackend | str | None = None
    background: float = 0.0

    @property
    def view_camera(self) -> Camera:
        """The camera at the render size."""
        return self.camera if self.size is None else self.camera.resized(self.size)

    def rasterize(
        self, vertices: torch.Tensor, faces: torch.Tensor, pix_to_face: torch.Tensor | None = None
    ) -> tuple[Fragments, torch.Tensor, str]:
        """World-space vertices (B, V, 3) → (fragments, screen vertices (B, V, 3), backend name).

        Args:
            pix_to_face: (B, H, W, K) face map of an earlier call to reuse: no coverage search, only
                the barycentrics and depths are recomputed from ``vertices`` (differentiable). The
                coverage stays that of the earlier vertices, so refresh it as they move.
        """
        cam = self.view_camera
        screen = cam.project(vertices)
        backend = RasterBackend(self.backend) if self.backend is not None else select_backend(vertices.device)
        if pix_to_face is not None:
            faces = faces.to(device=screen.device, dtype=torch.long)
            bary, zbuf = pixel_barycentrics(screen, faces, pix_to_face, self.perspective_correct)
            return Fragments(pix_to_face, bary, zbuf), screen, backend.value
        fragments = rasterize(
            screen,
            faces,
            (cam.size, cam.size),
            self.faces_per_pixel,
            perspective_correct=self.perspective_correct,
            backend=backend,
        )
        return fragments, screen, backend.value

    def render(
        self,
        vertices: torch.Tensor,
        faces: torch.Tensor,
        colors: torch.Tensor,
        pix_to_face: torch.Tensor | None = None,
    ) -> Rendering:
        """Render per-vertex colours.

        Args:
            vertices: (B, V, 3) world-space vertices (``camera.transform`` of the model).
            faces: (F, 3) int64.
            colors: (B, V, C) per-vertex values, usually RGB (e.g. ``lighting.shade(albedo, rotated
                normals, γ)``).
            pix_to_face: reuse this face map (see :meth:`rasterize`).

        Returns:
            Rendering (image (B, C, H, W)); differentiable w.r.t. ``colors`` and ``vertices``.
        """
        fragments, screen, backend = self.rasterize(vertices, faces, pix_to_face)
        return self._compose(interpolate(fragments, faces, colors), fragments, screen, backend)

    def render_textured(
        self, vertices: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor, texture: torch.Tensor
    ) -> Rendering:
        """Render a UV texture map (bilinear lookup at the interpolated per-pixel UV).

        Args:
            vertices: (B, V, 3) world-space vertices.
            faces: (F, 3) int64.
            uvs: (V, 2) or (B, V, 2) per-vertex UVs in [0, 1], v up (OBJ convention).
            texture: (B, 3, S, S) texture; texel row 0 is v = 1.

        Returns:
            Rendering; differentiable w.r.t. ``texture`` and ``vertices``.
        """
        fragments, screen, backend = self.rasterize(vertices, faces)
        if uvs.ndim == 2:
            uvs = uvs.expand(vertices.shape[0], -1, -1)
        uv = interpolate(fragments, faces, uvs.to(vertices))  # (B, H, W, 2)
        grid = torch.stack([2 * uv[..., 0] - 1, 1 - 2 * uv[..., 1]], dim=-1)  # align_corners=False
        colors = F.grid_sample(
            texture, grid.to(texture.dtype), mode="bilinear", padding_mode="border", align_corners=False
        )
        return self._compose(colors.permute(0, 2, 3, 1), fragments, screen, backend)

    def _compose(self, colors, fragments, screen, backend) -> Rendering:
        alpha = fragments.mask[:, None].to(colors.dtype)  # (B, 1, H, W)
        image = colors.permute(0, 3, 1, 2) * alpha + self.background * (1 - alpha)
        return Rendering(image=image, alpha=alpha, fragments=fragments, screen=screen, backend=backend)


def view_pose(
    yaw: float,
    pitch: float = 0.0,
    roll: float = 0.0,
    translation: torch.Tensor | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose of a synthetic view of a model-space face (R = Rz·Ry·Rx of ``camera.rotation_matrix``).

    Args:
        yaw: degrees about y; positive turns the face's nose (+z) toward +x (image right).
        pitch: degrees about x; negative lifts the nose: a view from below (MvInvert's −15°).
        roll: degrees about z.
        translation: (3,) world translation; None = 0, which puts the model origin (the recentred
            mean face) on the optical axis at the camera distance.

    Returns:
        angles (3,) radians (x, y, z) and translation (3,), for ``camera.transform``.
    """
    angles = torch.tensor(
        [math.radians(pitch), math.radians(yaw), math.radians(roll)], dtype=dtype, device=device
    )
    if translation is None:
        translation = torch.zeros(3, dtype=dtype, device=device)
    return angles, translation.to(device=angles.device, dtype=dtype)


def uv_screen(uvs: torch.Tensor, size: int) -> torch.Tensor:
    """Per-vertex UVs (..., V, 2) → UV-space screen vertices (..., V, 3) = (u·S, (1 − v)·S, 1)."""
    return torch.stack([uvs[..., 0] * size, (1 - uvs[..., 1]) * size, torch.ones_like(uvs[..., 0])], dim=-1)


def uv_fragments(uvs: torch.Tensor, faces: torch.Tensor, size: int,
                 rows: tuple[int, int] | None = None) -> Fragments:
    """Rasterise the mesh in UV space: texel (row i, col j) ↔ (u, v) = ((j + .5)/S, 1 − (i + .5)/S).

    Args:
        uvs: (V, 2) per-vertex UVs in [0, 1], v up.
        faces: (F, 3) int64.
        size: S, the texture side.
        rows: (top, bottom) to rasterise only texel rows top ≤ i < bottom (a band of the texture,
            for bounded memory; the fragments of those rows of the whole texture, up to coverage
            of texel centres exactly on an edge); None = all rows.

    Returns:
        Fragments (1, bottom − top, S, 1), affine barycentrics. Depends only on the topology:
        ``render.bake.uv_layout`` computes them once per mesh layout.
    """
    top, bottom = (0, size) if rows is None else rows
    screen = uv_screen(uvs, size)
    if top:
        screen = screen - screen.new_tensor([0.0, float(top), 0.0])  # integer shift: same barycentrics
    return rasterize(screen[None], faces, (bottom - top, size))
