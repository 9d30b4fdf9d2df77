"""Deep3DFaceRecon pose and pinhole camera, in our screen convention (FORMATS.md §1h).

Pose: angles (x, y, z) in radians give R = Rz·Ry·Rx with the right-handed elementary rotations
Rx(a) = [[1,0,0],[0,cos a,−sin a],[0,sin a,cos a]], Ry(b) = [[cos b,0,sin b],[0,1,0],[−sin b,0,cos b]],
Rz(c) = [[cos c,−sin c,0],[sin c,cos c,0],[0,0,1]]; model-space row vectors move to world space as
``v · Rᵀ + t`` (Deep3DFaceRecon's ``p @ rot + t`` with ``rot = Rᵀ``). Units: BFM/1e5 (decimetres).

Camera: on +z at distance d = 10 looking toward −z, y up in world space. A world point (x, y, z) has
camera depth Z = d − z (> 0, grows away from the camera) and screen position

    x_px = f · x / Z + c_x,      y_px = c_y − f · y / Z,

with f = 1015 and c = (112, 112) for the 224 × 224 crop. Our screen convention (RULES): x right,
y down, origin at the top-left corner of the image, pixel (row i, col j) centred at (j + 0.5, i + 0.5).

Half-pixel convention relative to Deep3DFaceRecon. Deep3DFaceRecon computes (u, v) = f·(x, y)/Z + 112
with v up, and renders with nvdiffrast through a symmetric frustum of fov 2·atan(112/1015): its
principal ray hits the exact centre of the 224² image, which in our continuous coordinates is
(112, 112). We follow that renderer, so x_px = u and y_px = 224 − v exactly, with no half-pixel shift.
Deep3DFaceRecon's landmark code instead treats (u, v) as integer-centred pixel indices (a landmark
at pixel centre (col j, row r) becomes (j, 223 − r), see ``save_coeff``/``read_data``), i.e. its
landmark targets sit half a pixel from its own rendered pixel grid in x and in y. Converting such
integer-centred coordinates to ours: x_px = j + 0.5, y_px = r + 0.5 (``deep3d_pixels_to_screen``).
Rendering at another resolution S scales f and c by S / 224 (``Camera.resized``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

FOCAL = 1015.0
CENTER = 112.0
CAMERA_DISTANCE = 10.0
IMAGE_SIZE = 224


def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """R = Rz·Ry·Rx from Euler angles.

    Args:
        angles: (..., 3) radians (x = pitch, y = yaw, z = roll).

    Returns:
        (..., 3, 3) rotation matrices (act on column vectors; row vectors use v · Rᵀ).
    """
    cx, cy, cz = torch.cos(angles).unbind(-1)
    sx, sy, sz = torch.sin(angles).unbind(-1)
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).unflatten(-1, (3, 3))
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).unflatten(-1, (3, 3))
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).unflatten(-1, (3, 3))
    return rz @ ry @ rx


def rotation_to_angles(rotation: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rotation_matrix`` for |y| < 90° (the branch with cos(y) > 0).

    Args:
        rotation: (..., 3, 3) rotation matrices.

    Returns:
        (..., 3) angles (x, y, z) in radians.
    """
    # R = Rz·Ry·Rx: R[2,0] = −sin y, R[2,1] = cos y sin x, R[2,2] = cos y cos x,
    # R[1,0] = sin z cos y, R[0,0] = cos z cos y.
    y = torch.asin((-rotation[..., 2, 0]).clamp(-1.0, 1.0))
    x = torch.atan2(rotation[..., 2, 1], rotation[..., 2, 2])
    z = torch.atan2(rotation[..., 1, 0], rotation[..., 0, 0])
    return torch.stack([x, y, z], dim=-1)


