"""The one place that chooses and loads the face model and its Deep3DFaceRecon regressor.

``auto`` takes BFM 2009 (``bfm.load_bfm``) when its files are in weights/, else the embedded MediaPipe
canonical mesh (``default.load_default_model``, a recorded degradation); the regressor
(``regressor.load_regressor``, ``epoch_20.pth``) initialises the PCA fit when it is installed and the
model has its 80 / 64 / 80 identity / expression / albedo components.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UsageError
from ..weights import locate
from . import ModelChoice
from .bfm import bfm_available, load_bfm
from .default import load_default_model
from .model import MorphableModel
from .pca_fit import REGRESSOR_SIZES
from .regressor import Regressor, load_regressor


@dataclass(frozen=True)
class FaceModel:
    """A loaded face model.

    Attributes:
        model: the morphable model on its device.
        regressor: the Deep3DFaceRecon initialisation, or None (not installed, not wanted, or a
            model it does not fit).
        degraded: degraded choices (``auto`` without BFM files) for result.json.
        notes: remarks on the choice (which regressor initialises the fit).
    """

    model: MorphableModel
    regressor: Regressor | None
    degraded: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def resolve_choice(choice: ModelChoice | str) -> tuple[ModelChoice, tuple[str, ...]]:
    """``auto`` → ``bfm`` when its files are present, else ``default`` (with the degradation note).

    Raises:
        UsageError: unknown choice.
    """
    try:
        choice = ModelChoice(choice)
    except ValueError as exc:
        raise UsageError(f"unknown face model {choice!r}; choose auto, bfm or default") from exc
    if choice is not ModelChoice.auto:
        return choice, ()
    if bfm_available():
        return ModelChoice.bfm, ()
    return ModelChoice.default, ("BFM 2009 not found in weights/; embedded MediaPipe canonical mesh "
                                 "(no PCA shape/albedo)",)


def load_face_model(choice: ModelChoice | str = ModelChoice.auto, device: torch.device | str | None = None,
                    trust_pickle: bool = False, use_regressor: bool = True) -> FaceModel:
    """Load the chosen model once, and the regressor when it applies.

    Raises:
        WeightsError: ``bfm`` chosen but its files are missing or bad; ``default`` without
            face_landmarker.task; a present regressor checkpoint is unusable.
        UsageError: unknown choice.
    """
    resolved, degraded = resolve_choice(choice)
    model = load_bfm(device=device) if resolved is ModelChoice.bfm else load_default_model(device=device)
    regressor, notes = None, ()
    fits = model.embed_ids is None and (model.n_id, model.n_exp, model.n_tex) == REGRESSOR_SIZES
    path = locate("deep3d") if use_regressor and fits else None
    if path is not None:
        regressor = load_regressor(path, device=device, trust_pickle=trust_pickle)
        notes = (f"initialised by the Deep3DFaceRecon regressor ({regressor.source})",)
    return FaceModel(model, regressor, degraded, notes)
