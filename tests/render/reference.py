"""A slow, obviously correct rasteriser: the oracle the vectorised one is tested against."""

from __future__ import annotations

import torch

from mvinvert_cli.render.rasterize import Fragments, pixel_barycentrics


def rasterize_reference(
    verts_screen: torch.Tensor,
    faces: torch.Tensor,
    image_size: tuple[int, int],
    faces_per_pixel: int = 1,
    *,
    perspective_correct: bool = False,
) -> Fragments:
    """Slow, obviously correct rasteriser: every pixel centre against every face (float64).

    For tests only (memory N·H·W·F). Same coverage rule, tie-break and fills as ``rasterize``.
    """
    height, width = image_size
    n_mesh = verts_screen.shape[0]
    n_faces = faces.shape[0]
    device = verts_screen.device
    v = verts_screen.detach().double()
    jj, ii = torch.meshgrid(
        torch.arange(width, device=device), torch.arange(height, device=device), indexing="xy"
    )
    centres = torch.stack([jj, ii], dim=-1).reshape(-1, 2).double() + 0.5  # (P, 2), row-major
    out_face = []
    for n in range(n_mesh):
        tri = v[n][faces]  # (F, 3, 3)
        d = tri[None, :, :, :2] - centres[:, None, None, :]  # (P, F, 3, 2)
        dx, dy = d[..., 0], d[..., 1]
        e = torch.stack(
            [
                dx[..., 1] * dy[..., 2] - dx[..., 2] * dy[..., 1],
                dx[..., 2] * dy[..., 0] - dx[..., 0] * dy[..., 2],
                dx[..., 0] * dy[..., 1] - dx[..., 1] * dy[..., 0],
            ],
            dim=-1,
        )  # (P, F, 3)
        area = e.sum(dim=-1)
        w = e / torch.where(area == 0, 1.0, area)[..., None]
        z = tri[None, :, :, 2]
        if perspective_correct:
            depth = 1.0 / (w / z).sum(dim=-1)
        else:
            depth = (w * z).sum(dim=-1)
        covered = (w >= 0).all(dim=-1) & (area != 0) & (z > 0).all(dim=-1)
        depth = torch.where(covered, depth, torch.inf)
        order = torch.sort(depth, dim=1, stable=True)  # ties keep the lower face index first
        face = torch.arange(n_faces, device=device)[order.indices[:, :faces_per_pixel]]
        face = torch.where(torch.isinf(order.values[:, :faces_per_pixel]), -1, face)
        if face.shape[1] < faces_per_pixel:
            pad = face.new_full((face.shape[0], faces_per_pixel - face.shape[1]), -1)
            face = torch.cat([face, pad], dim=1)
        out_face.append(face.reshape(height, width, faces_per_pixel))
    pix_to_face = torch.stack(out_face)
    bary, zbuf = pixel_barycentrics(verts_screen.double(), faces, pix_to_face, perspective_correct)
    return Fragments(pix_to_face, bary, zbuf)
