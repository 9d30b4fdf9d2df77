"""Fitting a morphable model to one face: the entry point that picks the algorithm (MvInvert §3.1).

PCA models (BFM layout) are fitted by ``pca_fit`` (landmark/regressor start, then rigid and
non-rigid Adam on landmark + photometric + prior losses); the default model (MediaPipe canonical
mesh, no PCA) by ``dense_fit`` (dense-landmark Procrustes and a closed-form albedo estimate). Both
return a :class:`~mvinvert_cli.morphable.result.FitResult`; :func:`render_overlay` draws it over
the crop.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..align.observation import Observation
from ..config import Settings
from ..render import lighting
from ..render.camera import Camera
from ..render.renderer import Renderer
from .dense_fit import dense_fit_settings, fit_dense
from .model import MorphableModel
from .pca_fit import RASTER_EVERY, check_regressor, fit_pca, pca_fit_settings
from .regressor import Regressor
from .result import FitResult
from .silhouette import silhouette_iou, silhouette_note
from .target import fit_target, target_landmarks

__all__ = ["FitResult", "Fitter", "render_overlay"]


class Fitter:
    """Fits one :class:`MorphableModel` to observations; holds the model (and regressor) on a device.

    Args:
        model: a PCA model (``bfm.load_bfm``) or the default model (``default.load_default_model``).
        settings: the run settings (the fits take their parts: ``pca_fit.pca_fit_settings``,
            ``dense_fit.dense_fit_settings``); defaults to ``Settings()``.
        regressor: optional Deep3DFaceRecon regressor for the initialisation (PCA models with the
            BFM's 80/64/80 components only; ValueError otherwise).
        raster_every: refresh period (steps) of the face-per-pixel map in the non-rigid stage.
    """

    def __init__(self, model: MorphableModel, settings: Settings | None = None,
                 regressor: Regressor | None = None, raster_every: int = RASTER_EVERY) -> None:
        settings = settings or Settings()
        check_regressor(model, regressor)
        self.model = model
        self.regressor = regressor
        self.pca_settings = pca_fit_settings(settings, raster_every)
        self.dense_settings = dense_fit_settings(settings)
        self.render_size = settings.render_size
        self.device = model.device

    def fit(self, observation: Observation) -> FitResult:
        """Fit the model to ``observation`` (crop, crop landmarks, face mask, dense points).

        Raises:
            NoFaceError: the landmarks are not finite.
        """
        landmarks = target_landmarks(observation, self.render_size, self.device)
        if self.model.embed_ids is not None:
            result = fit_dense(self.model, observation, landmarks, self.dense_settings)
        else:
            result = fit_pca(self.model, observation, landmarks, self.pca_settings, self.regressor)
        return self._check_silhouette(observation, result)

    def _check_silhouette(self, observation: Observation, result: FitResult) -> FitResult:
        """Add the silhouette IoU (``silhouette.py``); a note (= a degraded fit) below the threshold."""
        if observation.crop_face_mask is None:
            return result
        camera = Camera().resized(self.render_size)
        mask = fit_target(observation, self.render_size, self.device).face_mask[0]
        iou = silhouette_iou(camera, self.model.triangles, result.world_vertices, mask)
        note = silhouette_note(iou)
        return replace(result, silhouette_iou=iou, notes=result.notes + ((note,) if note else ()))


def render_overlay(model: MorphableModel, result: FitResult, crop: torch.Tensor, textured: bool,
                   grey: float = 0.7) -> torch.Tensor:
    """The fitted face drawn over the crop (Deep3DFaceRecon-style check image).

    Args:
        model: the fitted model (for triangles); result: its fit.
        crop: (1, 3, S, S) the fitting crop in [0, 1].
        textured: shade T_pca (True) or a uniform ``grey`` albedo (False) with the fitted SH light.

    Returns:
        (1, 3, S, S) in [0, 1]: the shaded render where the face covers a pixel, the crop elsewhere.
    """
    albedo = result.t_pca if textured else torch.full_like(result.t_pca, grey)
    albedo = torch.nan_to_num(albedo, nan=grey)
    colors = lighting.shade(albedo[None], result.world_normals[None], result.gamma[None])
    rendering = Renderer(size=crop.shape[-1]).render(result.world_vertices[None], model.triangles, colors)
    return (rendering.image.clamp(0, 1) * rendering.alpha + crop * (1 - rendering.alpha)).clamp(0, 1)
