"""Adapter from the pipeline's :class:`~mvinvert_cli.pipeline.Recovery` to :class:`EvalInputs`.

The hold-out's "recover from the rest" re-runs the pipeline's stages blind to the hidden part: the fit's
statistical texture is re-estimated with the hidden pixels removed from the face mask (the default
model's T_pca copies visible photo colours; a PCA fit's photometric term sees them), and the texture
stages get the hidden vertices' photo scores set to zero: T_coarse through
:func:`~mvinvert_cli.texture.coarse.complete_coarse` with the Recoverer's Poisson solver, and, when the
Recoverer has an inverter, the refine stage (render views of that T_coarse → invert → resample →
stitch) through :func:`~mvinvert_cli.refine.refine`, as the pipeline runs it. Without an
inverter (the embedded defaults) "full" is T_coarse, and the row says so (``full_is``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..align.observation import transform_points
from ..io.images import load_image
from ..refine import RefineInputs, refine
from ..render.camera import Camera
from .holdout import HoldoutSplit, hidden_pixels
from .photo import EvalInputs


def inputs_from_recovery(recovery: Any, recoverer: Any, name: str) -> EvalInputs:
    """Gather the tensors :func:`~mvinvert_cli.eval.photo.evaluate_photo` needs from one recovery."""
    from ..morphable.model import mirror_vertex_ids
    from ..texture.coarse import complete_coarse
    from ..texture.sample import sample_vertices

    device = recoverer.device
    obs, fit, model = recovery.observation, recovery.fit, recoverer.model
    camera = Camera()  # the 224² fitting crop
    crop = obs.crop_tensor(device)[0]
    faces = model.triangles
    screen = camera.project(fit.world_vertices[None])
    sampled = sample_vertices(crop[None], screen, faces)
    visible = sampled.visible[0]
    if obs.crop_face_mask is not None:
        face_mask = torch.from_numpy(np.ascontiguousarray(obs.crop_face_mask)).to(device)
    else:
        face_mask = torch.ones(crop.shape[-2:], dtype=torch.bool, device=device)
    mirror_ids = model.mirror_ids
    if mirror_ids is None:
        mirror_ids = torch.from_numpy(mirror_vertex_ids(model.mean_shape.detach().cpu().numpy())).to(device)
    points5 = torch.from_numpy(transform_points(obs.crop_matrix, obs.points5)).to(device)

    def refill(split: HoldoutSplit) -> dict[str, Any]:
        # the statistical texture is re-estimated blind to the hidden pixels: the default model's
        # T_pca copies visible photo colours, and a PCA fit's photometric term sees them too
        blind = face_mask & ~hidden_pixels(screen[0], faces, split.hidden, crop.shape[-2:],
                                             fragments=sampled.fragments)
        refit = recoverer.fitter.fit(replace(obs, crop_face_mask=blind.cpu().numpy()))
        samples = recovery.samples
        kept_scores = samples.coarse_scores * (~split.hidden).to(samples.coarse_scores.dtype)
        coarse = complete_coarse(recoverer.solver, samples.t_uv, kept_scores, refit.t_pca, refit.world_normals,
                                 refit.gamma)
        t_pca, t_coarse = coarse.t_pca, coarse.t_coarse
        if recoverer.inverter is None:
            full, full_is = t_coarse, f"coarse ({recoverer.refine_note})"
        else:
            photo_scores = samples.photo_scores * (~split.hidden).to(samples.photo_scores.dtype)
            full, full_is = _refine(recoverer, recovery, t_coarse, photo_scores), "refined"
        return {"statistical": t_pca, "coarse": t_coarse, "full": full, "full_is": full_is}

    return EvalInputs(
        name=name, crop=crop, face_mask=face_mask, points5=points5, verts_model=fit.vertices, faces=faces,
        angles=fit.angles, translation=fit.translation, camera=camera, t_uv=recovery.samples.t_uv, visible=visible,
        photo_scores=recovery.samples.coarse_scores, mirror_ids=mirror_ids.to(device),
        final=recovery.colors, refill=refill, notes=tuple(recovery.degraded),
    )


def _refine(recoverer: Any, recovery: Any, t_coarse: torch.Tensor, photo_scores: torch.Tensor) -> torch.Tensor:
    """T_refine from a hold-out T_coarse: the refine stage of ``Recoverer.recover``
    (:func:`~mvinvert_cli.refine.refine` with the Recoverer's models and settings) on other inputs."""
    fit = recovery.fit
    inputs = RefineInputs.one(fit.vertices, fit.translation, recovery.samples.t_uv, photo_scores, t_coarse)
    return refine(recoverer.model, recoverer.solver, recoverer.inverter.invert, inputs,
                  recoverer.refine_settings).colors[0]


def recoverer_inputs(recoverer: Any) -> Any:
    """photo path → EvalInputs, recovering with ``recoverer`` (models loaded once)."""

    def make(path: Path) -> EvalInputs:
        return inputs_from_recovery(recoverer.recover(load_image(path)), recoverer, path.name)

    return make
