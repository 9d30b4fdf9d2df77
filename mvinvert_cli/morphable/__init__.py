"""Morphable face models (MvInvert Eq. 1), their loader and the fits.

``MorphableModel`` (model.py) is the record; ``loading.load_face_model`` picks BFM (bfm.py: BFM 2009
or a ready Deep3DFaceRecon front model) or the embedded MediaPipe canonical mesh (default.py) and the
Deep3DFaceRecon regressor (regressor.py); ``fit.Fitter`` recovers coefficients, pose and lighting
from an Observation with ``pca_fit`` (PCA models) or ``dense_fit`` (the default model), both built on
``pose`` and returning a ``result.FitResult`` (camera and SH shading live in ``render``). Importing
this package does not import torch (the CLI's ``--help`` stays instant); ``MorphableModel`` is
loaded on first access.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

__all__ = ["ModelChoice", "MorphableModel"]


def __getattr__(name: str) -> Any:
    if name == "MorphableModel":
        from .model import MorphableModel  # lazy: keeps torch out of the CLI's start-up

        return MorphableModel
    raise AttributeError(name)


class ModelChoice(str, Enum):  # noqa: UP042 - Typer lists str-Enum values
    """Which face model: ``auto`` = BFM when its files are in weights/, else the embedded default."""

    auto = "auto"
    bfm = "bfm"
    default = "default"

