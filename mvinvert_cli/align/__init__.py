"""Face alignment: ``Aligner`` (FAN or MediaPipe) → ``Observation`` (68 landmarks, 5 points, crop)."""

from .aligner import Aligner, AlignerBackend
from .observation import CROP_SIZE, Observation

__all__ = ["Aligner", "AlignerBackend", "CROP_SIZE", "Observation"]