def transform(vertices: torch.Tensor, angles: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Model space → world space: v · Rᵀ + t.

    Args:
        vertices: (B, V, 3) model-space vertices (or normals with zero translation).
        angles: (B, 3) radians.
        translation: (B, 3) world units.

    Returns:
        (B, V, 3) world-space vertices.
    """
    return vertices @ rotation_matrix(angles).transpose(-1, -2) + translation[:, None, :]


def deep3d_pixels_to_screen(points: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Deep3DFaceRecon landmark coordinates (u, v) — integer-centred, v up — to our screen (x, y).

    Args:
        points: (..., 2) with u = column index, v = size − 1 − row index.
        size: image side in pixels.

    Returns:
        (..., 2) x = u + 0.5, y = size − 1 − v + 0.5.
    """
    return torch.stack([points[..., 0] + 0.5, (size - 0.5) - points[..., 1]], dim=-1)


def facing(normals: torch.Tensor, points: torch.Tensor, distance: float = CAMERA_DISTANCE,
           two_sided: bool = False) -> torch.Tensor:
    """max(0, n̂ · d̂): how squarely surface points face the camera (MvInvert Eq. 4, first factor).

    d̂ is the unit direction from each point to the camera centre (0, 0, ``distance``).

    Args:
        normals: (..., 3) world/camera-space normals (normalised here).
        points: (..., 3) world/camera-space positions.
        two_sided: |n̂ · d̂| instead (a surface seen from behind counts as facing).

    Returns:
        (...) in [0, 1]; 0 for non-finite inputs.
    """
    eye = points.new_tensor([0.0, 0.0, distance])
    cosine = (F.normalize(normals, dim=-1) * F.normalize(eye - points, dim=-1)).sum(-1)
    cosine = torch.nan_to_num(cosine, nan=0.0)
    return cosine.abs().clamp(max=1.0) if two_sided else cosine.clamp(0.0, 1.0)


@dataclass(frozen=True)
class Camera:
    """The Deep3DFaceRecon pinhole camera in our screen convention.

    Attributes:
        focal: focal length in pixels (1015 at 224²).
        center: principal point (c_x = c_y) in screen pixels (112 = image centre at 224²).
        distance: camera position on +z in world units (10); depth Z = distance − z.
        size: square image side in pixels (224).
    """

    focal: float = FOCAL
    center: float = CENTER
    distance: float = CAMERA_DISTANCE
    size: int = IMAGE_SIZE

    def resized(self, size: int) -> Camera:
        """The same view at another resolution (focal and centre scale with the image)."""
        scale = size / self.size
        return replace(self, focal=self.focal * scale, center=self.center * scale, size=int(size))

    @property
    def fov_degrees(self) -> float:
        """Full field of view, 2·atan(c/f) (12.5936° for Deep3DFaceRecon)."""
        return math.degrees(2.0 * math.atan(self.center / self.focal))

    def project(self, world: torch.Tensor) -> torch.Tensor:
        """World points (..., 3) → screen (..., 3) = (x_px, y_px, depth Z = distance − z)."""
        depth = self.distance - world[..., 2]
        x = self.focal * world[..., 0] / depth + self.center
        y = self.center - self.focal * world[..., 1] / depth
        return torch.stack([x, y, depth], dim=-1)

    def unproject(self, screen: torch.Tensor) -> torch.Tensor:
        """Screen (..., 3) = (x_px, y_px, depth) → world points (..., 3); inverse of ``project``."""
        depth = screen[..., 2]
        x = (screen[..., 0] - self.center) * depth / self.focal
        y = (self.center - screen[..., 1]) * depth / self.focal
        return torch.stack([x, y, self.distance - depth], dim=-1)

    def view_direction(self, world: torch.Tensor) -> torch.Tensor:
        """Unit vectors (..., 3) from world points toward the camera centre (0, 0, distance)."""
        eye = world.new_tensor([0.0, 0.0, self.distance])
        d = eye - world
        return d / d.norm(dim=-1, keepdim=True).clamp(min=1e-12)
