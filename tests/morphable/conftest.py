"""Tiny synthetic BFM 2009 files in the real layouts (key names, 1-based indices, Exp_Pca.bin bytes).

The "front model" is a smooth face-like cap (a grid on an ellipsoid with a nose bump) of V vertices.
It is hidden inside an expression topology (V + extra vertices, shuffled) which is itself hidden
inside a "full BFM09" topology (more extra vertices, shuffled), exactly like the 35,709 → 53,215 →
53,490 chain, so a loader that gets any index convention wrong reads the junk vertices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.io

GRID_X, GRID_Y = 26, 30
N_ID_ALL, N_TEX_ALL, N_EXP_ALL = 12, 9, 7  # stored components (all kept: fewer than 80/64/80)


@dataclass
class TinyBFM:
    """Paths of the written files and the front-model arrays they must load as (0-based)."""

    paths: dict[str, Path]
    mean: np.ndarray  # (V, 3) decimetres, not recentred
    id_base: np.ndarray  # (V, 3, Ki)
    exp_base: np.ndarray  # (V, 3, Ke)
    mean_tex: np.ndarray  # (V, 3) 0..255
    tex_base: np.ndarray  # (V, 3, Kt) 0..255 per σ
    tri: np.ndarray  # (F, 3) 0-based
    uvs: np.ndarray  # (V, 2)
    keypoints: np.ndarray  # (68,) 0-based
    skin: np.ndarray  # (V,) bool


def grid_face(nx: int = GRID_X, ny: int = GRID_Y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A face-like cap: vertices (V, 3) in decimetres, triangles (F, 3) outward-facing, uvs (V, 2)."""
    u, v = np.meshgrid(np.linspace(0, 1, nx), np.linspace(0, 1, ny))
    x = (u - 0.5) * 1.5
    y = (v - 0.5) * 1.8
    z = 0.45 * np.sqrt(np.clip(1 - (x / 0.95) ** 2 - (y / 1.15) ** 2, 0.05, None))
    z = z + 0.22 * np.exp(-((x / 0.12) ** 2 + ((y + 0.05) / 0.25) ** 2))  # nose
    z = z - 0.05 * np.exp(-(((np.abs(x) - 0.3) / 0.12) ** 2 + ((y - 0.25) / 0.08) ** 2))  # eye sockets
    verts = np.stack([x, y, z], -1).reshape(-1, 3)
    ids = np.arange(nx * ny).reshape(ny, nx)
    a, b, c, d = ids[:-1, :-1], ids[:-1, 1:], ids[1:, :-1], ids[1:, 1:]
    tris = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    uvs = np.stack([u, v], -1).reshape(-1, 2)
    return verts, tris.astype(np.int64), uvs


