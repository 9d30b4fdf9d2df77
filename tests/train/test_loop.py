"""train.loop: a CPU smoke run on tiny models — loss decreases, exact resume, ReStyle-compatible output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mvinvert_cli.errors import UsageError, WeightsError
from mvinvert_cli.invert.encoder import load_restyle
from mvinvert_cli.train import loop
from mvinvert_cli.train import path as P
from mvinvert_cli.train.losses import tiny_face_features
from mvinvert_cli.weights import load_checkpoint

from .conftest import TINY_PATH, synthetic_face_model, synthetic_photos, tiny_networks, tiny_refine

SMOKE_STEPS = 50
TEST_VIEWS = ((0.0, 0.0), (30.0, 0.0), (-30.0, 0.0))


def make_trainer(steps: int, photos, textures=True, **overrides) -> loop.Trainer:
    model = synthetic_face_model()
    encoder, generator, latent_avg = tiny_networks()
    settings = P.PathSettings(**{**TINY_PATH, "refine": tiny_refine(views=TEST_VIEWS)})
    path = P.InversionPath(model, encoder, generator, latent_avg, settings)
    real = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)] if textures else None
    settings = dict(steps=steps, batch_size=2, lr=1e-3, disc_lr=2e-5, disc_size=16, disc_channels=256, texture_size=32,
                    r1_every=4, sample_every=25, checkpoint_every=25, log_every=5)
    settings.update(overrides)
    return loop.Trainer(path, tiny_face_features(width=4, dim=16, input_size=32), photos, real,
                        loop.TrainSettings(**settings), torch.device("cpu"), init_opts={"dataset": "synthetic"})


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    torch.set_num_threads(1)
    photos = synthetic_photos(synthetic_face_model(), 4)
    out = tmp_path_factory.mktemp("train_run")
    trainer = make_trainer(SMOKE_STEPS, photos)
    result = loop.run(trainer, out)
    return trainer, result, out, photos


def test_smoke_run_loss_decreases(smoke):
    trainer, result, out, _ = smoke
    rows = [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, SMOKE_STEPS + 1))
    assert result.start_step == 0 and result.end_step == SMOKE_STEPS
    for key in ("total", "rec", "perc", "id", "adv_tex", "adv_face", "d_face", "d_tex", "r1"):
        assert any(key in r for r in rows), key
    assert all(math.isfinite(r["total"]) for r in rows)
    first = np.mean([r["total"] for r in rows[:8]])
    last = np.mean([r["total"] for r in rows[-8:]])
    assert last < 0.9 * first, (first, last)
    first_rec = np.mean([r["rec"] for r in rows[:8]])
    last_rec = np.mean([r["rec"] for r in rows[-8:]])
    assert last_rec < 0.9 * first_rec, (first_rec, last_rec)
    assert all(r["encoder_grad_norm"] > 0 for r in rows)
    csv_lines = (out / "loss.csv").read_text().splitlines()
    assert csv_lines[0].startswith("step,total,rec,perc,id") and len(csv_lines) == SMOKE_STEPS + 1


def test_outputs_written(smoke):
    _, result, out, _ = smoke
    assert [p.name for p in result.checkpoints] == ["step_000025.pt", "step_000050.pt"]
    assert (out / "checkpoints" / "last.pt").read_bytes() == result.checkpoints[-1].read_bytes()
    assert [p.name for p in result.samples] == ["step_000025.png", "step_000050.png"]
    from mvinvert_cli.io.images import load_image

    grid = load_image(result.samples[-1]).rgb
    assert grid.shape == (2 * 64, (2 + 2 * len(TEST_VIEWS) + 1) * 64, 3)
    assert not list(out.rglob(".*tmp*"))


def test_checkpoint_is_restyle_layout_and_loads_for_inference(smoke):
    trainer, result, _, _ = smoke
    ckpt = load_checkpoint(result.checkpoints[-1])  # weights_only=True
    assert {"state_dict", "latent_avg", "opts"} <= set(ckpt)
    assert all(k.startswith(("encoder.", "decoder.")) for k in ckpt["state_dict"])
    assert ckpt["opts"]["encoder_type"] == "BackboneEncoder" and ckpt["opts"]["dataset"] == "synthetic"
    assert ckpt["step"] == SMOKE_STEPS and ckpt["opts"]["trained_steps"] == SMOKE_STEPS
    model = loop.load_trained_encoder(result.checkpoints[-1], "cpu")
    assert any("50 steps" in note for note in model.notes)
    same = load_restyle(result.checkpoints[-1], "cpu")  # the inversion engineer's loader, as `recover` uses it
    trained = trainer.path.encoder.state_dict()
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, trained[key]), key
    assert torch.equal(same.latent_avg, trainer.path.latent_avg)
    # the loaded encoder + generator invert exactly as the trained path does
    trainer.path.eval()
    with torch.no_grad():
        views = trainer.last_output.views.flatten(0, 1)
        landmarks = trainer.last_output.view_landmarks.flatten(0, 1)
        expected = trainer.path.invert(views, landmarks)
        loaded = P.InversionPath(trainer.path.model, model.encoder, model.decoder, model.latent_avg,
                                 trainer.path.settings).eval()
        assert torch.equal(loaded.invert(views, landmarks), expected)
    # ... and the pipeline's Inverter (what `recover --encoder` runs) gives the same views
    from mvinvert_cli.invert.inverter import Inverter

    inverter = Inverter.from_paths(None, result.checkpoints[-1], "cpu", iterations=1)
    assert inverter.backend == "restyle-psp"
    assert torch.allclose(inverter.invert(views, landmarks).images, expected, atol=1e-5)


def test_resume_gives_identical_next_step(smoke, tmp_path):
    _, result, out, photos = smoke
    rows = [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]
    resumed = make_trainer(SMOKE_STEPS, photos)
    resumed.load(load_checkpoint(result.checkpoints[0]), result.checkpoints[0])
    assert resumed.step_count == 25
    row = resumed.step()
    assert row["step"] == 26
    for key in ("total", "rec", "perc", "id", "adv_tex", "adv_face", "d_face", "d_tex"):
        assert row[key] == rows[25][key], key


def test_resume_truncates_the_log(smoke, tmp_path):
    _, _, out, _ = smoke
    (tmp_path / "loss.jsonl").write_text((out / "loss.jsonl").read_text())
    log = loop.LossLog(tmp_path, resume_step=20)
    assert [r["step"] for r in log.rows] == list(range(1, 21))


def test_load_refuses_other_checkpoints(tmp_path):
    photos = synthetic_photos(synthetic_face_model(), 2)
    trainer = make_trainer(2, photos)
    with pytest.raises(WeightsError, match="not a resumable"):
        trainer.load({"state_dict": {}, "latent_avg": torch.zeros(1), "opts": {}}, "x.pt")
    other = make_trainer(2, photos, textures=False)  # different optimiser groups
    ckpt = trainer.checkpoint()
    with pytest.raises(WeightsError, match="optimiser state"):
        other.load(ckpt, "x.pt")


def test_without_real_textures_the_term_is_reported(tmp_path):
    photos = synthetic_photos(synthetic_face_model(), 2)
    trainer = make_trainer(1, photos, textures=False)
    row = trainer.step()
    assert "adv_tex" not in row and "d_tex" not in row
    assert any("Eq. 10" in note for note in trainer.notes)
    with pytest.raises(UsageError, match="nothing to do"):
        loop.run(trainer, tmp_path)


def test_batch_indices_cover_each_epoch():
    trainer = make_trainer(1, synthetic_photos(synthetic_face_model(), 4))
    seen = trainer.batch_indices(0) + trainer.batch_indices(1)
    assert sorted(seen) == [0, 1, 2, 3]
    assert sorted(trainer.batch_indices(2) + trainer.batch_indices(3)) == [0, 1, 2, 3]
    assert trainer.batch_indices(5) == trainer.batch_indices(5)


def test_settings_round_trip():
    settings = loop.TrainSettings(steps=7, betas=(0.5, 0.9))
    assert loop.TrainSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    ckpt = {"opts": {"train": settings.to_dict()}}
    assert loop.settings_from_checkpoint(ckpt, steps=9, lr=None).steps == 9
    with pytest.raises(WeightsError):
        loop.settings_from_checkpoint({"opts": {}})


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_steps_on_cuda_match_cpu():
    photos = synthetic_photos(synthetic_face_model(), 2)
    rows = {}
    for name in ("cpu", "cuda"):
        trainer = make_trainer(2, photos)
        device = torch.device(name)
        trainer = loop.Trainer(trainer.path, trainer.face_net, photos, trainer.textures, trainer.settings, device)
        rows[name] = [trainer.step() for _ in range(2)]
        assert trainer.path.latent_avg.device.type == name and trainer.path.model.triangles.device.type == name
    for cpu_row, cuda_row in zip(rows["cpu"], rows["cuda"], strict=True):
        for key in ("rec", "perc", "adv_face", "d_face"):
            assert cuda_row[key] == pytest.approx(cpu_row[key], rel=2e-2, abs=1e-4), key
