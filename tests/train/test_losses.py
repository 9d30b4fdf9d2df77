"""train.losses: known values of Eq. 7–11 on hand-made tensors, gradients, the weighted total."""

from __future__ import annotations

import math

import pytest
import torch

from mvinvert_cli.errors import UsageError
from mvinvert_cli.train import losses as L

# ----------------------------------------------------------------------------- Eq. 7

def test_reconstruction_feature_known_value():
    photo = torch.zeros(2, 3, 4, 4)
    render = torch.zeros(2, 3, 4, 4)
    render[:, 0] = 0.3
    render[:, 1] = 0.4  # per-pixel colour distance 0.5 everywhere
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, :2] = 1.0  # 8 pixels in image 0, none in image 1
    render[1] = 7.0  # outside the mask: must not count
    blended = L.blend_face(render, photo, mask)
    assert torch.allclose(blended[1], photo[1])
    assert L.reconstruction_loss(photo, blended, mask).item() == pytest.approx(0.5, abs=1e-6)
    assert L.reconstruction_loss(photo, render, mask.bool()[:, 0]).item() == pytest.approx(0.5, abs=1e-6)


def test_reconstruction_soft_mask_and_empty_mask():
    photo = torch.zeros(1, 3, 1, 2)
    render = torch.ones(1, 3, 1, 2)
    render[..., 1] = 2.0
    mask = torch.tensor([[[[1.0, 0.5]]]])
    expected = (1.0 * math.sqrt(3) + 0.5 * 2 * math.sqrt(3)) / 1.5
    assert L.reconstruction_loss(photo, render, mask).item() == pytest.approx(expected, rel=1e-6)
    assert L.reconstruction_loss(photo, render, torch.zeros_like(mask)).item() == 0.0


def test_reconstruction_gradcheck():
    photo = torch.rand(1, 3, 3, 3, dtype=torch.float64)
    render = torch.rand(1, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(1, 1, 3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda r: L.reconstruction_loss(photo, L.blend_face(r, photo, mask), mask),
                                    (render,))


# ----------------------------------------------------------------------------- Eq. 8

def test_perceptual_known_values():
    a = torch.zeros(1, 2, 2, 2)
    a[:, 0] = 3.0  # direction (1, 0) everywhere
    b = torch.zeros(1, 2, 2, 2)
    b[:, 1] = 0.5  # direction (0, 1): squared distance of the unit vectors = 2
    c = 5.0 * a  # same direction as a: distance 0 whatever the magnitude
    assert L.perceptual_loss([a], [b]).item() == pytest.approx(2.0, abs=1e-6)
    assert L.perceptual_loss([a], [c]).item() == pytest.approx(0.0, abs=1e-6)
    assert L.perceptual_loss([a, a], [b, c]).item() == pytest.approx(1.0, abs=1e-6)  # mean over layers
    opposite = -a
    assert L.perceptual_loss([a], [opposite]).item() == pytest.approx(4.0, abs=1e-6)


def test_perceptual_mask_selects_positions():
    a = torch.zeros(1, 2, 2, 2)
    a[:, 0] = 1.0
    b = a.clone()
    b[:, :, 0, 0] = torch.tensor([0.0, 1.0])  # one position differs (distance 2)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :2] = 1.0  # area-resized to the top-left feature position only
    assert L.perceptual_loss([a], [b], mask).item() == pytest.approx(2.0, abs=1e-6)
    assert L.perceptual_loss([a], [b]).item() == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError):
        L.perceptual_loss([a], [])


def test_face_features_cardinality_and_input_gradients():
    net = L.tiny_face_features(width=4, dim=16, input_size=32)
    images = torch.rand(2, 3, 48, 48, requires_grad=True)
    feats, emb = net(images)
    assert [tuple(f.shape) for f in feats] == [(2, 4, 16, 16), (2, 8, 8, 8), (2, 16, 4, 4), (2, 32, 2, 2)]
    assert emb.shape == (2, 16)
    assert not any(p.requires_grad for p in net.parameters())
    loss = L.perceptual_loss(feats, net(torch.rand(2, 3, 48, 48))[0])
    loss.backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    net.train()
    assert not net.backbone.training


def test_tiny_face_net_deterministic_from_seed():
    x = torch.rand(1, 3, 32, 32)
    torch.manual_seed(123)
    a = L.tiny_face_features(seed=3)(x)[1]
    torch.manual_seed(456)
    b = L.tiny_face_features(seed=3)(x)[1]
    c = L.tiny_face_features(seed=4)(x)[1]
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_face_features_unknown_layer():
    with pytest.raises(UsageError, match="nope"):
        L.FaceFeatures(L.TinyFaceNet(), ["nope"])


