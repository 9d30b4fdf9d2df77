"""Face parsing: ``FaceParser`` (BiSeNet or landmark polygons) fills an Observation's masks."""

from .parser import FaceParser, ParserBackend

__all__ = ["FaceParser", "ParserBackend"]
