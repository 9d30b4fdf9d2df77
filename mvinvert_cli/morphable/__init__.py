"""Morphable face models (MvInvert Eq. 1), their loaders and the fitter.

``MorphableModel`` (model.py) is the record; ``load_bfm`` (bfm.py) reads BFM 2009 or a ready
Deep3DFaceRecon front model; ``load_default_model`` (default.py) builds the embedded MediaPipe
canonical mesh; ``Fitter`` (fit.py) recovers coefficients, pose and lighting from an Observation.
Submodules are imported lazily by their users (camera.py and lighting.py belong to the renderer).
"""

from .model import MorphableModel

__all__ = ["MorphableModel"]
