"""``MorphableModel``: a linear face model (MvInvert Eq. 1) and the geometry helpers every stage uses.

Eq. 1 of the paper (after Deep3DFaceRecon / BFM 2009):

    S = S̄ + C_s·S_base + C_e·E_base          shape, (V, 3)
    T_pca = T̄ + C_T·T_base                   per-vertex albedo, (V, 3) in [0, 1]

Symbols: V vertices, F triangles, Ki/Ke/Kt identity/expression/albedo components, B batch, P the
width of the padded vertex→face adjacency. Model units are decimetres (BFM micrometres / 1e5), the
Deep3DFaceRecon convention that the camera (focal 1015, distance 10) expects.

The same record carries the embedded default model (``morphable/default.py``), which has no PCA:
its identity and expression bases have zero columns, it has no albedo basis (``mean_albedo`` and
``albedo_base`` are None) and its shape is set per photo from dense landmarks through
``embed_ids``/``embed_weights`` (:meth:`MorphableModel.from_points`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

NUM_LANDMARKS = 68


@dataclass(frozen=True)
class MorphableModel:
    """A morphable face model on one device (float32 tensors unless noted).

    Attributes:
        name: "bfm09-front", "bfm-front-mat", "mediapipe-canonical-dense", a test name, ...
        mean_shape: (V, 3) S̄, model space (x right, y up, z towards the camera), decimetres.
        id_base: (V, 3, Ki) identity basis S_base, columns pre-scaled by their standard deviations
            so coefficients are in units of σ (Ki = 0 for the default model).
        exp_base: (V, 3, Ke) expression basis E_base, σ-scaled likewise (Ke may be 0).
        mean_albedo: (V, 3) T̄ RGB in [0, 1], or None when the model has no statistical albedo.
        albedo_base: (V, 3, Kt) T_base in [0, 1] units per σ, or None.
        triangles: int64 (F, 3) vertex ids, counter-clockwise seen from outside (normals outward).
        uvs: (V, 2) per-vertex UVs in [0, 1], u right, v up (OBJ convention).
        landmark_ids: int64 (68,) vertex ids of the iBUG-68 landmarks (iBUG order).
        skin_mask: bool (V,) vertices used for albedo/skin statistics (BFM ``skinmask``).
        front_mask: bool (V,) vertices of the photometric region (BFM ``frontmask2_idx``).
        point_buf: int64 (V, P) faces around each vertex, padded with F (one past the last face),
            the Deep3DFaceRecon ``point_buf`` layout (0-based).
        mirror_ids: int64 (V,) id of each vertex's mirror image across the x = 0 plane, or None.
        embed_ids: int64 (V, 3) for the default model: each vertex is a barycentric combination of
            three of the L = 468 canonical landmarks (see :meth:`from_points`), else None.
        embed_weights: (V, 3) the matching barycentric weights (rows sum to 1), else None.
        coarse_triangles: int64 (Fc, 3) triangles of the L embedding points (the first L vertices of
            the model are those points), or None. When set, :meth:`normals` computes normals on this
            coarse mesh and interpolates them through the embedding (smooth shading of a subdivided
            mesh whose facets are flat).
        coarse_point_buf: int64 (L, Pc) the coarse mesh's ``point_buf`` (padded with Fc), or None.
        notes: provenance remarks (source files, conversions, degraded parts) for result.json.
    """

    name: str
    mean_shape: torch.Tensor
    id_base: torch.Tensor
    exp_base: torch.Tensor
    mean_albedo: torch.Tensor | None
    albedo_base: torch.Tensor | None
    triangles: torch.Tensor
    uvs: torch.Tensor
    landmark_ids: torch.Tensor
    skin_mask: torch.Tensor
    front_mask: torch.Tensor
    point_buf: torch.Tensor
    mirror_ids: torch.Tensor | None = None
    embed_ids: torch.Tensor | None = None
    embed_weights: torch.Tensor | None = None
    coarse_triangles: torch.Tensor | None = None
    coarse_point_buf: torch.Tensor | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        v = self.mean_shape.shape[0]
        checks = {
            "mean_shape": (self.mean_shape.shape, (v, 3)),
            "id_base": (self.id_base.shape[:2], (v, 3)),
            "exp_base": (self.exp_base.shape[:2], (v, 3)),
            "uvs": (self.uvs.shape, (v, 2)),
            "landmark_ids": (self.landmark_ids.shape, (NUM_LANDMARKS,)),
            "skin_mask": (self.skin_mask.shape, (v,)),
            "front_mask": (self.front_mask.shape, (v,)),
        }
        if self.mean_albedo is not None:
            checks["mean_albedo"] = (self.mean_albedo.shape, (v, 3))
        if self.albedo_base is not None:
            checks["albedo_base"] = (self.albedo_base.shape[:2], (v, 3))
        for key, (got, want) in checks.items():
            if tuple(got) != tuple(want):
                raise ValueError(f"MorphableModel.{key}: shape {tuple(got)}, expected {tuple(want)}")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3:
            raise ValueError(f"MorphableModel.triangles: shape {tuple(self.triangles.shape)}, expected (F, 3)")
        if self.point_buf.shape[0] != v:
            raise ValueError(f"MorphableModel.point_buf: {self.point_buf.shape[0]} rows for {v} vertices")

    # ------------------------------------------------------------------ sizes
    @property
    def num_vertices(self) -> int:
        return int(self.mean_shape.shape[0])

    @property
    def num_triangles(self) -> int:
        return int(self.triangles.shape[0])

    @property
    def n_id(self) -> int:
        return int(self.id_base.shape[2])

    @property
    def n_exp(self) -> int:
        return int(self.exp_base.shape[2])

    @property
    def n_tex(self) -> int:
        return 0 if self.albedo_base is None else int(self.albedo_base.shape[2])

    @property
    def has_albedo(self) -> bool:
        return self.mean_albedo is not None

    @property
    def device(self) -> torch.device:
        return self.mean_shape.device

    # ------------------------------------------------------------------ Eq. 1
    def shape(self, id_coeff: torch.Tensor | None = None, exp_coeff: torch.Tensor | None = None) -> torch.Tensor:
        """S = S̄ + S_base·C_s + E_base·C_e (MvInvert Eq. 1).

        Args:
            id_coeff: (B, Ki) or None (zeros); exp_coeff: (B, Ke) or None (zeros).

        Returns:
            (B, V, 3) model-space vertices (B = 1 when both are None).
        """
        batch = next((c.shape[0] for c in (id_coeff, exp_coeff) if c is not None), 1)
        verts = self.mean_shape.expand(batch, -1, -1)
        if id_coeff is not None and self.n_id:
            verts = verts + _apply_basis(self.id_base, id_coeff)  # Eq. 1
        if exp_coeff is not None and self.n_exp:
            verts = verts + _apply_basis(self.exp_base, exp_coeff)  # Eq. 1
        return verts

    def albedo(self, tex_coeff: torch.Tensor | None = None) -> torch.Tensor:
        """T_pca = T̄ + T_base·C_T (MvInvert Eq. 1), (B, V, 3) in [0, 1] (not clamped).

        Raises:
            ValueError: the model has no statistical albedo (the default model: see
                ``morphable/default.py`` for how its T_pca is estimated instead).
        """
        if self.mean_albedo is None:
            raise ValueError(f"model {self.name!r} has no PCA albedo")
        batch = 1 if tex_coeff is None else tex_coeff.shape[0]
        tex = self.mean_albedo.expand(batch, -1, -1)
        if tex_coeff is not None and self.n_tex:
            tex = tex + _apply_basis(self.albedo_base, tex_coeff)  # Eq. 1
        return tex

    def normals(self, vertices: torch.Tensor) -> torch.Tensor:
        """Unit vertex normals (Deep3DFaceRecon ``compute_norm``).

        Face normal = normalise(cross(v1 − v2, v2 − v3)); a zero row is appended as face F (the
        ``point_buf`` padding); the vertex normal is the normalised sum over its adjacent faces.
        With ``coarse_triangles`` (the default model) this runs on the coarse mesh of the first L
        vertices and the result is interpolated to all vertices through the embedding.

        Args:
            vertices: (B, V, 3).

        Returns:
            (B, V, 3).
        """
        if self.coarse_triangles is not None and self.coarse_point_buf is not None:
            coarse = vertex_normals(vertices[:, : self.coarse_point_buf.shape[0]], self.coarse_triangles,
                                    self.coarse_point_buf)
            return F.normalize(self.from_points(coarse), dim=-1)
        return vertex_normals(vertices, self.triangles, self.point_buf)

    def from_points(self, points: torch.Tensor) -> torch.Tensor:
        """Default model: (B, L, 3) landmark positions → (B, V, 3) vertices, Σ_k w_vk·points[id_vk].

        Raises:
            ValueError: the model has no landmark embedding (a PCA model).
        """
        if self.embed_ids is None or self.embed_weights is None:
            raise ValueError(f"model {self.name!r} has no landmark embedding")
        return (points[:, self.embed_ids] * self.embed_weights[None, :, :, None]).sum(dim=2)

    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, C) per-vertex values → (B, 68, C) at the landmark vertices."""
        return vertices[:, self.landmark_ids]

    # ------------------------------------------------------------------ tensor-like
    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> MorphableModel:
        """A copy on ``device``; floating tensors also cast to ``dtype`` when given."""
        changes = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                cast = dtype if (dtype is not None and value.is_floating_point()) else None
                changes[f.name] = value.to(device=device, dtype=cast)
        return replace(self, **changes)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: name, sizes, notes."""
        return {
            "name": self.name, "vertices": self.num_vertices, "triangles": self.num_triangles,
            "n_id": self.n_id, "n_exp": self.n_exp, "n_tex": self.n_tex,
            "has_pca_albedo": self.has_albedo, "notes": list(self.notes),
        }


# ---------------------------------------------------------------------- geometry helpers

def _apply_basis(base: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    """(V, 3, K) basis · (B, K) coefficients → (B, V, 3), as one (3V, K) @ (K, B) product.

    The contiguous (V, 3, K) basis is viewed as (3V, K) without a copy (an einsum would permute it
    into a batched product and copy the whole basis on every call).
    """
    v = base.shape[0]
    return (base.reshape(v * 3, -1) @ coeff.T).T.reshape(coeff.shape[0], v, 3)


def face_normals(vertices: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """(B, V, 3), (F, 3) → unit face normals (B, F, 3): normalise(cross(v1 − v2, v2 − v3))."""
    v1, v2, v3 = (vertices[:, triangles[:, i]] for i in range(3))
    return F.normalize(torch.cross(v1 - v2, v2 - v3, dim=-1), dim=-1)


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor, point_buf: torch.Tensor) -> torch.Tensor:
    """Unit vertex normals (B, V, 3) from face normals gathered through ``point_buf`` (V, P)."""
    fn = face_normals(vertices, triangles)
    fn = torch.cat([fn, fn.new_zeros(fn.shape[0], 1, 3)], dim=1)  # padding face F → zero normal
    return F.normalize(fn[:, point_buf].sum(dim=2), dim=-1)


def build_point_buf(triangles: np.ndarray, num_vertices: int) -> np.ndarray:
    """Vertex→face adjacency (V, P) int64 padded with F, P = the largest vertex valence.

    Vertices with no face get a row of padding only (their normal is then zero).
    """
    tris = np.asarray(triangles, dtype=np.int64)
    n_faces = len(tris)
    vert = tris.reshape(-1)
    face = np.repeat(np.arange(n_faces, dtype=np.int64), 3)
    order = np.argsort(vert, kind="stable")
    vert, face = vert[order], face[order]
    counts = np.bincount(vert, minlength=num_vertices)
    width = max(int(counts.max(initial=0)), 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(vert)) - starts[vert]
    buf = np.full((num_vertices, width), n_faces, dtype=np.int64)
    buf[vert, slot] = face
    return buf


def mirror_vertex_ids(vertices: np.ndarray) -> np.ndarray:
    """(V, 3) symmetric template → (V,) id of the nearest vertex to each mirror image (−x, y, z)."""
    pts = np.asarray(vertices, dtype=np.float64)
    mirrored = pts * np.array([-1.0, 1.0, 1.0])
    _, ids = cKDTree(pts).query(mirrored)
    return ids.astype(np.int64)


def model_from_arrays(
    name: str,
    mean_shape: np.ndarray,
    id_base: np.ndarray,
    exp_base: np.ndarray,
    mean_albedo: np.ndarray | None,
    albedo_base: np.ndarray | None,
    triangles: np.ndarray,
    uvs: np.ndarray,
    landmark_ids: np.ndarray,
    skin_mask: np.ndarray | None = None,
    front_mask: np.ndarray | None = None,
    point_buf: np.ndarray | None = None,
    mirror_ids: np.ndarray | None = None,
    embed_ids: np.ndarray | None = None,
    embed_weights: np.ndarray | None = None,
    coarse_triangles: np.ndarray | None = None,
    notes: tuple[str, ...] = (),
    device: Any = None,
) -> MorphableModel:
    """Build a :class:`MorphableModel` from numpy arrays (0-based indices, shapes as documented there).

    Missing ``skin_mask``/``front_mask`` mean all vertices; a missing ``point_buf`` is built from
    the triangles; ``coarse_triangles`` (default model) also builds the coarse ``point_buf``.
    """
    v = int(np.asarray(mean_shape).reshape(-1, 3).shape[0])
    tris = np.asarray(triangles, dtype=np.int64)
    if tris.size and (tris.min() < 0 or tris.max() >= v):
        raise ValueError(f"triangle index out of range 0..{v - 1}")

    def f32(a: np.ndarray | None) -> torch.Tensor | None:
        return None if a is None else torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32), device=device)

    def i64(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a, dtype=np.int64), device=device)

    def mask(a: np.ndarray | None) -> torch.Tensor:
        arr = np.ones(v, dtype=bool) if a is None else np.asarray(a).reshape(-1).astype(bool)
        return torch.as_tensor(arr, device=device)

    return MorphableModel(
        name=name,
        mean_shape=f32(np.asarray(mean_shape).reshape(v, 3)),
        id_base=f32(np.asarray(id_base).reshape(v, 3, -1)),
        exp_base=f32(np.asarray(exp_base).reshape(v, 3, -1)),
        mean_albedo=None if mean_albedo is None else f32(np.asarray(mean_albedo).reshape(v, 3)),
        albedo_base=None if albedo_base is None else f32(np.asarray(albedo_base).reshape(v, 3, -1)),
        triangles=i64(tris),
        uvs=f32(np.asarray(uvs).reshape(-1, 2)),
        landmark_ids=i64(np.asarray(landmark_ids).reshape(-1)),
        skin_mask=mask(skin_mask),
        front_mask=mask(front_mask),
        point_buf=i64(build_point_buf(tris, v) if point_buf is None else point_buf),
        mirror_ids=None if mirror_ids is None else i64(mirror_ids),
        embed_ids=None if embed_ids is None else i64(embed_ids),
        embed_weights=f32(embed_weights),
        coarse_triangles=None if coarse_triangles is None else i64(coarse_triangles),
        coarse_point_buf=None if coarse_triangles is None else i64(
            build_point_buf(np.asarray(coarse_triangles), int(np.asarray(coarse_triangles).max()) + 1)),
        notes=tuple(notes),
    )
