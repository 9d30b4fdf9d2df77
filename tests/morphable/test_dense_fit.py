"""Default-model fit: dense landmarks of a posed, deformed canonical face rendered with known light."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvinvert_cli.align.ibug import ibug_from_dense
from mvinvert_cli.morphable.default import canonical_points, load_default_model
from mvinvert_cli.morphable.fit import Fitter
from mvinvert_cli.render.camera import Camera, rotation_matrix, transform
from mvinvert_cli.render.lighting import shade
from mvinvert_cli.render.renderer import Renderer
from mvinvert_cli.weights import face_landmarker_task

from .conftest import make_observation, rotation_error_deg

TONE = torch.tensor([0.72, 0.52, 0.42])
GAMMA = torch.cat([torch.tensor([-0.1, -0.1, 0.25, 0.1, 0.02, 0.0, 0.04, -0.02, 0.02])] * 3)


@pytest.fixture(scope="module")
def model():
    if face_landmarker_task() is None:
        pytest.skip("face_landmarker.task not installed")
    return load_default_model(levels=2)


def synthetic(model, angles, trans):
    cam = Camera()
    base = torch.from_numpy(canonical_points())
    shape468 = base * torch.tensor([1.06, 0.97, 1.0])  # a wider, shorter face than the canonical one
    verts = model.from_points(shape468[None])
    world = transform(verts, angles[None], trans[None])
    normals = model.normals(verts) @ rotation_matrix(angles).T
    colors = shade(TONE.expand(1, model.num_vertices, 3), normals, GAMMA[None])
    rendering = Renderer().render(world, model.triangles, colors)
    image = rendering.image[0].permute(1, 2, 0).clamp(0, 1).numpy()
    mask = rendering.alpha[0, 0].numpy() > 0.5
    # MediaPipe-like dense points: x, y in pixels, z relative depth in the pixel scale
    world468 = transform(shape468[None], angles[None], trans[None])[0]
    screen = cam.project(world468)
    z_px = (screen[:, 2] - screen[:, 2].mean()) * cam.focal / screen[:, 2].mean()
    dense = torch.cat([screen[:, :2], z_px[:, None]], 1).numpy()
    dense = np.concatenate([dense, dense[:10]])  # 10 iris points (unused by the fit)
    landmarks = ibug_from_dense(dense)[:, :2]
    return image, mask, dense, landmarks, world[0]


@pytest.mark.parametrize("angles", [torch.tensor([0.1, -0.4, 0.05]), torch.tensor([-0.15, 0.25, -0.08])])
def test_dense_fit_recovers_pose_shape_and_light(model, angles):
    trans = torch.tensor([0.02, -0.03, 0.1])
    image, mask, dense, landmarks, world = synthetic(model, angles, trans)
    obs = make_observation(image, landmarks, face_mask=mask, dense=dense)
    result = Fitter(model).fit(obs)
    assert result.backend == "dense-landmarks" and result.init == "dense-procrustes"
    assert rotation_error_deg(result.angles, angles) < 2.0
    assert result.losses["landmark_px"] < 1.0
    # same image geometry: projected vertices agree with the truth within a pixel
    cam = Camera()
    err_px = (cam.project(result.world_vertices)[:, :2] - cam.project(world)[:, :2]).norm(dim=1)
    assert err_px.median() < 0.5 and err_px.max() < 2.0
    # lighting × albedo reproduce the image (the split between DC, z and 3z²−1 bands is not
    # identifiable on a face seen from the front, so γ itself is not compared)
    normals = result.world_normals[None]
    reshaded = shade(result.t_pca[None], normals, result.gamma[None])[0]
    truth = shade(TONE.expand(1, model.num_vertices, 3), normals, GAMMA[None])[0]
    facing = (normals[0] * cam.view_direction(result.world_vertices)).sum(1) > 0.5
    assert (reshaded[facing] - truth[facing]).abs().median() < 0.02
    # a constant albedo comes back (nearly) constant, with the right chromaticity
    tone = result.t_pca[facing & model.skin_mask]
    assert (tone.std(0) / tone.mean(0)).max() < 0.1
    chroma = tone.mean(0) / tone.mean(0).sum()
    assert (chroma - TONE / TONE.sum()).abs().max() < 0.01
    assert result.t_pca.min() >= 0 and result.t_pca.max() <= 1
    assert result.id_coeff.numel() == 0 and result.coefficients().shape == (33,)


def test_without_dense_points_degrades_to_pnp(model):
    angles, trans = torch.tensor([0.05, 0.3, 0.0]), torch.tensor([0.0, 0.0, 0.0])
    image, mask, _, landmarks, _ = synthetic(model, angles, trans)
    result = Fitter(model).fit(make_observation(image, landmarks, face_mask=mask, dense=None))
    assert result.init == "pnp-68"
    assert any("no dense landmarks" in n for n in result.notes)
    assert rotation_error_deg(result.angles, angles) < 5.0
