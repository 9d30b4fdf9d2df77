"""Face parsing: ``FaceParser`` (BiSeNet or landmark polygons) fills an Observation's masks."""

from __future__ import annotations

from typing import Any

from .backends import ParserBackend

__all__ = ["FaceParser", "ParserBackend"]


def __getattr__(name: str) -> Any:
    if name == "FaceParser":
        from .parser import FaceParser

        return FaceParser
    raise AttributeError(name)