def smooth_basis(verts: np.ndarray, k: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """(V, 3, k) random smooth deformation fields: polynomials of x, y of degree 2–3 (no constant or
    linear terms, which would mimic a rigid motion and make the pose ambiguous)."""
    x, y = verts[:, 0], verts[:, 1]
    feats = np.stack([x * y, x ** 2, y ** 2, x ** 2 * y, x * y ** 2, x ** 3, y ** 3, x ** 2 * y ** 2], 1)  # (V, 8)
    coef = rng.normal(size=(8, 3, k))
    base = np.einsum("vf,fck->vck", feats, coef)
    return base / np.abs(base).max(axis=(0, 1), keepdims=True) * scale


def landmark_vertices(verts: np.ndarray) -> np.ndarray:
    """68 distinct vertex ids spread over the face, nearest to a jaw/brow/eye/nose/mouth layout."""
    t = np.linspace(-1, 1, 17)
    jaw = np.stack([0.62 * np.sin(t * 1.3), -0.1 - 0.65 * np.cos(t * 1.3) * 0.9], 1)
    brow = np.stack([np.linspace(-0.5, -0.1, 5), np.full(5, 0.45)], 1)
    brow2 = brow * [-1, 1]
    nose = np.stack([np.zeros(4), np.linspace(0.3, -0.05, 4)], 1)
    nostril = np.stack([np.linspace(-0.15, 0.15, 5), np.full(5, -0.15)], 1)
    ang = np.linspace(0, 2 * np.pi, 7)[:-1]
    eye_r = np.stack([-0.3 + 0.13 * np.cos(ang + np.pi), 0.25 + 0.04 * np.sin(ang)], 1)
    eye_l = np.stack([0.3 + 0.13 * np.cos(ang), 0.25 + 0.04 * np.sin(ang)], 1)
    ang12 = np.linspace(0, 2 * np.pi, 13)[:-1]
    mouth = np.stack([0.28 * np.cos(ang12 + np.pi), -0.42 + 0.09 * np.sin(ang12)], 1)
    ang8 = np.linspace(0, 2 * np.pi, 9)[:-1]
    inner = np.stack([0.18 * np.cos(ang8 + np.pi), -0.42 + 0.035 * np.sin(ang8)], 1)
    targets = np.concatenate([jaw, brow, brow2[::-1], nose, nostril, eye_r, eye_l, mouth, inner])
    d = np.linalg.norm(verts[None, :, :2] - targets[:, None], axis=2)
    ids = []
    for row in d:
        order = np.argsort(row)
        ids.append(next(int(i) for i in order if int(i) not in ids))
    return np.asarray(ids, dtype=np.int64)


def point_buf_1based(tri0: np.ndarray, v: int) -> np.ndarray:
    width = np.bincount(tri0.reshape(-1), minlength=v).max()
    buf = np.full((v, width), len(tri0) + 1, dtype=np.float32)  # padding F + 1 (1-based)
    fill = np.zeros(v, dtype=np.int64)
    for f, t in enumerate(tri0):
        for i in t:
            buf[i, fill[i]] = f + 1
            fill[i] += 1
    return buf


def write_exp_pca(path: Path, exp_mu: np.ndarray, exp_pc: np.ndarray) -> None:
    """Exp_Pca.bin: int32 exp_dim, float32 expMU (3N), float32 expPC PC-major (exp_dim × 3N)."""
    with open(path, "wb") as handle:
        handle.write(np.asarray([exp_pc.shape[1]], dtype="<i4").tobytes())
        handle.write(exp_mu.astype("<f4").tobytes())
        handle.write(exp_pc.T.astype("<f4").tobytes())  # PC-major


def make_tiny_bfm(directory: Path, seed: int = 0, full_uv: bool = True) -> TinyBFM:
    rng = np.random.default_rng(seed)
    verts, tri, uvs = grid_face()
    v = len(verts)
    n_exp_topo = v + 40
    n_full = n_exp_topo + 50
    # front vertex i lives at exp-topology slot idx[i]; exp slot j lives at full slot trim[j]
    idx = rng.permutation(n_exp_topo)[:v]
    trim = rng.permutation(n_full)[:n_exp_topo]
    full_of_front = trim[idx]

    shape_ev = np.linspace(3.0, 0.5, N_ID_ALL)
    tex_ev = np.linspace(20.0, 4.0, N_TEX_ALL)
    exp_ev = np.linspace(2.0, 0.4, N_EXP_ALL)
    id_base = smooth_basis(verts, N_ID_ALL, 0.04, rng)  # dm per σ
    exp_base = smooth_basis(verts, N_EXP_ALL, 0.03, rng)
    mean_tex = np.clip(np.array([190.0, 140.0, 120.0]) + 25 * np.sin(verts[:, :1] * 6 + np.arange(3)), 0, 255)
    tex_base = smooth_basis(verts, N_TEX_ALL, 25.0, rng)

    junk = lambda n, *shape: rng.normal(size=(n, *shape)) * 1e3  # noqa: E731
    shape_mu = junk(n_full, 3) * 1e5
    shape_mu[full_of_front] = verts * 1e5
    shape_pc = junk(n_full, 3, N_ID_ALL)
    shape_pc[full_of_front] = id_base / shape_ev * 1e5
    tex_mu = junk(n_full, 3)
    tex_mu[full_of_front] = mean_tex
    tex_pc = junk(n_full, 3, N_TEX_ALL)
    tex_pc[full_of_front] = tex_base / tex_ev
    exp_pc = junk(n_exp_topo, 3, N_EXP_ALL)
    exp_pc[idx] = exp_base / exp_ev * 1e5

    paths = {name: directory / name for name in (
        "01_MorphableModel.mat", "Exp_Pca.bin", "BFM_front_idx.mat", "BFM_exp_idx.mat", "facemodel_info.mat",
        "std_exp.txt", "BFM_UV.mat")}
    scipy.io.savemat(paths["01_MorphableModel.mat"], {
        "shapeMU": shape_mu.reshape(-1, 1).astype(np.float32),
        "shapePC": shape_pc.reshape(-1, N_ID_ALL).astype(np.float32),
        "shapeEV": shape_ev.reshape(-1, 1).astype(np.float32),
        "texMU": tex_mu.reshape(-1, 1).astype(np.float32),
        "texPC": tex_pc.reshape(-1, N_TEX_ALL).astype(np.float32),
        "texEV": tex_ev.reshape(-1, 1).astype(np.float32),
        "tl": (rng.integers(0, n_full, size=(30, 3)) + 1).astype(np.float64),
    })
    write_exp_pca(paths["Exp_Pca.bin"], junk(n_exp_topo * 3).astype(np.float32), exp_pc.reshape(-1, N_EXP_ALL))
    scipy.io.savemat(paths["BFM_front_idx.mat"], {"idx": (idx + 1).reshape(-1, 1).astype(np.float32)})
    scipy.io.savemat(paths["BFM_exp_idx.mat"], {"trimIndex": (trim + 1).reshape(-1, 1).astype(np.uint16)})
    keypoints = landmark_vertices(verts)
    skin = (np.abs(verts[:, 0]) < 0.55) & (np.abs(verts[:, 1]) < 0.75)
    front_ids = np.nonzero(np.abs(verts[:, 1]) < 0.8)[0]
    scipy.io.savemat(paths["facemodel_info.mat"], {
        "tri": (tri + 1).astype(np.float32),
        "keypoints": (keypoints + 1).reshape(1, -1).astype(np.float32),
        "point_buf": point_buf_1based(tri, v),
        "frontmask2_idx": (front_ids + 1).reshape(-1, 1).astype(np.float32),
        "tri_mask2": (tri[:10] + 1).astype(np.float32),
        "skinmask": skin.reshape(1, -1).astype(np.float32),
    })
    paths["std_exp.txt"].write_text(" ".join(f"{e:.6f}" for e in exp_ev) + "\n")
    if full_uv:  # 3DMMasSTN layout: rows on the full topology
        uv_full = rng.uniform(size=(n_full, 2))
        uv_full[full_of_front] = uvs
    else:  # 3DDFA_V2 layout: rows on the expression topology
        uv_full = rng.uniform(size=(n_exp_topo, 2))
        uv_full[idx] = uvs
    scipy.io.savemat(paths["BFM_UV.mat"], {"UV": uv_full.astype(np.float64)})
    return TinyBFM(
        paths=paths, mean=verts, id_base=id_base, exp_base=exp_base,
        mean_tex=mean_tex, tex_base=tex_base, tri=tri, uvs=uvs, keypoints=keypoints, skin=skin,
    )


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every fitting test runs on one torch thread (``one_torch_thread``)."""


@pytest.fixture
def tiny_bfm(tmp_path: Path) -> TinyBFM:
    return make_tiny_bfm(tmp_path)


def rotation_error_deg(a, b) -> float:
    """Angle (degrees) of the rotation between the poses with angles ``a`` and ``b`` (each (3,))."""
    from mvinvert_cli.render.camera import rotation_matrix

    r = rotation_matrix(a).T @ rotation_matrix(b)
    return math.degrees(math.acos(float(((r.trace() - 1) / 2).clamp(-1, 1))))


def make_observation(crop: np.ndarray, landmarks: np.ndarray, face_mask: np.ndarray | None = None,
                     dense: np.ndarray | None = None):
    """An Observation whose photo IS the 224×224 crop (identity crop matrix)."""
    from mvinvert_cli.align.ibug import five_points
    from mvinvert_cli.align.observation import Observation
    from mvinvert_cli.io.images import Photo

    crop = np.asarray(crop, dtype=np.float32)
    lm = np.asarray(landmarks, dtype=np.float32)
    return Observation(
        photo=Photo(rgb=crop, original_size=(crop.shape[1], crop.shape[0])),
        box=np.array([*lm.min(0), *lm.max(0)], dtype=np.float32),
        landmarks=lm,
        points5=five_points(lm),
        crop_matrix=np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32),
        crop=crop,
        dense=dense,
        face_mask=face_mask,
        crop_face_mask=face_mask,
        aligner="synthetic",
    )
