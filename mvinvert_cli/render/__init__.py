"""Rendering: our vectorised rasteriser (PyTorch3D-compatible fragments), shading, views, UV space."""
