"""PyTorch3D rasteriser behind our ``rasterize`` (optional extra ``mvinvert[pytorch3d]``, used on CUDA).

Only the coverage (``pix_to_face``) comes from PyTorch3D: barycentrics and depth are then recomputed
by ``rasterize.pixel_barycentrics`` from the same pixel centres, so both backends return the same
Fragments (up to which face wins an exact edge tie) with the same gradients.

Conversions:
- screen → PyTorch3D NDC (align_corners=False, +X left, +Y up, the shorter image side spans
  [−1, 1]): x_ndc = (W − 2x) / s, y_ndc = (H − 2y) / s with s = min(H, W); z stays the depth.
  The centre of pixel (i, j), (j + .5, i + .5), maps to PyTorch3D's centre of the same pixel.
- PyTorch3D's ``pix_to_face`` indexes the *packed* faces of the batch (mesh n's faces are
  n·F … n·F + F − 1 when all meshes have F faces); ours index each mesh's own faces: f − n·F.
"""

from __future__ import annotations

import torch

from ..errors import UsageError


def screen_to_ndc(verts_screen: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(N, V, 3) screen (x_px, y_px, depth) → PyTorch3D NDC (x_ndc, y_ndc, depth)."""
    height, width = image_size
    s = float(min(height, width))
    x = (width - 2.0 * verts_screen[..., 0]) / s
    y = (height - 2.0 * verts_screen[..., 1]) / s
    return torch.stack([x, y, verts_screen[..., 2]], dim=-1)


def unpack_pix_to_face(pix_to_face: torch.Tensor, n_faces: int) -> torch.Tensor:
    """Packed face indices (N, H, W, K) of a batch of meshes with F faces each → per-mesh indices."""
    offset = torch.arange(pix_to_face.shape[0], device=pix_to_face.device).view(-1, 1, 1, 1) * n_faces
    return torch.where(pix_to_face >= 0, pix_to_face - offset, -1)


def rasterize_pytorch3d(
    verts_screen: torch.Tensor,
    faces: torch.Tensor,
    image_size: tuple[int, int],
    faces_per_pixel: int,
    perspective_correct: bool,
) -> torch.Tensor:
    """pix_to_face (N, H, W, K) from ``pytorch3d.renderer.mesh.rasterize_meshes`` (per-mesh indices)."""
    try:  # the optional extra, imported only when this backend is chosen
        from pytorch3d.renderer.mesh import rasterize_meshes
        from pytorch3d.structures import Meshes
    except ImportError as error:
        raise UsageError(
            "the 'pytorch3d' rasteriser backend needs PyTorch3D: pip install 'mvinvert[pytorch3d]'"
        ) from error
    n_mesh, n_faces = verts_screen.shape[0], faces.shape[0]
    meshes = Meshes(verts=screen_to_ndc(verts_screen, image_size), faces=faces.expand(n_mesh, -1, -1))
    pix_to_face, _, _, _ = rasterize_meshes(
        meshes,
        image_size=tuple(image_size),
        blur_radius=0.0,
        faces_per_pixel=faces_per_pixel,
        perspective_correct=perspective_correct,
        max_faces_per_bin=n_faces,  # never drop faces from a crowded bin
        cull_backfaces=False,
    )
    return unpack_pix_to_face(pix_to_face, n_faces)