# ----------------------------------------------------------------------------- Eq. 9

def test_identity_zero_for_identical_features():
    ref = torch.randn(3, 8)
    renders = ref[:, None].expand(3, 5, 8) * torch.rand(3, 5, 1) * 4 + 0  # same directions, any norm
    assert L.identity_loss(ref, renders).item() == pytest.approx(0.0, abs=1e-6)
    assert L.identity_loss(ref, ref).item() == pytest.approx(0.0, abs=1e-6)


def test_identity_known_values():
    ref = torch.tensor([[1.0, 0.0]])
    renders = torch.tensor([[[0.0, 2.0], [-1.0, 0.0], [1.0, 1.0]]])  # cos 0, −1, 1/√2
    expected = ((1 - 0) + (1 + 1) + (1 - 1 / math.sqrt(2))) / 3
    assert L.identity_loss(ref, renders).item() == pytest.approx(expected, abs=1e-6)


# ----------------------------------------------------------------------------- Eq. 10–11

def test_adversarial_known_values():
    zeros = torch.zeros(4, 2)
    assert L.generator_adversarial_loss(zeros).item() == pytest.approx(math.log(2), abs=1e-6)
    assert L.discriminator_adversarial_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2), abs=1e-6)
    fake = torch.tensor([[2.0, -1.0]])
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2  # mean over the two heads
    assert L.generator_adversarial_loss(fake).item() == pytest.approx(expected, abs=1e-6)
    real = torch.tensor([10.0])
    d = L.discriminator_adversarial_loss(real, torch.tensor([-10.0]))
    assert d.item() == pytest.approx(2 * math.log1p(math.exp(-10.0)), rel=1e-5)


def test_r1_penalty_known_value():
    x = torch.rand(3, 2, requires_grad=True)
    logits = (x * torch.tensor([3.0, 4.0])).sum(dim=1)  # ∇ = (3, 4), ‖∇‖² = 25
    assert L.r1_penalty(logits, x).item() == pytest.approx(25.0)


# ----------------------------------------------------------------------------- total

def test_total_uses_paper_weights():
    w = L.LossWeights()
    assert (w.rec, w.perc, w.id, w.adv) == (1.9, 0.2, 0.8, 0.1)
    terms = {name: torch.tensor(1.0) for name in L.TERMS}
    assert L.total_loss(terms).item() == pytest.approx(1.9 + 0.2 + 0.8 + 0.1 * 2)
    terms = {"rec": torch.tensor(2.0), "adv_face": torch.tensor(3.0)}
    custom = L.LossWeights(rec=1.0, adv=0.5)
    assert L.total_loss(terms, custom).item() == pytest.approx(2.0 + 1.5)


def test_total_exceptions():
    with pytest.raises(KeyError, match="bogus"):
        L.total_loss({"bogus": torch.tensor(1.0)})
    with pytest.raises(ValueError):
        L.total_loss({})


def test_face_network_arcface_from_registry(tmp_path, monkeypatch):
    from mvinvert_cli.identity import IResNet

    small = IResNet(layers=(1, 1, 1, 1), widths=(4, 8, 8, 16), embedding_size=8, input_size=32)
    torch.save(small.state_dict(), tmp_path / "backbone.pth")
    monkeypatch.setenv("MVINVERT_WEIGHTS", str(tmp_path))
    net = L.face_network("arcface", torch.device("cpu"))
    assert net.input_size == 32 and net.layers == ("layer1", "layer2", "layer3", "layer4")
    feats, emb = net(torch.rand(2, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [4, 8, 8, 16] and emb.shape == (2, 8)
    points5 = torch.tensor([[[20.0, 26.0], [44.0, 26.0], [32.0, 36.0], [22.0, 46.0], [42.0, 46.0]]] * 2)
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    L.identity_loss(emb, net(images, points5)[1]).backward()
    assert images.grad.abs().sum() > 0


def test_face_network_exceptions():
    from mvinvert_cli.errors import WeightsError

    with pytest.raises(WeightsError, match="backbone.pth"):
        L.face_network("arcface", torch.device("cpu"))
    with pytest.raises(UsageError, match="unknown face network"):
        L.face_network("vgg", torch.device("cpu"))
    assert isinstance(L.face_network("tiny", torch.device("cpu")), L.FaceFeatures)
