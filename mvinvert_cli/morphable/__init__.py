"""Morphable face models (MvInvert Eq. 1), their loaders and the fitter.

``MorphableModel`` (model.py) is the record; ``load_model`` picks BFM (bfm.py: BFM 2009 or a ready
Deep3DFaceRecon front model) or the embedded MediaPipe canonical mesh (default.py); ``Fitter``
(fit.py) recovers coefficients, pose and lighting from an Observation (camera and SH shading live in ``render``). Importing this package does not import torch
(the CLI's ``--help`` stays instant); ``MorphableModel`` is loaded on first access.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

__all__ = ["ModelChoice", "MorphableModel", "load_model"]


def __getattr__(name: str) -> Any:
    if name == "MorphableModel":
        from .model import MorphableModel

        return MorphableModel
    raise AttributeError(name)


class ModelChoice(str, Enum):  # noqa: UP042 - Typer lists str-Enum values
    """Which face model: ``auto`` = BFM when its files are in weights/, else the embedded default."""

    auto = "auto"
    bfm = "bfm"
    default = "default"


def load_model(choice: ModelChoice | str = ModelChoice.auto, device: Any = None) -> tuple[Any, list[str]]:
    """Load the chosen model once; returns (``MorphableModel``, notes on the choice).

    Raises:
        WeightsError: ``bfm`` chosen but its files are missing or bad; ``default`` without
            face_landmarker.task.
        UsageError: unknown choice.
    """
    from ..errors import UsageError
    from .bfm import bfm_available, load_bfm
    from .default import load_default_model

    try:
        choice = ModelChoice(choice)
    except ValueError as exc:
        raise UsageError(f"unknown face model {choice!r}; choose auto, bfm or default") from exc
    notes: list[str] = []
    if choice is ModelChoice.auto:
        if bfm_available():
            choice = ModelChoice.bfm
        else:
            notes.append("BFM files not found in weights/: using the embedded default face model "
                         "(MediaPipe canonical mesh; no PCA shape/albedo)")
            choice = ModelChoice.default
    model = load_bfm(device=device) if choice is ModelChoice.bfm else load_default_model(device=device)
    return model, notes
