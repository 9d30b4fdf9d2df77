"""Render any textured mesh (ours or another tool's) from chosen views, for looking at results.

The mesh is centred and scaled into the Deep3DFaceRecon camera (front = +z, up = +y, the OBJ
convention our meshes use), rotated by yaw (about y) and pitch (about x), rasterised with our
rasteriser (perspective-correct), coloured by its UV texture (bilinear) or vertex colours (grey when
it has neither), and shaded by a neutral light from the camera: colour · (1 − s + s · max(0, n·l)).
Rendering at ``ssaa``× the size and averaging gives anti-aliased edges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .io.meshes import TexturedMesh
from .render.camera import Camera, facing, transform
from .render.rasterize import interpolate
from .render.renderer import Renderer, view_pose

FIT_RADIUS = 0.95  # model units; the Deep3D camera shows a sphere of radius ~1 at distance 10 fully


def area_weighted_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted vertex normals (V, 3) of a (V, 3) mesh."""
    tri = vertices[faces]  # (F, 3, 3)
    face_n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    normals = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), face_n.repeat_interleave(3, 0))
    return F.normalize(normals, dim=-1, eps=1e-12)


def normalize_mesh(vertices: torch.Tensor) -> torch.Tensor:
    """Centre the bounding box at the origin and scale the bounding radius to :data:`FIT_RADIUS`."""
    lo, hi = vertices.min(0).values, vertices.max(0).values
    centred = vertices - (lo + hi) / 2
    radius = centred.norm(dim=-1).max().clamp_min(1e-12)
    return centred * (FIT_RADIUS / radius)


def render_views(
    mesh: TexturedMesh,
    views: Sequence[tuple[float, float]],
    size: int = 512,
    shading: float = 0.3,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ssaa: int = 2,
    device: torch.device | str = "cpu",
    normalize: bool = True,
) -> list[np.ndarray]:
    """Render ``mesh`` from each (yaw, pitch) in degrees → list of (size, size, 3) float images."""
    device = torch.device(device)
    verts = torch.as_tensor(mesh.vertices, dtype=torch.float32, device=device)
    faces = torch.as_tensor(mesh.faces, dtype=torch.long, device=device)
    if normalize:
        verts = normalize_mesh(verts)
    normals = area_weighted_normals(verts, faces)
    n = len(views)
    angles = torch.stack([view_pose(yaw, pitch, device=device)[0] for yaw, pitch in views])
    no_shift = torch.zeros_like(angles)
    world = transform(verts.expand(n, -1, -1), angles, no_shift)
    world_n = transform(normals.expand(n, -1, -1), angles, no_shift)
    renderer = Renderer(camera=Camera().resized(size * ssaa))
    if mesh.uvs is not None and mesh.texture is not None:
        uv = torch.as_tensor(mesh.uvs, dtype=torch.float32, device=device)
        tex = torch.as_tensor(mesh.texture, dtype=torch.float32, device=device).permute(2, 0, 1)[None]
        rendering = renderer.render_textured(world, faces, uv, tex.expand(n, -1, -1, -1))
        frags, colour = rendering.fragments, rendering.image.permute(0, 2, 3, 1)
    elif mesh.vertex_colors is not None:
        vc = torch.as_tensor(mesh.vertex_colors, dtype=torch.float32, device=device).expand(n, -1, -1)
        rendering = renderer.render(world, faces, vc)
        frags, colour = rendering.fragments, rendering.image.permute(0, 2, 3, 1)
    else:
        frags, _, _ = renderer.rasterize(world, faces)
        colour = torch.full((*frags.mask.shape, 3), 0.75, device=device)
    mask = frags.mask  # (N, H, W)
    pix_n = interpolate(frags, faces, world_n)
    # two-sided: open meshes show their inside too
    lambert = facing(pix_n, interpolate(frags, faces, world), renderer.view_camera.distance, two_sided=True)
    shaded = colour * (1 - shading + shading * lambert)[..., None]
    bg = torch.tensor(background, device=device)
    image = torch.where(mask[..., None], shaded, bg).permute(0, 3, 1, 2)
    if ssaa > 1:
        image = F.avg_pool2d(image, ssaa)
    return [img.permute(1, 2, 0).clamp(0, 1).cpu().numpy() for img in image]


BACK_AREA_FRACTION = 0.15  # a mesh "has a back" when this share of its area faces away from the front


def has_back(mesh: TexturedMesh) -> bool:
    """True when at least :data:`BACK_AREA_FRACTION` of the surface area faces backwards (normal · −z
    > 0.5 in the OBJ convention, front = +z): a closed head or a full object, not a face-only mask.

    Winding-independent: a face whose normal points backwards is counted whichever way it is wound,
    provided the mesh's winding is consistent (the area-weighted mean normal defines "outwards").
    """
    verts = np.asarray(mesh.vertices, dtype=np.float64)
    tri = verts[np.asarray(mesh.faces)]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 · area
    area = np.linalg.norm(normals, axis=1)
    if area.sum() <= 0:
        return False
    z = normals[:, 2] / np.maximum(area, 1e-30)
    front_sign = 1.0 if (normals[:, 2]).sum() >= 0 else -1.0  # open face meshes: most area faces the viewer
    back = area[(z * front_sign) < -0.5].sum() / area.sum()
    return bool(back >= BACK_AREA_FRACTION)


def turntable_views(frames: int = 36, yaw_range: float = 75.0, pitch: float = 0.0,
                    full_spin: bool = False) -> list[tuple[float, float]]:
    """``frames`` (yaw, pitch) views of a seamless loop.

    ``full_spin``: yaw 0 → 360° in equal steps (the last frame one step before 360°). Otherwise a
    sweep −range → +range → −range (triangle wave; the end joins the start), for open face meshes.
    """
    steps = np.arange(frames) / frames
    if full_spin:
        yaws = 360.0 * steps
    else:
        yaws = yaw_range * (1 - 4 * np.abs(steps - 0.5)) + 0.0  # + 0.0: no −0 yaw
    return [(float(y), pitch) for y in yaws]
