"""photo.evaluate_photo end to end on the synthetic head: reconstruction, identity, hold-out ranking."""

from __future__ import annotations

import math

import torch

from mvinvert_cli.eval import holdout
from mvinvert_cli.eval.photo import EvalInputs, evaluate_photo
from mvinvert_cli.eval.report import column
from mvinvert_cli.identity import IdentityNet, IResNet
from mvinvert_cli.render.camera import Camera, transform
from mvinvert_cli.texture.coarse import coarse_texture
from mvinvert_cli.texture.poisson import PoissonSolver
from mvinvert_cli.texture.sample import sample_vertices

SIZE = 112


def _inputs(head, yaw_deg: float = 4.0) -> EvalInputs:
    verts, faces, mirror = head
    # a symmetric, smoothly varying "skin" with a darker band, so fills differ measurably
    colours = torch.stack([0.55 + 0.3 * verts[:, 0].abs(), 0.4 + 0.2 * verts[:, 1], 0.35 + 0.1 * verts[:, 2]], 1)
    colours[:, 1] -= 0.15 * (verts[:, 1].abs() < 0.15)
    angles = torch.tensor([0.0, math.radians(yaw_deg), 0.0])
    translation = torch.zeros(3)
    camera = Camera().resized(SIZE)
    screen = camera.project(transform(verts[None], angles[None], translation[None]))
    fragments = holdout.rasterize(screen, faces, (SIZE, SIZE))
    photo = holdout.render_colours(screen[0], faces, colours, (SIZE, SIZE), fragments)
    photo = torch.where(fragments.mask, photo, torch.full_like(photo, 0.15))  # background
    sampled = sample_vertices(photo[None], screen, faces, fragments=fragments)
    t_uv, visible = sampled.colors[0], sampled.visible[0]
    photo_scores = visible.float() * (sampled.boundary_distance[0] >= 3)
    t_pca = torch.full_like(colours, 0.5)
    solver = PoissonSolver(verts, faces)

    def refill(split: holdout.HoldoutSplit) -> dict:
        coarse = coarse_texture(solver, t_uv, photo_scores * ~split.hidden, t_pca).colors
        return {"statistical": t_pca, "coarse": coarse, "full": coarse, "full_is": "coarse (refine skipped: test)"}

    return EvalInputs(name="head.png", crop=photo, face_mask=torch.ones(SIZE, SIZE, dtype=torch.bool),
                      points5=torch.tensor([[45.0, 50], [67, 50], [56, 62], [47, 75], [65, 75]]),
                      verts_model=verts, faces=faces, angles=angles, translation=translation, camera=camera,
                      t_uv=t_uv, visible=visible, photo_scores=photo_scores, mirror_ids=mirror,
                      final=t_uv, refill=refill)


def test_evaluate_photo_ranks_methods(head):
    tiny = IResNet(layers=(1, 1, 1, 1), widths=(8, 8, 16, 16), embedding_size=16).eval()
    net = IdentityNet("arcface-custom", "tiny random test network", 16, torch.device("cpu"), arcface=tiny)
    row, panels = evaluate_photo(_inputs(head), identity_net=net)
    assert row["status"] == "ok" and row["near_frontal"] and row["holdout_yaw_deg"] == -45.0
    assert row["holdout_pixels"] > 100 and row["holdout_hidden_vertices"] > 50
    assert row[column("recon", "psnr")] > 30 and row[column("recon", "ssim")] > 0.95
    assert row["id_cos"] > 0.99 and row["id_backend"] == "arcface-custom"
    psnr = {m: row[column("holdout", "psnr", m)] for m in ("statistical", "mirror", "coarse", "full", "ceiling")}
    assert psnr["ceiling"] > psnr["mirror"] > psnr["statistical"]
    assert psnr["coarse"] > psnr["statistical"] and psnr["full"] == psnr["coarse"]
    assert row[column("holdout", "l1", "mirror")] < row[column("holdout", "l1", "statistical")]
    assert 0.3 < row["mirror_found"] <= 1.0  # rim vertices mirror onto the unseen silhouette
    assert row["full_is"].startswith("coarse")
    assert set(panels) == {"input", "render", "error", "hidden", "full", "mirror", "holdout_error"}
    assert all(p.shape == (SIZE, SIZE, 3) for p in panels.values())


def test_turn_direction_and_profile_skip(head):
    row, _ = evaluate_photo(_inputs(head, yaw_deg=-4.0))
    assert row["holdout_yaw_deg"] == 45.0  # turned away from the fitted yaw's sign
    row, panels = evaluate_photo(_inputs(head, yaw_deg=30.0), max_yaw=20.0)
    assert not row["near_frontal"] and "holdout_pixels" not in row and "no hold-out" in row["notes"]
    assert math.isnan(row["id_cos"]) and row["id_backend"] == "none"
    assert set(panels) == {"input", "render", "error"}
