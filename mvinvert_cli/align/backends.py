"""Names of the landmark backends (a light module: the CLI imports it for ``--help``)."""

from __future__ import annotations

from enum import Enum


class AlignerBackend(str, Enum):  # noqa: UP042 - Typer lists str-Enum values
    """Landmark backends: ``auto`` picks ``fan`` if its weights are present, else ``mediapipe``."""

    auto = "auto"
    mediapipe = "mediapipe"
    fan = "fan"
