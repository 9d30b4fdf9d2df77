"""Names of the face-parsing backends (a light module: the CLI imports it for ``--help``)."""

from __future__ import annotations

from enum import Enum


class ParserBackend(str, Enum):  # noqa: UP042 - Typer lists str-Enum values
    """Face parsers: ``auto`` picks ``bisenet`` if 79999_iter.pth is present, else ``polygon``."""

    auto = "auto"
    bisenet = "bisenet"
    polygon = "polygon"
