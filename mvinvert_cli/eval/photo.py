"""Scoring one recovered photo: reconstruction metrics, identity, and the occlusion hold-out with baselines.

:class:`EvalInputs` is everything the evaluation needs from a recovery, as plain tensors, so this
module does not depend on how the recovery was produced (the pipeline's ``Recoverer``, or a synthetic
mesh in the tests). :func:`evaluate_photo` returns one ``eval.csv`` row and the report panels.

Per photo, in the 224² crop the face was fitted in:

1. Reconstruction (Table 1): the final per-vertex texture rendered at the fitted pose replaces the
   photo inside (mesh coverage ∩ face mask); L1/PSNR/SSIM over that region; identity cosine between
   the photo crop and that composite (same 5 points), when an identity network is available.
2. Hold-out (near-frontal photos, |fitted yaw| ≤ ``max_yaw``): :func:`holdout.split` with the turn
   θ = −sign(fitted yaw)·|yaw| (0 counts as +), which hides the side the photo sees best — the most
   reliable ground truth. Every method gets the photo's Eq. 4 scores with H zeroed, i.e. recovers
   from the rest; its colours are rendered back and scored on the hidden region.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..render.camera import Camera, transform
from ..render.rasterize import rasterize
from . import holdout
from .report import CEILING, HOLDOUT_METHODS, column, error_map, overlay
from .score import METRICS, region_scores

DEFAULT_MAX_YAW = 20.0  # degrees of fitted yaw up to which a photo counts as near-frontal

Refill = Callable[[torch.Tensor], dict[str, Any]]


@dataclass(frozen=True)
class EvalInputs:
    """One recovered face, as the evaluation sees it (all tensors on one device).

    Attributes:
        name: photo file name (the CSV key).
        crop: (3, S, S) the aligned photo crop in [0, 1] (S = 224).
        face_mask: bool (S, S) face region of the crop.
        points5: (5, 2) [eyeL, eyeR, nose, mouthL, mouthR] in crop pixels (identity alignment).
        verts_model: (V, 3) fitted model-space vertices (shape + expression).
        faces: (F, 3) long.
        angles: (3,) fitted pose (x, y, z) radians; translation: (3,) world units.
        camera: the crop's camera.
        t_uv: (V, 3) colours sampled from the photo (T_uv).
        visible: bool (V,) z-buffer visibility in the photo.
        photo_scores: (V,) Eq. 4 scores of the photo (> 0 = used as seen).
        mirror_ids: (V,) long mirror vertex across the model's x = 0 plane.
        final: (V, 3) the recovery's final per-vertex texture (T_refine, or T_coarse if not refined).
        refill: :class:`~mvinvert_cli.eval.holdout.HoldoutSplit` → {"statistical", "coarse", "full": (V, 3),
            "full_is": str}: the pipeline re-run blind to the hidden part ("recover from the rest") —
            the statistical texture (lit, photo colour space) estimated without the hidden pixels,
            T_coarse and the final texture with the hidden vertices' photo scores zeroed.
        notes: remarks carried into the CSV (degraded stages).
    """

    name: str
    crop: torch.Tensor
    face_mask: torch.Tensor
    points5: torch.Tensor
    verts_model: torch.Tensor
    faces: torch.Tensor
    angles: torch.Tensor
    translation: torch.Tensor
    camera: Camera
    t_uv: torch.Tensor
    visible: torch.Tensor
    photo_scores: torch.Tensor
    mirror_ids: torch.Tensor
    final: torch.Tensor
    refill: Refill
    notes: tuple[str, ...] = ()

    def screen(self, angles: torch.Tensor | None = None) -> torch.Tensor:
        """(V, 3) screen vertices at the fitted pose, or at ``angles`` (same translation, camera)."""
        pose = self.angles if angles is None else angles
        return self.camera.project(transform(self.verts_model[None], pose[None], self.translation[None]))[0]


def _np(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor → (H, W, 3) float32 array."""
    return image.detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy().astype(np.float32)


def _put(row: dict[str, Any], kind: str, method: str | None, scores: dict[str, torch.Tensor]) -> None:
    for metric in METRICS:
        row[column(kind, metric, method)] = float(scores[metric][0])


