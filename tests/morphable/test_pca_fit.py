"""PCA fit (through the Fitter entry) on synthetic ground truth: a tiny BFM-layout model rendered with
known parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvinvert_cli.config import Settings
from mvinvert_cli.morphable.bfm import load_bfm09_files
from mvinvert_cli.morphable.fit import FitResult, Fitter
from mvinvert_cli.render.camera import Camera, rotation_matrix, transform

from .conftest import make_observation, make_tiny_bfm, rotation_error_deg


def _files(tiny):
    p = tiny.paths
    return (p["01_MorphableModel.mat"], p["Exp_Pca.bin"], p["BFM_front_idx.mat"], p["BFM_exp_idx.mat"],
            p["facemodel_info.mat"], p["std_exp.txt"], p["BFM_UV.mat"])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    tiny = make_tiny_bfm(tmp_path_factory.mktemp("bfm"))
    return load_bfm09_files(*_files(tiny), use_cache=False)


def ground_truth(model, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return {
        "id": torch.randn(1, model.n_id, generator=gen) * 0.7,
        "exp": torch.randn(1, model.n_exp, generator=gen) * 0.7,
        "tex": torch.randn(1, model.n_tex, generator=gen) * 0.7,
        "angles": torch.tensor([[0.12, -0.35, 0.05]]),
        "trans": torch.tensor([[0.03, -0.05, 0.2]]),
        "gamma": torch.cat([torch.tensor([-0.15, -0.1, 0.2, 0.15, 0.03, 0.0, 0.05, -0.03, 0.02])] * 3)[None],
    }


def test_landmark_only_fit_recovers_pose(tiny_model):
    gt = ground_truth(tiny_model)
    world = transform(tiny_model.shape(gt["id"], gt["exp"]), gt["angles"], gt["trans"])
    landmarks = Camera().project(world[:, tiny_model.landmark_ids])[0, :, :2].numpy()
    obs = make_observation(np.zeros((224, 224, 3)), landmarks)
    result = Fitter(tiny_model, Settings(w_photo=0.0)).fit(obs)
    assert isinstance(result, FitResult)
    assert result.losses["landmark_px"] < 1.0
    assert rotation_error_deg(result.angles, gt["angles"][0]) < 2.0
    assert result.coefficients().shape == (tiny_model.n_id + tiny_model.n_exp + tiny_model.n_tex + 33,)
    assert result.vertices.shape == (tiny_model.num_vertices, 3)
    assert "photo_initial" not in result.losses


def render_truth(model, gt):
    """GT crop rendered with the renderer engineer's Renderer (an independent path from the Fitter's)."""
    from mvinvert_cli.render.lighting import shade
    from mvinvert_cli.render.renderer import Renderer

    verts = model.shape(gt["id"], gt["exp"])
    world = transform(verts, gt["angles"], gt["trans"])
    normals = model.normals(verts) @ rotation_matrix(gt["angles"][0]).T
    colors = shade(model.albedo(gt["tex"]), normals, gt["gamma"])
    rendering = Renderer().render(world, model.triangles, colors)
    image = rendering.image[0].permute(1, 2, 0).clamp(0, 1).numpy()
    mask = rendering.alpha[0, 0].numpy() > 0.5
    landmarks = Camera().project(world[:, model.landmark_ids])[0, :, :2].numpy()
    return image, mask, landmarks


def test_photometric_fit_recovers_everything(tiny_model):
    gt = ground_truth(tiny_model, seed=1)
    image, mask, landmarks = render_truth(tiny_model, gt)
    # the face mask of a parser would also cut off the image border region; erode by nothing here
    obs = make_observation(image, landmarks, face_mask=mask)
    result = Fitter(tiny_model).fit(obs)
    assert rotation_error_deg(result.angles, gt["angles"][0]) < 2.0
    assert result.losses["landmark_px"] < 1.0
    drop = 1 - result.losses["photo_final"] / result.losses["photo_initial"]
    assert drop >= 0.9, result.losses
    assert result.t_pca.min() >= 0 and result.t_pca.max() <= 1


def test_regressor_initialisation(tmp_path):
    """A ReconNet whose heads output the ground truth (zero weights, biases = truth) starts the fit there."""
    from mvinvert_cli.morphable.model import model_from_arrays
    from mvinvert_cli.morphable.regressor import HEADS, ReconNet, Regressor

    from .conftest import grid_face, landmark_vertices, smooth_basis

    rng = np.random.default_rng(0)
    verts, tris, uvs = grid_face(30, 34)
    model = model_from_arrays("d3d-sized", verts, smooth_basis(verts, 80, 0.03, rng), smooth_basis(verts, 64, 0.02, rng),
                              np.full((len(verts), 3), 0.6), smooth_basis(verts, 80, 0.05, rng), tris, uvs,
                              landmark_vertices(verts))
    gt = ground_truth(model, seed=3)
    image, mask, landmarks = render_truth(model, gt)
    net = ReconNet().eval()
    values = dict(id=gt["id"], exp=gt["exp"], tex=gt["tex"], angles=gt["angles"], gamma=gt["gamma"],
                  trans_xy=gt["trans"][:, :2], trans_z=gt["trans"][:, 2:])
    with torch.no_grad():
        for (name, _), head in zip(HEADS, net.final_layers, strict=True):
            head.weight.zero_()
            head.bias.copy_(values[name][0])
    result = Fitter(model, Settings(fit_rigid_steps=5, fit_nonrigid_steps=5), regressor=Regressor(net)).fit(
        make_observation(image, landmarks, face_mask=mask))
    assert result.init == "regressor"
    assert result.losses["photo_initial"] < 0.01  # started at the truth
    assert rotation_error_deg(result.angles, gt["angles"][0]) < 2.0  # Adam moves each value ~lr per step
    with pytest.raises(ValueError, match="80, 64, 80"):
        Fitter(make_tiny_model(tmp_path), regressor=Regressor(net))


def make_tiny_model(directory):
    return load_bfm09_files(*_files(make_tiny_bfm(directory)), use_cache=False)


def test_render_size_scales_everything(tiny_model):
    gt = ground_truth(tiny_model, seed=2)
    image, mask, landmarks = render_truth(tiny_model, gt)
    result = Fitter(tiny_model, Settings(render_size=112, fit_nonrigid_steps=10)).fit(
        make_observation(image, landmarks, face_mask=mask))
    assert result.losses["landmark_px"] < 1.0  # in 112-px units
    assert rotation_error_deg(result.angles, gt["angles"][0]) < 3.0
    torch.testing.assert_close(result.landmarks_2d * 2, torch.from_numpy(landmarks), atol=2.0, rtol=0)
