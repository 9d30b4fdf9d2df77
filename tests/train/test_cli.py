"""`mvinvert train`: option errors, a short run + resume through the CLI, and the real pipeline (slow)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mvinvert_cli.cli import main
from mvinvert_cli.errors import ExitCode
from mvinvert_cli.invert.encoder import restyle_checkpoint
from mvinvert_cli.io.images import save_image

from .conftest import synthetic_face_model, synthetic_photos, tiny_networks


@pytest.fixture
def tiny_init(tmp_path):
    encoder, generator, latent_avg = tiny_networks()
    path = tmp_path / "tiny_restyle.pt"
    torch.save(restyle_checkpoint(encoder, generator, latent_avg, {"note": "tiny"}), path)
    return path


@pytest.fixture
def photo_dir(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        save_image(folder / f"face{i}.png", rng.random((64, 64, 3)).astype(np.float32))
    return folder


class SyntheticRecoverer:
    """Stands in for ``train.job.Recoverer`` in the fast CLI test: each photo becomes a rendering of
    the synthetic face model (seeded by its pixels), with the fields ``record_from_recovery`` reads."""

    def __init__(self, settings):
        from mvinvert_cli.texture.sample import sample_vertices
        from mvinvert_cli.texture.visibility import vertex_scores

        self.settings = settings
        self.settings.views = ((0.0, 0.0), (30.0, 0.0))
        self.model = synthetic_face_model()
        self.aligner = self.parser = SimpleNamespace(backend="synthetic")
        self.degraded = ["synthetic stand-in for the pipeline"]
        self._sample, self._scores = sample_vertices, vertex_scores

    def recover(self, photo):
        from mvinvert_cli.render import camera as cam

        seed = int(photo.rgb.sum() * 1000) % 1000
        item = synthetic_photos(self.model, 1, size=224, seed=seed)[0]
        verts = self.model.mean_shape[None]
        angles, translation = item["angles"][None], item["translation"][None]
        world = cam.transform(verts, angles, translation)
        normals = cam.transform(self.model.normals(verts), angles, torch.zeros_like(translation))
        sampled = self._sample(item["photo"][None], cam.Camera().project(world), self.model.triangles)
        scores = self._scores(normals, world, sampled.visible, sampled.boundary_distance, 50.0)
        crop = item["photo"].permute(1, 2, 0).numpy()
        observation = SimpleNamespace(crop=crop, crop_face_mask=item["mask"][0].numpy() > 0,
                                      crop_matrix=np.array([[1.0, 0, 0], [0, 1.0, 0]]),
                                      points5=item["points5"].numpy())
        fit = SimpleNamespace(vertices=verts[0], angles=angles[0], translation=translation[0], gamma=torch.zeros(27))
        return SimpleNamespace(observation=observation, fit=fit, coarse=SimpleNamespace(t_coarse=item["coarse"]),
                               samples=SimpleNamespace(t_uv=sampled.colors[0], photo_scores=scores[0]))


def test_usage_and_weights_errors(tmp_path, photo_dir, capsys):
    assert main(["train", "--images", str(photo_dir), "--loss-weights", "1,2", "-o", str(tmp_path / "o")]) \
        == ExitCode.USAGE
    assert "--loss-weights" in capsys.readouterr().err
    assert main(["train", "--images", str(photo_dir), "--face-net", "vgg", "-o", str(tmp_path / "o")]) == ExitCode.USAGE
    assert main(["train", "--images", str(photo_dir), "--disc-size", "48", "-o", str(tmp_path / "o")]) == ExitCode.USAGE
    code = main(["train", "--images", str(photo_dir), "-o", str(tmp_path / "o")])  # no ReStyle weights anywhere
    assert code == ExitCode.WEIGHTS
    assert "restyle_psp_ffhq_encode.pt" in capsys.readouterr().err
    used = tmp_path / "used"
    (used / "checkpoints").mkdir(parents=True)
    (used / "checkpoints" / "step_000010.pt").write_bytes(b"x")
    assert main(["train", "--images", str(photo_dir), "-o", str(used)]) == ExitCode.OUTPUT
    assert "--resume" in capsys.readouterr().err


def test_train_then_resume_through_the_cli(tmp_path, photo_dir, tiny_init, monkeypatch, capsys):
    import mvinvert_cli.refine as refine
    import mvinvert_cli.train.job as job

    monkeypatch.setattr(job, "Recoverer", SyntheticRecoverer)
    monkeypatch.setattr(refine, "VIEW_SIZE", 96)  # the run reads it: small views keep the test fast
    textures = tmp_path / "textures"
    textures.mkdir()
    save_image(textures / "uv.png", np.full((64, 64, 3), 0.6, np.float32))
    out = tmp_path / "run"
    common = ["--images", str(photo_dir), "--real-textures", str(textures), "--init", str(tiny_init), "-o", str(out),
              "--face-net", "tiny", "--texture-size", "32", "--identity-renders", "1", "--checkpoint-every", "2",
              "--disc-size", "16", "--disc-channels", "256"]
    assert main(["train", *common, "--steps", "2", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["end_step"] == 2 and result["checkpoints"][-1].endswith("step_000002.pt")
    assert any("tiny network" in n for n in result["notes"]) and any("synthetic" in n for n in result["notes"])
    assert len(list((out / "cache").glob("*.npz"))) == 2
    first = [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in first] == [1, 2]

    assert main(["train", *common, "--steps", "3", "--resume", str(out / "checkpoints" / "last.pt")]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith("step_000003.pt")
    assert "trained" in captured.err
    rows = [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[:2] == first
    from mvinvert_cli.train.loop import load_trained_encoder

    model = load_trained_encoder(out / "checkpoints" / "step_000003.pt", "cpu")
    assert model.opts["note"] == "tiny" and model.opts["trained_steps"] == 3


@pytest.mark.slow
def test_train_on_real_photos_with_the_pipeline(tmp_path, faces_dir, tiny_init, capsys):
    """The real preparation (align, parse, fit, T_coarse on the embedded default model) and two steps."""
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("facerec_obama.jpg", "hrn_mv_5932.jpg"):
        shutil.copy(faces_dir / name, photos / name)
    out = tmp_path / "run"
    code = main(["train", "--images", str(photos), "--init", str(tiny_init), "-o", str(out), "--steps", "2",
                 "--batch-size", "1", "--face-net", "tiny", "--texture-size", "64", "--disc-size", "32",
                 "--disc-channels", "512", "--json"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert result["end_step"] == 2 and np.isfinite(result["last"]["total"])