def evaluate_photo(inputs: EvalInputs, identity_net: Any = None, yaw: float = holdout.DEFAULT_YAW,
                   max_yaw: float = DEFAULT_MAX_YAW) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Score one recovery → (eval.csv row, report panels (H, W, 3)).

    ``identity_net``: an :class:`~mvinvert_cli.identity.IdentityNet` or None (id_cos = NaN).
    """
    start = time.perf_counter()
    size = (inputs.crop.shape[-2], inputs.crop.shape[-1])
    fitted_yaw = math.degrees(float(inputs.angles[1]))
    row: dict[str, Any] = {"image": inputs.name, "status": "ok", "fitted_yaw_deg": round(fitted_yaw, 2),
                           "near_frontal": abs(fitted_yaw) <= max_yaw}
    notes = list(inputs.notes)
    photo = inputs.crop
    screen = inputs.screen()
    fragments = rasterize(screen[None], inputs.faces, size)

    # 1. reconstruction: input vs re-rendered face
    recon_region = fragments.mask[0] & inputs.face_mask
    render = holdout.render_colours(screen, inputs.faces, inputs.final, size, fragments)
    recon = holdout.composite(photo, render, recon_region)
    _put(row, "recon", None, region_scores(photo[None], recon[None], recon_region[None]))
    row["id_cos"], row["id_backend"] = math.nan, "none"
    if identity_net is not None:
        points = inputs.points5[None]
        pair = identity_net.embed(torch.stack([photo, recon]), torch.cat([points, points]))
        row["id_cos"] = float(torch.nn.functional.cosine_similarity(pair[:1], pair[1:])[0])
        row["id_backend"] = identity_net.backend
    panels = {"input": _np(photo), "render": _np(recon),
              "error": error_map(_np(photo), _np(recon), recon_region.cpu().numpy())}

    # 2. occlusion hold-out
    if row["near_frontal"]:
        turn = -math.copysign(abs(yaw), fitted_yaw) if fitted_yaw != 0 else abs(yaw)
        turned = inputs.screen(holdout.turned_angles(inputs.angles, turn))
        split = holdout.split(screen, turned, inputs.faces, inputs.visible, size, turn, inputs.face_mask, fragments)
        row.update(holdout_yaw_deg=turn, holdout_pixels=split.region_pixels,
                   holdout_hidden_vertices=int(split.hidden.sum()))
        keep = (inputs.photo_scores > 0) & ~split.hidden
        refilled = inputs.refill(split)
        prior = refilled["statistical"]
        mirror, mirrored = holdout.mirror_fill(inputs.t_uv, keep, inputs.mirror_ids, prior)
        hidden_count = int(split.hidden.sum())
        row["mirror_found"] = round(int((mirrored & split.hidden).sum()) / hidden_count, 4) if hidden_count else math.nan
        row["full_is"] = refilled["full_is"]
        fills = {"statistical": holdout.statistical_fill(inputs.t_uv, keep, prior), "mirror": mirror,
                 "coarse": refilled["coarse"], "full": refilled["full"], CEILING: inputs.t_uv}
        region = split.region
        for method in (*HOLDOUT_METHODS, CEILING):
            filled = holdout.render_colours(screen, inputs.faces, fills[method], size, fragments)
            candidate = holdout.composite(photo, filled, region)
            _put(row, "holdout", method, region_scores(photo[None], candidate[None], region[None]))
            if method in ("full", "mirror"):
                panels[method] = _np(candidate)
            if method == "full":
                panels["holdout_error"] = error_map(_np(photo), _np(candidate), region.cpu().numpy())
        panels["hidden"] = overlay(_np(photo), region.cpu().numpy())
        if split.region_pixels == 0:
            notes.append("hold-out region empty (nothing visible becomes self-occluded)")
    else:
        notes.append(f"no hold-out: fitted yaw {fitted_yaw:.1f}° exceeds ±{max_yaw:g}°")
    row["seconds"] = round(time.perf_counter() - start, 3)
    row["notes"] = "; ".join(notes)
    return row, panels
