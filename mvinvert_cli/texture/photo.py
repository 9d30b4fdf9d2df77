"""The sample stage: T_uv from the full-resolution photo and its Eq. 4 visibility scores.

Visibility comes from the fitting crop's z-buffer (the camera the face was fitted in); colours come
from the photo itself, through the inverse of the crop's 5-point similarity, so T_uv keeps the photo's
resolution. Two score sets are kept: ``photo_scores`` with the photo threshold T (the anchor of
Eq. 6) and ``coarse_scores`` with the looser view threshold, minus grazing vertices (n·d below
:data:`COARSE_MIN_FACING`, stretched samples), used for T_coarse and the texel detail. Both are
multiplied by the face-parsing mask where the parser gave one.
"""

from __future__ import annotations

import numpy as np
import torch

from ..align.observation import CROP_SIZE, Observation
from ..io.images import Photo
from ..records import PhotoSamples
from ..render.camera import Camera
from .sample import sample_image, sample_vertices
from .visibility import facing, vertex_scores

COARSE_MIN_FACING = 0.2  # n·d below this counts as too oblique for T_uv (grazing, stretched samples)


def photo_tensor(photo: Photo, device: torch.device | str) -> torch.Tensor:
    """The photo as a float (1, 3, H, W) tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(photo.rgb.transpose(2, 0, 1)))[None].to(device)


def crop_to_photo(observation: Observation, crop_screen: torch.Tensor) -> torch.Tensor:
    """(N, V, 3) crop-pixel vertices → photo pixels (depth kept), through the inverse crop similarity."""
    matrix = torch.as_tensor(np.asarray(observation.crop_matrix, dtype=np.float64), device=crop_screen.device)
    inverse = torch.linalg.inv(torch.cat([matrix, matrix.new_tensor([[0.0, 0.0, 1.0]])]))[:2]
    xy = crop_screen[..., :2].double() @ inverse[:, :2].T + inverse[:, 2]
    return torch.cat([xy.to(crop_screen.dtype), crop_screen[..., 2:]], dim=-1)


def sample_photo(photo: Photo, observation: Observation, world: torch.Tensor, world_normals: torch.Tensor,
                 triangles: torch.Tensor, camera: Camera, threshold_photo: float,
                 threshold_view: float) -> PhotoSamples:
    """T_uv and Eq. 4 scores of one fitted face.

    Args:
        photo / observation: the input and its alignment (crop similarity, optional face mask).
        world / world_normals: (1, V, 3) fitted vertices and unit normals in camera space.
        triangles: (F, 3) long.
        camera: the fitting camera at the render size (``Camera().resized(render_size)``).
        threshold_photo / threshold_view: Eq. 4's T in px at 224 for the photo and the loose scores.
    """
    crop_screen = camera.project(world)  # (1, V, 3) in crop pixels
    sampled = sample_vertices(observation.crop_tensor(world.device), crop_screen, triangles)
    distance = sampled.boundary_distance * (CROP_SIZE / camera.size)
    photo_scores = vertex_scores(world_normals, world, sampled.visible, distance, threshold_photo)
    loose = vertex_scores(world_normals, world, sampled.visible, distance, threshold_view)
    loose = torch.where(facing(world_normals, world) >= COARSE_MIN_FACING, loose, torch.zeros_like(loose))
    photo_screen = crop_to_photo(observation, crop_screen)
    t_uv = sample_image(photo_tensor(photo, world.device), photo_screen[..., :2])[0]
    if observation.face_mask is not None:
        mask = torch.from_numpy(observation.face_mask.astype(np.float32))[None, None].to(world.device)
        on_face = sample_image(mask, photo_screen[..., :2])[0, :, 0] > 0.5
        photo_scores = photo_scores * on_face
        loose = loose * on_face
    return PhotoSamples(t_uv=t_uv, photo_scores=photo_scores[0], coarse_scores=loose[0], photo_screen=photo_screen)
