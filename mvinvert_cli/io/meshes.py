"""Mesh files: write OBJ + MTL + PNG (UV texture), PLY (vertex colours) and GLB; read any of them back.

Our meshes carry one UV per vertex, so OBJ faces are written as ``f a/a b/b c/c``. Every file is
written atomically. Readers accept other tools' OBJ/PLY/GLB too (through trimesh) and turn any
parse failure into a one-line :class:`~mvinvert_cli.errors.InputError`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from .atomic import atomic_write, atomic_write_bytes, atomic_write_text
from .images import to_uint8

MESH_SUFFIXES = frozenset({".obj", ".ply", ".glb", ".gltf", ".off", ".stl"})


@dataclass
class TexturedMesh:
    """A triangle mesh with a UV texture and/or vertex colours (numpy, float32/int64).

    Attributes:
        vertices: (V, 3) positions.
        faces: (F, 3) vertex indices, 0-based.
        uvs: (V, 2) per-vertex UVs in [0, 1], v up (OBJ convention), or None.
        texture: (S, S, 3) float RGB in [0, 1] addressed by ``uvs``, or None.
        vertex_colors: (V, 3) float RGB in [0, 1], or None.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray | None = None
    texture: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float32).reshape(-1, 3)
        self.faces = np.asarray(self.faces, dtype=np.int64).reshape(-1, 3)
        if self.uvs is not None:
            self.uvs = np.asarray(self.uvs, dtype=np.float32).reshape(-1, 2)
        if self.vertex_colors is not None:
            self.vertex_colors = np.clip(np.asarray(self.vertex_colors, dtype=np.float32).reshape(-1, 3), 0, 1)


def _png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(to_uint8(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def write_obj(path: str | Path, mesh: TexturedMesh, texture_name: str = "texture.png") -> list[Path]:
    """Write ``mesh.obj`` + ``mesh.mtl`` (+ the texture PNG next to them). Returns the written paths."""
    path = Path(path)
    mtl = path.with_suffix(".mtl")
    lines = [f"# mvinvert mesh: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces", f"mtllib {mtl.name}"]
    v = mesh.vertices
    if mesh.vertex_colors is not None:  # widely read extension: v x y z r g b
        body = np.concatenate([v, mesh.vertex_colors], axis=1)
        lines += [("v" + " %.6f" * 6) % tuple(row) for row in body]
    else:
        lines += [("v" + " %.6f" * 3) % tuple(row) for row in v]
    f = mesh.faces + 1
    if mesh.uvs is not None:
        lines += [("vt" + " %.6f" * 2) % tuple(row) for row in mesh.uvs]
        lines.append("usemtl face")
        lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in f]
    else:
        lines.append("usemtl face")
        lines += [f"f {a} {b} {c}" for a, b, c in f]
    written = [atomic_write_text(path, "\n".join(lines) + "\n")]
    material = ["newmtl face", "Ka 1 1 1", "Kd 1 1 1", "Ks 0 0 0", "d 1", "illum 1"]
    if mesh.texture is not None:
        material.append(f"map_Kd {texture_name}")
        written.append(atomic_write_bytes(path.parent / texture_name, _png_bytes(mesh.texture)))
    written.append(atomic_write_text(mtl, "\n".join(material) + "\n"))
    return written


def _trimesh(mesh: TexturedMesh, with_texture: bool):
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    if with_texture and mesh.uvs is not None and mesh.texture is not None:
        material = trimesh.visual.material.PBRMaterial(
            baseColorTexture=Image.fromarray(to_uint8(mesh.texture)), metallicFactor=0.0, roughnessFactor=1.0
        )
        tm.visual = trimesh.visual.TextureVisuals(uv=mesh.uvs, material=material)
    elif mesh.vertex_colors is not None:
        alpha = np.full((len(mesh.vertices), 1), 255, np.uint8)
        tm.visual = trimesh.visual.ColorVisuals(tm, vertex_colors=np.concatenate([to_uint8(mesh.vertex_colors), alpha], 1))
    return tm


def write_ply(path: str | Path, mesh: TexturedMesh) -> Path:
    """Binary PLY with per-vertex RGB colours (``vertex_colors``, else sampled from the texture)."""
    if mesh.vertex_colors is None and mesh.texture is not None and mesh.uvs is not None:
        mesh = TexturedMesh(mesh.vertices, mesh.faces, vertex_colors=sample_texture(mesh.texture, mesh.uvs))
    data = _trimesh(mesh, with_texture=False).export(file_type="ply", encoding="binary")
    return atomic_write_bytes(path, data)


def write_glb(path: str | Path, mesh: TexturedMesh) -> Path:
    """Binary glTF with the UV texture embedded (or vertex colours when there is no texture)."""
    data = _trimesh(mesh, with_texture=True).export(file_type="glb")
    return atomic_write_bytes(path, data)


def sample_texture(texture: np.ndarray, uvs: np.ndarray) -> np.ndarray:
    """Bilinear lookup of (V,2) UVs (v up) in an (S,S,3) texture → (V,3)."""
    h, w = texture.shape[:2]
    x = np.clip(uvs[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip((1.0 - uvs[:, 1]) * h - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = texture[y0, x0] * (1 - fx) + texture[y0, x1] * fx
    bottom = texture[y1, x0] * (1 - fx) + texture[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def read_mesh(path: str | Path) -> TexturedMesh:
    """Read OBJ/PLY/GLB/OFF/STL (ours or another tool's) with UV texture or vertex colours.

    Raises:
        InputError: missing, empty, unparsable, or without triangles.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such mesh file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise InputError(f"{path}: unsupported mesh format {path.suffix or '(none)'}; use OBJ, PLY or GLB")
    try:
        loaded = trimesh.load(path, process=False, maintain_order=True)
        if isinstance(loaded, trimesh.Scene):
            geoms = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)]
            if not geoms:
                raise InputError(f"{path}: no triangle mesh inside")
            loaded = geoms[0] if len(geoms) == 1 else trimesh.util.concatenate(geoms)
        if not isinstance(loaded, trimesh.Trimesh):
            raise InputError(f"{path}: not a triangle mesh ({type(loaded).__name__})")
        vertices = np.asarray(loaded.vertices, dtype=np.float32)
        faces = np.asarray(loaded.faces, dtype=np.int64)
    except InputError:
        raise
    except Exception as exc:  # trimesh raises many types on malformed files
        raise InputError(f"{path}: cannot parse mesh ({type(exc).__name__})") from exc
    if len(faces) == 0 or len(vertices) == 0:
        raise InputError(f"{path}: mesh has no triangles")
    if not np.isfinite(vertices).all():
        raise InputError(f"{path}: mesh has non-finite vertex positions")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise InputError(f"{path}: face indices out of range")
    uvs = texture = colors = None
    visual = loaded.visual
    try:
        if getattr(visual, "kind", None) == "texture" and getattr(visual, "uv", None) is not None:
            uvs = np.asarray(visual.uv, dtype=np.float32)
            image = getattr(visual.material, "baseColorTexture", None) or getattr(visual.material, "image", None)
            if image is not None:
                texture = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
            else:
                uvs = None
        if texture is None and getattr(visual, "kind", None) == "vertex":
            colors = np.asarray(visual.vertex_colors, dtype=np.float32)[:, :3] / 255.0
    except Exception as exc:
        raise InputError(f"{path}: unreadable material or colours ({type(exc).__name__})") from exc
    if uvs is not None and len(uvs) != len(vertices):
        uvs = texture = None
    return TexturedMesh(vertices, faces, uvs, texture, colors)


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(_png_bytes(rgb)))
