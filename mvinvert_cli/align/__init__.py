"""Face alignment: ``Aligner`` (FAN or MediaPipe) → ``Observation`` (68 landmarks, 5 points, crop).

Names load lazily so that importing :mod:`mvinvert_cli.align.backends` (for ``--help``) stays
cheap.
"""

from __future__ import annotations

from typing import Any

from .backends import AlignerBackend

__all__ = ["Aligner", "AlignerBackend", "CROP_SIZE", "Observation"]


def __getattr__(name: str) -> Any:
    if name == "Aligner":
        from .aligner import Aligner

        return Aligner
    if name in ("Observation", "CROP_SIZE"):
        from . import observation

        return getattr(observation, name)
    raise AttributeError(name)
