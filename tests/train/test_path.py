"""train.path: the differentiable path on tiny models — shapes, gradients through the Poisson stitch."""

from __future__ import annotations

import pytest
import torch

from mvinvert_cli.texture import stitch as stitch_module
from mvinvert_cli.train import losses as L
from mvinvert_cli.train import path as P
from mvinvert_cli.train.data import stack_items

from .conftest import TINY_PATH, synthetic_photos, tiny_networks, tiny_refine


@pytest.fixture
def tiny_path(face_model):
    encoder, generator, latent_avg = tiny_networks()
    return P.InversionPath(face_model, encoder, generator, latent_avg, P.PathSettings(**TINY_PATH))


@pytest.fixture
def batch(face_model):
    return stack_items(synthetic_photos(face_model, 2))


def test_cardinality(tiny_path, batch, face_model):
    out = tiny_path(batch, torch.Generator().manual_seed(0))
    n = len(tiny_path.settings.views)
    assert out.blended.shape == out.photo.shape == (2, 3, 64, 64)
    assert out.mask.shape == (2, 1, 64, 64) and 0 < out.mask.mean() < 1
    assert out.views.shape == out.inverted.shape == (2, n, 3, 64, 64)
    assert out.identity_renders.shape == (2, 2, 3, 64, 64) and out.identity_points5.shape == (2, 2, 5, 2)
    assert out.uv_texture.shape == (2, 3, 32, 32)
    assert out.refined.shape == (2, face_model.num_vertices, 3)
    assert torch.isfinite(out.refined).all() and torch.isfinite(out.blended).all()
    outside = out.mask == 0
    assert torch.equal(out.blended.masked_select(outside.expand_as(out.blended)),
                       out.photo.masked_select(outside.expand_as(out.photo)))


def test_encoder_gradients_flow_through_the_poisson_stitch(tiny_path, batch, monkeypatch):
    """Eq. 7 alone touches the encoder only through T_refine = screened Poisson solve (Eq. 6)."""
    calls = []
    original = stitch_module.screened_poisson

    def spy(*args, **kwargs):
        calls.append(args[1].requires_grad)  # the gradient targets b carry the encoder's graph
        return original(*args, **kwargs)

    monkeypatch.setattr(stitch_module, "screened_poisson", spy)
    out = tiny_path(batch, torch.Generator().manual_seed(0))
    assert calls == [True, True]
    L.reconstruction_loss(out.photo, out.blended, out.mask).backward()
    grads = [p.grad for p in tiny_path.encoder.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in tiny_path.decoder.parameters())  # the generator is frozen


def test_encoder_gradient_matches_finite_difference(face_model):
    """float64: the autograd derivative of Eq. 7 along a random encoder direction (through generator,
    resampling and the Poisson solve's custom backward) agrees with central differences."""
    dt = torch.float64
    encoder, generator, latent_avg = tiny_networks()
    model = face_model.to(dtype=dt)
    path = P.InversionPath(model, encoder.to(dt), generator.to(dt), latent_avg.to(dt), P.PathSettings(**TINY_PATH))
    path.eval()  # BatchNorm on running statistics: the loss is a fixed function of the weights
    batch = {k: v.to(dt) if v.is_floating_point() else v for k, v in stack_items(synthetic_photos(face_model, 2)).items()}
    params = list(path.encoder.parameters())
    torch.manual_seed(1)
    direction = [torch.randn_like(p) for p in params]

    def loss() -> torch.Tensor:
        out = path(batch, torch.Generator().manual_seed(0))
        return L.reconstruction_loss(out.photo, out.blended, out.mask)

    grads = torch.autograd.grad(loss(), params)
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True))
    eps = 1e-5
    with torch.no_grad():
        for p, d in zip(params, direction, strict=True):
            p.add_(eps * d)
        plus = float(loss())
        for p, d in zip(params, direction, strict=True):
            p.sub_(2 * eps * d)
        minus = float(loss())
    numeric = (plus - minus) / (2 * eps)
    assert abs(analytic) > 1e-4
    assert numeric == pytest.approx(analytic, rel=1e-2)


def test_identity_renders_follow_the_step_generator(tiny_path, batch):
    a = tiny_path(batch, torch.Generator().manual_seed(5))
    b = tiny_path(batch, torch.Generator().manual_seed(5))
    c = tiny_path(batch, torch.Generator().manual_seed(6))
    assert torch.equal(a.identity_renders, b.identity_renders)
    assert not torch.equal(a.identity_renders, c.identity_renders)


def test_relight_keeps_colours_under_the_fitted_light():
    colors = torch.rand(2, 5, 3)
    normals = torch.nn.functional.normalize(torch.randn(2, 5, 3), dim=-1)
    normals[..., 2] = normals[..., 2].abs() + 0.5
    normals = torch.nn.functional.normalize(normals, dim=-1)
    gamma = torch.zeros(2, 27)
    same = P.relight(colors, normals, gamma, normals, gamma, floor=0.05)
    assert torch.allclose(same, colors, atol=1e-6)
    brighter = gamma.clone()
    brighter[:, [0, 9, 18]] = 0.4  # raise every DC term: 0.8 → 1.2 ambient
    assert torch.allclose(P.relight(colors, normals, gamma, normals, brighter, 0.05), colors * 1.5, atol=1e-5)


def test_five_points():
    landmarks = torch.zeros(68, 2)
    landmarks[36], landmarks[39] = torch.tensor([0.0, 0.0]), torch.tensor([2.0, 0.0])
    landmarks[30] = torch.tensor([5.0, 5.0])
    points = P.five_points(landmarks)
    assert points.shape == (5, 2)
    assert torch.equal(points[0], torch.tensor([1.0, 0.0])) and torch.equal(points[2], torch.tensor([5.0, 5.0]))


def test_cached_photo_samples_are_used(tiny_path, batch, face_model):
    """With cached T_uv seen everywhere (score 1), every triangle takes the photo's (zero) gradients
    and every vertex is anchored to it: T_refine is exactly the cached colour."""
    v = face_model.num_vertices
    cached = dict(batch, t_uv=torch.full((2, v, 3), 0.3), photo_scores=torch.ones(2, v))
    out = tiny_path(cached, torch.Generator().manual_seed(0))
    assert torch.allclose(out.refined, torch.full_like(out.refined, 0.3), atol=1e-5)


def test_path_settings_round_trip_through_checkpoint_opts():
    settings = P.PathSettings(**{**TINY_PATH, "refine": tiny_refine(views=((0.0, 0.0), (20.0, -5.0)), lam=0.2)})
    opts = settings.to_opts()
    assert opts["refine"]["views"] == [[0.0, 0.0], [20.0, -5.0]]
    assert P.PathSettings().updated(opts) == settings
    legacy = {"views": [[10.0, 0.0]], "view_size": 96, "render_size": 64}  # refine entries at the top level
    old = P.PathSettings().updated(legacy)
    assert old.views == ((10.0, 0.0),) and old.refine.view_size == 96 and old.render_size == 64
