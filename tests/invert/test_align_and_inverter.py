"""FFHQ alignment round trip, the Inverter facade and the `mvinvert invert` command on tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mvinvert_cli.cli import main
from mvinvert_cli.invert.ffhq_align import (
    align_views,
    aligned_to_source,
    ffhq_frame,
    quad_size,
    source_to_aligned,
    unalign,
)
from mvinvert_cli.invert.inverter import Inverter
from mvinvert_cli.invert.optimize import OptimizeSettings
from mvinvert_cli.io.images import save_image


def face_landmarks(cx: float = 32.0, cy: float = 30.0, eye: float = 10.0, mouth: float = 14.0,
                   angle: float = 0.0) -> torch.Tensor:
    """(68,2) points with eyes at ±eye around (cx, cy), mouth corners `mouth` px lower, rotated by angle."""
    pts = np.zeros((68, 2))
    pts[:] = (0.0, 5.0)
    pts[36:42] = (-eye, 0.0)
    pts[42:48] = (eye, 0.0)
    pts[48] = (-0.7 * eye, mouth)
    pts[54] = (0.7 * eye, mouth)
    pts[36:42, 0] += np.linspace(-2, 2, 6)
    pts[42:48, 0] += np.linspace(-2, 2, 6)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return torch.tensor(pts @ rot.T + (cx, cy), dtype=torch.float32)


def test_ffhq_frame_of_an_upright_face():
    lm = face_landmarks()[None]
    center, x, y = ffhq_frame(lm)
    # eye_to_eye = 20, eye_to_mouth = 14 → |x| = max(40, 25.2) = 40, x along +x, y along +y (down)
    torch.testing.assert_close(x[0], torch.tensor([40.0, 0.0]))
    torch.testing.assert_close(y[0], torch.tensor([0.0, 40.0]))
    torch.testing.assert_close(center[0], torch.tensor([32.0, 30.0 + 1.4]))
    assert float(quad_size(lm)[0]) == pytest.approx(80.0)
    a = aligned_to_source(lm, 256)
    corners = torch.tensor([[0.0, 0.0, 1.0], [0.0, 256.0, 1.0], [256.0, 256.0, 1.0]])
    torch.testing.assert_close(corners @ a[0].T, torch.tensor([[-8.0, -8.6], [-8.0, 71.4], [72.0, 71.4]]))


def test_rotated_face_is_aligned_upright():
    angle = 0.4
    lm = face_landmarks(angle=angle)[None]
    m = source_to_aligned(lm, 64)
    eyes = torch.stack([lm[0, 36:42].mean(0), lm[0, 42:48].mean(0)])
    mapped = eyes @ m[0, :, :2].T + m[0, :, 2]
    assert float((mapped[1, 1] - mapped[0, 1]).abs()) < 1e-4  # eyes level after alignment
    torch.testing.assert_close(m[0] @ torch.cat([aligned_to_source(lm, 64)[0], torch.tensor([[0.0, 0, 1]])]),
                               torch.cat([torch.eye(2), torch.zeros(2, 1)], dim=1), atol=1e-5, rtol=0)


def test_align_unalign_round_trip_and_gradients():
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    image = torch.stack([xx, yy, (xx * yy)], dim=0)[None].repeat(2, 1, 1, 1).requires_grad_(True)
    lm = torch.stack([face_landmarks(angle=0.2, eye=7), face_landmarks(cx=30, eye=8, angle=-0.1)])
    lm.requires_grad_(True)
    aligned = align_views(image, lm, 64)
    back, coverage = unalign(aligned, lm, (64, 64))
    assert aligned.shape == (2, 3, 64, 64) and coverage.shape == (2, 1, 64, 64)
    inside = coverage.bool().expand_as(back)
    assert inside.float().mean() > 0.3
    err = (back - image).detach()[inside].abs()
    assert float(err.mean()) < 0.01
    assert float(back.sum()) != 0
    (aligned.mean() + back.mean()).backward()
    assert image.grad is not None and lm.grad is not None and lm.grad.abs().sum() > 0


def _restyle_weights(tmp_path, restyle_pt, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    restyle_pt.rename(weights / "restyle_psp_ffhq_encode.pt")
    monkeypatch.setenv("MVINVERT_WEIGHTS", str(weights))
    return weights


def test_from_weights_none_without_files():
    assert Inverter.from_weights("cpu") is None


def test_from_weights_prefers_the_encoder(tmp_path, restyle_pt, rosinality_pt, monkeypatch):
    weights = _restyle_weights(tmp_path, restyle_pt, monkeypatch)
    rosinality_pt.rename(weights / "stylegan2-ffhq-config-f.pt")
    inverter = Inverter.from_weights("cpu", iterations=2)
    assert inverter.backend == "restyle-psp" and inverter.size == 32
    assert any("own decoder" in n for n in inverter.notes)
    lm = torch.stack([face_landmarks(), face_landmarks(angle=0.3)])
    result = inverter.invert(torch.rand(2, 3, 64, 64), lm)
    assert result.images.shape == (2, 3, 64, 64) and result.latents.shape == (2, 8, 64)
    assert result.per_iteration.shape == (2, 2, 3, 32, 32) and result.backend == "restyle-psp"
    assert 0.2 < float(result.coverage.mean()) < 1.0
    assert result.images.min() >= 0 and result.images.max() <= 1


def test_optimisation_backend_reports_why(tmp_path, rosinality_pt, monkeypatch):
    weights = tmp_path / "w"
    weights.mkdir()
    rosinality_pt.rename(weights / "stylegan2-ffhq-config-f.pt")
    monkeypatch.setenv("MVINVERT_WEIGHTS", str(weights))
    inverter = Inverter.from_weights("cpu", optimize=OptimizeSettings(steps=5, snapshots=2))
    assert inverter.backend == "optimisation" and "no ReStyle encoder" in inverter.notes[-1]
    result = inverter.invert(torch.rand(1, 3, 48, 48), face_landmarks(cx=24, cy=22, eye=6, mouth=9)[None])
    assert result.per_iteration.shape == (2, 1, 3, 32, 32) and result.latents.shape == (1, 8, 64)


def test_invert_command_writes_outputs(tmp_path, restyle_pt, monkeypatch, capsys):
    _restyle_weights(tmp_path, restyle_pt, monkeypatch)
    image = tmp_path / "face.png"
    save_image(image, np.random.default_rng(0).random((64, 64, 3)).astype(np.float32))
    lm = tmp_path / "lm.npy"
    np.save(lm, face_landmarks().numpy())
    out = tmp_path / "out"
    code = main(["invert", str(image), "-o", str(out), "--landmarks", str(lm), "--iterations", "3", "--json"])
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["backend"] == "restyle-psp" and record["iterations"] == 3
    for name in ("inverted.png", "aligned.png", "iterations.png", "latent.npy", "inversion.json"):
        assert (out / name).is_file()
    assert np.load(out / "latent.npy").shape == (8, 64)
    from PIL import Image

    assert Image.open(out / "iterations.png").size == (32 * 4, 32)
    assert main(["invert", str(image), "-o", str(out), "--landmarks", str(lm)]) == 6  # exists without --force


def test_invert_command_errors(tmp_path, capsys):
    image = tmp_path / "face.png"
    save_image(image, np.zeros((40, 40, 3), np.float32))
    lm = tmp_path / "lm.txt"
    np.savetxt(lm, face_landmarks(cx=20, cy=18, eye=5, mouth=8).numpy())
    assert main(["invert", str(image), "--landmarks", str(lm)]) == 5  # no generator in weights/
    assert "no generator" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    np.savetxt(bad, np.zeros((10, 2)))
    assert main(["invert", str(image), "--landmarks", str(bad)]) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_inverter_on_cuda(tmp_path, restyle_pt, monkeypatch):
    _restyle_weights(tmp_path, restyle_pt, monkeypatch)
    cpu = Inverter.from_weights("cpu", iterations=2)
    gpu = Inverter.from_weights("cuda", iterations=2)
    images, lm = torch.rand(2, 3, 64, 64), torch.stack([face_landmarks(), face_landmarks(angle=0.2)])
    a, b = cpu.invert(images, lm), gpu.invert(images.cuda(), lm.cuda())
    assert b.images.device.type == "cuda"
    torch.testing.assert_close(b.images.cpu(), a.images, atol=2e-3, rtol=0)
