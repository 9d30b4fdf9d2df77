"""refine: one refine stage for inference and training — the two give the same T_refine."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch

from mvinvert_cli.config import Settings
from mvinvert_cli.invert.inverter import Inverter
from mvinvert_cli.refine import (
    REFINE_STEPS,
    RefineInputs,
    RefineSettings,
    refine,
    refine_settings,
    view_geometry,
)
from mvinvert_cli.render.camera import transform
from mvinvert_cli.texture.poisson import PoissonSolver
from mvinvert_cli.texture.stitch import stitch
from mvinvert_cli.train.data import stack_items
from mvinvert_cli.train.path import InversionPath, PathSettings
from tests.train.conftest import synthetic_face_model, synthetic_photos, tiny_networks

VIEWS = ((0.0, 0.0), (30.0, 0.0), (-30.0, 0.0))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup():
    """A tiny face, two prepared photos with half of the vertices anchored by the photo, the tiny
    networks, and the refine settings a run with these views derives (64² views for speed)."""
    model = synthetic_face_model()
    batch = stack_items(synthetic_photos(model, 2))
    xyz = model.mean_shape
    batch["t_uv"] = torch.stack([0.5 + 0.2 * torch.sin(3 * xyz + k) for k in range(2)])
    batch["photo_scores"] = (xyz[:, 0] < 0).float().expand(2, -1) * 0.8  # the left half seen by the photo
    settings = replace(refine_settings(Settings(views=VIEWS)), view_size=64)
    return model, batch, settings, tiny_networks()


def _inference(model, batch, settings, networks, iterations):
    """The pipeline's call: one face at a time, the Inverter, no gradients."""
    encoder, generator, latent_avg = (copy.deepcopy(n) for n in networks)
    inverter = Inverter(generator, latent_avg, encoder, backend="restyle-psp", iterations=iterations)
    solver = PoissonSolver(model.mean_shape, model.triangles, settings.lam)
    faces = []
    for i in range(batch["vertices"].shape[0]):
        inputs = RefineInputs.one(batch["vertices"][i], batch["translation"][i], batch["t_uv"][i],
                                  batch["photo_scores"][i], batch["coarse"][i])
        faces.append(refine(model, solver, inverter.invert, inputs, settings))
    return faces, inverter


def _training(model, batch, settings, networks, iterations, encoder_size):
    """The training path's forward, with gradients (BatchNorm on running statistics)."""
    encoder, generator, latent_avg = (copy.deepcopy(n) for n in networks)
    path_settings = PathSettings(refine=settings, render_size=64, encoder_size=encoder_size, generator_stop=None,
                                 iterations=iterations, texture_size=32, identity_renders=1)
    path = InversionPath(model, encoder, generator, latent_avg, path_settings).eval()
    return path(batch, torch.Generator().manual_seed(0))


def test_training_path_and_inference_refine_give_the_same_t_refine(setup):
    model, batch, settings, networks = setup
    faces, inverter = _inference(model, batch, settings, networks, iterations=2)
    out = _training(model, batch, settings, networks, iterations=2, encoder_size=inverter.size)
    assert out.refined.requires_grad and not faces[0].colors.requires_grad
    for i, face in enumerate(faces):
        torch.testing.assert_close(out.views[i], face.view_renders[0], atol=0, rtol=0)
        torch.testing.assert_close(out.inverted[i], face.inverted[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(out.refined[i], face.colors[0], atol=1e-5, rtol=0)
        assert face.backend == "restyle-psp" and [s.name for s in face.stages] == list(REFINE_STEPS)

    # the comparison is sensitive: the views change T_refine, and so does one more residual pass
    solver = PoissonSolver(model.mean_shape, model.triangles, settings.lam)
    photo_only = stitch(solver, batch["t_uv"][0], batch["photo_scores"][0], torch.zeros(0, model.num_vertices, 3),
                        torch.zeros(0, model.num_vertices), fallback=batch["coarse"][0]).colors.clamp(0, 1)
    assert float((faces[0].colors[0] - photo_only).abs().max()) > 1e-2
    drifted, _ = _inference(model, batch, settings, networks, iterations=3)
    assert float((drifted[0].colors[0] - out.refined[0].detach()).abs().max()) > 1e-4


def test_refine_settings_come_from_the_run_settings():
    s = refine_settings(Settings(views=((10.0, 5.0),), stitch_lambda=0.2, vis_threshold_photo=40.0,
                                 vis_threshold_view=2.0))
    assert s == RefineSettings(views=((10.0, 5.0),), view_size=512, view_background=0.5, vis_threshold_photo=40.0,
                               vis_threshold_view=2.0, lam=0.2)
    assert refine_settings(Settings()) == RefineSettings()
    assert RefineSettings.threshold_at(3.0, 512) == pytest.approx(3.0 * 512 / 224)


def test_refine_refuses_a_solver_of_another_lambda(setup):
    model, batch, settings, _ = setup
    solver = PoissonSolver(model.mean_shape, model.triangles, lam=0.5)
    inputs = RefineInputs(batch["vertices"], batch["translation"], batch["t_uv"], batch["photo_scores"],
                          batch["coarse"])
    with pytest.raises(ValueError, match="λ"):
        refine(model, solver, lambda images, landmarks: None, inputs, settings)


def test_view_geometry_centres_the_face_at_its_depth_and_turns_it():
    model = synthetic_face_model()
    verts = model.mean_shape[None]
    translation = torch.tensor([[0.3, -0.2, 1.5]])
    world, normals = view_geometry(model, verts, translation, ((0.0, 0.0), (30.0, 0.0)))
    assert world.shape == normals.shape == (2, model.num_vertices, 3)
    torch.testing.assert_close(world[0], verts[0] + torch.tensor([0.0, 0.0, 1.5]))  # x, y of the fit dropped
    angles = torch.tensor([[0.0, math.radians(30.0), 0.0]])
    torch.testing.assert_close(world[1:], transform(verts, angles, torch.tensor([[0.0, 0.0, 1.5]])))
    nose = int(model.mean_shape[:, 2].argmax())
    assert float(world[1, nose, 0]) > 0.1  # positive yaw turns the nose toward +x
    torch.testing.assert_close(normals.norm(dim=-1), torch.ones(2, model.num_vertices))
