"""Rendering, the layer under everything: the Deep3DFaceRecon camera and pose (camera.py), SH
lighting (lighting.py), our vectorised rasteriser with PyTorch3D-compatible fragments (rasterize.py),
the ``Renderer`` and synthetic view poses (renderer.py) and the UV bake (bake.py).

Imported by morphable, texture, invert, train and the pipeline; imports none of them.
"""
