"""The record every face-model fit returns (MvInvert §3.1): coefficients, pose, SH light, geometry.

Both fitting algorithms (``pca_fit`` for BFM-layout models, ``dense_fit`` for the default canonical
mesh) return a :class:`FitResult`; :func:`assemble_result` builds it from the fitted parameters and
adds the landmark reprojection error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..render.camera import Camera, rotation_matrix
from .model import MorphableModel


@dataclass(frozen=True)
class FitParameters:
    """Fitted parameters, each (1, K) as the optimisers hold them (K = 0 for absent components).

    Attributes:
        id, exp, tex: identity α, expression β and albedo δ coefficients (σ units).
        angles: (1, 3) rotation angles (x, y, z) in radians; trans: (1, 3) world translation.
        gamma: (1, 27) SH lighting (R, G, B blocks of 9).
    """

    id: torch.Tensor
    exp: torch.Tensor
    tex: torch.Tensor
    angles: torch.Tensor
    trans: torch.Tensor
    gamma: torch.Tensor


@dataclass(frozen=True)
class FitResult:
    """A fitted face in the Deep3DFaceRecon camera (224×224 crop; world = decimetres).

    Attributes:
        model_name: :attr:`MorphableModel.name` of the fitted model.
        id_coeff: (Ki,) identity coefficients α (σ units; empty for the default model).
        exp_coeff: (Ke,) expression coefficients β.
        tex_coeff: (Kt,) albedo coefficients δ (empty when the model has no PCA albedo).
        angles: (3,) rotation angles (x, y, z) in radians, R = Rz·Ry·Rx (``camera.rotation_matrix``).
        translation: (3,) world translation; world = v·Rᵀ + t.
        gamma: (27,) SH lighting, R block, G block, B block of 9 (ambient 0.8 added by the shader).
        vertices: (V, 3) model-space vertices after shape and expression (Eq. 1).
        world_vertices: (V, 3) vertices in world/camera space (``camera.transform``).
        normals: (V, 3) unit model-space vertex normals (rotate by R for world normals).
        t_pca: (V, 3) per-vertex albedo T_pca in [0, 1] (Eq. 1 for PCA models; the estimated
            statistical fill for the default model).
        landmarks_2d: (68, 2) projected model landmarks in crop pixels (screen convention).
        target_landmarks: (68, 2) the observed landmarks in crop pixels.
        losses: scalar diagnostics: ``landmark_px`` (mean reprojection error, px), ``photo_initial``
            / ``photo_final`` (L_photo before/after fitting, when computed), ``total``.
        backend: how the fit was made ("adam" for PCA models, "dense-landmarks" for the default).
        init: initialisation ("landmarks-pnp": PnP + linear shape fit to the 68 landmarks, "regressor",
            "dense-procrustes" and "pnp-68" for the default model).
        timings: seconds per stage.
        notes: degraded paths and remarks for result.json.
        silhouette_iou: IoU of the rendered mesh and the parser's face mask in the crop
            (``silhouette.py``), or None when the observation has no face mask.
    """

    model_name: str
    id_coeff: torch.Tensor
    exp_coeff: torch.Tensor
    tex_coeff: torch.Tensor
    angles: torch.Tensor
    translation: torch.Tensor
    gamma: torch.Tensor
    vertices: torch.Tensor
    world_vertices: torch.Tensor
    normals: torch.Tensor
    t_pca: torch.Tensor
    landmarks_2d: torch.Tensor
    target_landmarks: torch.Tensor
    losses: dict[str, float] = field(default_factory=dict)
    backend: str = ""
    init: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    silhouette_iou: float | None = None

    @property
    def rotation(self) -> torch.Tensor:
        """(3, 3) R = Rz·Ry·Rx."""
        return rotation_matrix(self.angles)

    @property
    def world_normals(self) -> torch.Tensor:
        """(V, 3) normals rotated into world space."""
        return self.normals @ self.rotation.T

    def coefficients(self) -> torch.Tensor:
        """Deep3DFaceRecon layout: id | exp | tex | angles | gamma | translation (257 for BFM)."""
        return torch.cat([self.id_coeff, self.exp_coeff, self.tex_coeff, self.angles, self.gamma,
                          self.translation])

    def arrays(self) -> dict[str, np.ndarray]:
        """numpy arrays for ``fit.npz``."""
        names = ("id_coeff", "exp_coeff", "tex_coeff", "angles", "translation", "gamma", "vertices",
                 "world_vertices", "normals", "t_pca", "landmarks_2d", "target_landmarks")
        out = {n: getattr(self, n).detach().cpu().numpy() for n in names}
        out["coefficients"] = self.coefficients().detach().cpu().numpy()
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-ready: model, backend, pose in degrees, coefficient vectors, losses, timings, notes."""
        def rounded(t: torch.Tensor, digits: int = 5) -> list[float]:
            return [round(float(x), digits) for x in t.detach().cpu().reshape(-1)]

        return {
            "model": self.model_name, "backend": self.backend, "init": self.init,
            "angles_deg": rounded(torch.rad2deg(self.angles), 3), "translation": rounded(self.translation),
            "id": rounded(self.id_coeff), "exp": rounded(self.exp_coeff), "tex": rounded(self.tex_coeff),
            "gamma": rounded(self.gamma), "losses": {k: round(v, 6) for k, v in self.losses.items()},
            "timings": {k: round(v, 4) for k, v in self.timings.items()}, "notes": list(self.notes),
            "silhouette_iou": None if self.silhouette_iou is None else round(self.silhouette_iou, 4),
        }


def assemble_result(model: MorphableModel, camera: Camera, params: FitParameters, verts: torch.Tensor,
                    world: torch.Tensor, t_pca: torch.Tensor, landmarks: torch.Tensor, losses: dict[str, float],
                    backend: str, init: str, timings: dict[str, float], notes: list[str]) -> FitResult:
    """The :class:`FitResult` of fitted ``params``; adds ``landmark_px`` and ``timings["total"]``.

    Args:
        verts, world: (V, 3) model-space and world-space vertices; t_pca: (V, 3) albedo.
        landmarks: (68, 2) target landmarks in render pixels.
    """
    normals = model.normals(verts[None])[0]
    projected = camera.project(world[model.landmark_ids])[:, :2]
    losses["landmark_px"] = float((projected - landmarks).norm(dim=-1).mean())
    timings["total"] = sum(timings.values())
    return FitResult(
        model_name=model.name, id_coeff=params.id.detach()[0], exp_coeff=params.exp.detach()[0],
        tex_coeff=params.tex.detach()[0], angles=params.angles.detach()[0],
        translation=params.trans.detach()[0], gamma=params.gamma.detach()[0], vertices=verts.detach(),
        world_vertices=world.detach(), normals=normals.detach(), t_pca=t_pca.detach(),
        landmarks_2d=projected.detach(), target_landmarks=landmarks.detach(), losses=losses,
        backend=backend, init=init, timings=timings, notes=tuple(notes),
    )
