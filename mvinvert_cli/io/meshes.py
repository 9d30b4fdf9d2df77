"""Mesh files: write OBJ + MTL + PNG (UV texture), PLY (vertex colours) and GLB; read any of them back.

Our meshes carry one UV per vertex, so OBJ faces are written as ``f a/a b/b c/c``. Every file is
written atomically; the texture is PNG-encoded once and the same bytes go to texture.png and into
the GLB (``texture_png``). OBJ text is formatted in one call per section and the GLB is assembled
here (glTF 2.0 binary), so writing a 35k-vertex mesh takes a few tens of milliseconds. Readers
accept other tools' OBJ/PLY/GLB too (through trimesh) and turn any parse failure into a one-line
:class:`~mvinvert_cli.errors.InputError`.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .atomic import atomic_write_bytes, atomic_write_text
from .images import file_kind, to_uint8
from .png import encode_png

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


def _bulk_lines(template: str, rows: np.ndarray) -> str:
    """``template`` (one line, ending in a newline) formatted with every row of ``rows`` in one call."""
    return (template * len(rows)) % tuple(rows.ravel().tolist())


def write_obj(path: str | Path, mesh: TexturedMesh, texture_name: str = "texture.png",
              texture_png: bytes | None = None) -> list[Path]:
    """Write ``mesh.obj`` + ``mesh.mtl`` (+ the texture PNG next to them). Returns the written paths.

    Args:
        texture_png: the texture already encoded (shared with :func:`write_glb`); None encodes it.
    """
    path = Path(path)
    mtl = path.with_suffix(".mtl")
    parts = [f"# mvinvert mesh: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces\nmtllib {mtl.name}\n"]
    if mesh.vertex_colors is not None:  # widely read extension: v x y z r g b
        parts.append(_bulk_lines("v" + " %.6f" * 6 + "\n", np.concatenate([mesh.vertices, mesh.vertex_colors], 1)))
    else:
        parts.append(_bulk_lines("v" + " %.6f" * 3 + "\n", mesh.vertices))
    f = mesh.faces + 1
    if mesh.uvs is not None:
        parts.append(_bulk_lines("vt %.6f %.6f\n", mesh.uvs))
        parts.append("usemtl face\n")
        parts.append(_bulk_lines("f %d/%d %d/%d %d/%d\n", np.repeat(f, 2, axis=1)))
    else:
        parts.append("usemtl face\n")
        parts.append(_bulk_lines("f %d %d %d\n", f))
    written = [atomic_write_text(path, "".join(parts))]
    material = ["newmtl face", "Ka 1 1 1", "Kd 1 1 1", "Ks 0 0 0", "d 1", "illum 1"]
    if mesh.texture is not None:
        material.append(f"map_Kd {texture_name}")
        data = texture_png if texture_png is not None else encode_png(mesh.texture)
        written.append(atomic_write_bytes(path.parent / texture_name, data))
    written.append(atomic_write_text(mtl, "\n".join(material) + "\n"))
    return written


def _trimesh(mesh: TexturedMesh):
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    if mesh.vertex_colors is not None:
        alpha = np.full((len(mesh.vertices), 1), 255, np.uint8)
        tm.visual = trimesh.visual.ColorVisuals(tm, vertex_colors=np.concatenate([to_uint8(mesh.vertex_colors), alpha], 1))
    return tm


def write_ply(path: str | Path, mesh: TexturedMesh) -> Path:
    """Binary PLY with per-vertex RGB colours (``vertex_colors``, else sampled from the texture)."""
    if mesh.vertex_colors is None and mesh.texture is not None and mesh.uvs is not None:
        mesh = TexturedMesh(mesh.vertices, mesh.faces, vertex_colors=sample_texture(mesh.texture, mesh.uvs))
    data = _trimesh(mesh).export(file_type="ply", encoding="binary")
    return atomic_write_bytes(path, data)


def glb_bytes(mesh: TexturedMesh, texture_png: bytes | None = None) -> bytes:
    """Binary glTF 2.0: one triangle primitive with the UV texture embedded as PNG (the same bytes as
    texture.png when ``texture_png`` is given), or with vertex colours when there is no texture.

    glTF puts the UV origin at the top left: v is written as 1 − v.
    """
    textured = mesh.uvs is not None and mesh.texture is not None
    blobs: list[bytes] = []
    views: list[dict] = []
    accessors: list[dict] = []

    def add(data: bytes, **accessor) -> int:
        views.append({"buffer": 0, "byteOffset": sum(len(b) for b in blobs), "byteLength": len(data)})
        blobs.append(data + b"\0" * (-len(data) % 4))  # 4-byte alignment of every view
        if accessor:
            accessors.append({"bufferView": len(views) - 1, **accessor})
        return len(accessors) - 1 if accessor else len(views) - 1

    indices = np.ascontiguousarray(mesh.faces, dtype=np.uint32).reshape(-1)
    positions = np.ascontiguousarray(mesh.vertices, dtype=np.float32)
    primitive: dict = {"attributes": {}, "mode": 4}
    primitive["indices"] = add(indices.tobytes(), componentType=5125, type="SCALAR", count=int(indices.size),
                               min=[int(indices.min(initial=0))], max=[int(indices.max(initial=0))])
    primitive["attributes"]["POSITION"] = add(positions.tobytes(), componentType=5126, type="VEC3",
                                              count=len(positions), min=positions.min(0).tolist(),
                                              max=positions.max(0).tolist())
    tree: dict = {"asset": {"version": "2.0", "generator": "mvinvert"}, "scene": 0, "scenes": [{"nodes": [0]}],
                  "nodes": [{"mesh": 0}], "meshes": [{"primitives": [primitive]}]}
    if textured:
        uv = np.ascontiguousarray(np.stack([mesh.uvs[:, 0], 1.0 - mesh.uvs[:, 1]], 1), dtype=np.float32)
        primitive["attributes"]["TEXCOORD_0"] = add(uv.tobytes(), componentType=5126, type="VEC2", count=len(uv))
        image_view = add(texture_png if texture_png is not None else encode_png(mesh.texture))
        tree.update(images=[{"bufferView": image_view, "mimeType": "image/png"}], textures=[{"source": 0}],
                    materials=[{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0,
                                                         "roughnessFactor": 1.0}}])
        primitive["material"] = 0
    elif mesh.vertex_colors is not None:
        rgba = np.concatenate([to_uint8(mesh.vertex_colors), np.full((len(positions), 1), 255, np.uint8)], 1)
        primitive["attributes"]["COLOR_0"] = add(rgba.tobytes(), componentType=5121, normalized=True, type="VEC4",
                                                 count=len(rgba))
    binary = b"".join(blobs)
    tree.update(buffers=[{"byteLength": len(binary)}], bufferViews=views, accessors=accessors)
    header = json.dumps(tree, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 4)
    total = 12 + 8 + len(header) + 8 + len(binary)
    return b"".join([struct.pack("<4sII", b"glTF", 2, total), struct.pack("<I4s", len(header), b"JSON"), header,
                     struct.pack("<I4s", len(binary), b"BIN\0"), binary])


def write_glb(path: str | Path, mesh: TexturedMesh, texture_png: bytes | None = None) -> Path:
    """Write :func:`glb_bytes` atomically."""
    return atomic_write_bytes(path, glb_bytes(mesh, texture_png))


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
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such mesh file") from exc
    except PermissionError as exc:
        raise InputError(f"{path}: permission denied (a folder on its path cannot be searched)") from exc
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: {file_kind(info.st_mode)}, not a mesh file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied (cannot read the file)")
    if info.st_size == 0:
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

